package metrics_test

import (
	"testing"
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/metrics"
	"github.com/lullhq/lull/internal/store"
)

// The hot-path cost of the instrumentation, per event: what a webhook, a
// publish, an append round trip, a flush and a sink call add.
func BenchmarkAPI_PerWebhook(b *testing.B) {
	m := metrics.NewAPI(metrics.APIOptions{})
	b.ReportAllocs()
	for b.Loop() {
		m.PublishConfirmed(2 * time.Millisecond)
		m.MessagesAccepted("generic", 1)
		m.WebhookRequest("generic", 202)
	}
}

func BenchmarkWorker_PerAppendRound(b *testing.B) {
	m := metrics.NewWorker(metrics.WorkerOptions{Sinks: []string{"http"}})
	b.ReportAllocs()
	for b.Loop() {
		m.Appended(16, 1, 0, time.Millisecond)
	}
}

func BenchmarkWorker_PerBatch(b *testing.B) {
	m := metrics.NewWorker(metrics.WorkerOptions{Sinks: []string{"http"}})
	now := time.Now().UnixMilli()
	c := &store.Claim{FlushedAtMs: now, Deadline: now - 30,
		Batch: batch.Batch{Reason: batch.ReasonQuiet, Messages: make([]batch.Message, 4), FirstAt: batch.FormatMillis(now - 12_000)}}
	b.ReportAllocs()
	for b.Loop() {
		m.Flushed(c)
		m.SinkCalled("http", 3*time.Millisecond)
		m.SinkDone("http", "ok")
	}
}
