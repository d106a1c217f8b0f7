package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIngest measures accepted webhooks per second: POST /webhook
// answered 202 (durable in RabbitMQ), from many goroutines over many keys,
// against a real api and worker delivering to an HTTP receiver.
func BenchmarkIngest(b *testing.B) {
	bb := setup(b, options{QuietWindow: 200 * time.Millisecond, Bench: true})
	const keys = 1000
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			key := fmt.Sprintf("bench-%04d", i%keys)
			if status := bb.post(key, msgText(key, int(i)), nil); status != http.StatusAccepted {
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
	bb.waitDelivered(30*time.Second + time.Duration(b.N)*time.Millisecond)
	b.ReportMetric(time.Since(drain).Seconds(), "drain-s")
	assertExactlyOnce(b, bb.sentSoFar(), bb.recv.accepted())
}

// BenchmarkFlushLateness measures how long after its deadline a batch
// reaches the receiver: arrival - (last message's received_at +
// QUIET_WINDOW), over b.N one-message conversations.
func BenchmarkFlushLateness(b *testing.B) {
	const quiet = 200 * time.Millisecond
	bb := setup(b, options{QuietWindow: quiet, Bench: true})
	const senders = 32
	keys := make(chan string)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range keys {
				bb.send(key, msgText(key, 0))
			}
		}()
	}
	b.ResetTimer()
	for i := range b.N {
		keys <- fmt.Sprintf("late-%06d", i)
	}
	close(keys)
	wg.Wait()
	got := bb.waitBatches(b.N, 30*time.Second+time.Duration(b.N)*time.Millisecond)
	b.StopTimer()
	assertExactlyOnce(b, bb.sentSoFar(), bb.recv.accepted())

	// late: arrival at the receiver; flush: the claim (flushed_at), which
	// leaves out the delivery's own queueing and HTTP time.
	late := make([]time.Duration, 0, len(got))
	flush := make([]time.Duration, 0, len(got))
	for _, d := range got {
		deadline := parseTime(b, d.Batch.LastAt).Add(quiet)
		late = append(late, d.At.Sub(deadline))
		flush = append(flush, parseTime(b, d.Batch.FlushedAt).Sub(deadline))
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
