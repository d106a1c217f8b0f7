package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lullhq/lull/e2e/harness"
)

// BenchmarkIngest measures accepted webhooks per second: POST /webhook
// answered 202 (durable in RabbitMQ), from many goroutines over many keys,
// against a real api and worker delivering to an HTTP receiver.
func BenchmarkIngest(b *testing.B) {
	bb := harness.Setup(b, harness.Options{QuietWindow: 200 * time.Millisecond, Bench: true})
	const keys = 1000
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			key := fmt.Sprintf("bench-%04d", i%keys)
			if status := bb.Post(key, harness.MsgText(key, int(i)), nil); status != http.StatusAccepted {
				b.Errorf("POST /webhook: status %d", status)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")

	// Everything accepted must still come out, once.
	drain := time.Now()
	bb.WaitDelivered(30*time.Second + time.Duration(b.N)*time.Millisecond)
	b.ReportMetric(time.Since(drain).Seconds(), "drain-s")
	harness.AssertExactlyOnce(b, bb.SentSoFar(), bb.Recv.Accepted())
}

// BenchmarkFlushLateness measures how long after its deadline a batch
// reaches the receiver: arrival - (last message's received_at +
// QUIET_WINDOW), over b.N one-message conversations.
func BenchmarkFlushLateness(b *testing.B) {
	const quiet = 200 * time.Millisecond
	bb := harness.Setup(b, harness.Options{QuietWindow: quiet, Bench: true})
	keys := harness.Keys("late-%06d", b.N)
	b.ResetTimer()
	bb.SendEach(keys, 1, 32)
	got := bb.WaitBatches(b.N, 30*time.Second+time.Duration(b.N)*time.Millisecond)
	b.StopTimer()
	harness.AssertExactlyOnce(b, bb.SentSoFar(), bb.Recv.Accepted())

	// late: arrival at the receiver; flush: the claim (flushed_at), which
	// leaves out the delivery's own queueing and HTTP time.
	late := make([]time.Duration, 0, len(got))
	flush := make([]time.Duration, 0, len(got))
	for _, d := range got {
		deadline := harness.ParseTime(b, d.Batch.LastAt).Add(quiet)
		late = append(late, d.At.Sub(deadline))
		flush = append(flush, harness.ParseTime(b, d.Batch.FlushedAt).Sub(deadline))
	}
	report(b, late, "")
	report(b, flush, "flush-")
}

// report sorts values and reports their p50, p99 and max in milliseconds.
func report(b *testing.B, values []time.Duration, prefix string) {
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(values, 0.50)), prefix+"p50-ms")
	b.ReportMetric(ms(percentile(values, 0.99)), prefix+"p99-ms")
	b.ReportMetric(ms(values[len(values)-1]), prefix+"max-ms")
}

// percentile is the nearest-rank q-quantile of sorted values.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
