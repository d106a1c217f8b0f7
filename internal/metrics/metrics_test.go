package metrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/delivery"
	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/metrics"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/scheduler"
	"github.com/lullhq/lull/internal/store"
)

// The registries are the observers the instrumented packages call.
var (
	_ httpapi.Metrics       = (*metrics.API)(nil)
	_ queue.PublishObserver = (*metrics.API)(nil)
	_ appender.Observer     = (*metrics.Worker)(nil)
	_ scheduler.Observer    = (*metrics.Worker)(nil)
	_ delivery.Observer     = (*metrics.Worker)(nil)
)

// gather reads g's families by name.
func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := g.Gather()
	require.NoError(t, err)
	out := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// series finds the metric of family name whose labels are labels (name,
// value pairs), failing the test when there is none.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "no family %s", name)
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := len(got) == len(labels)/2
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && got[labels[i]] == labels[i+1]
		}
		if match {
			return m
		}
	}
	t.Fatalf("%s has no series %v", name, labels)
	return nil
}

func counterValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	return series(t, fams, name, labels...).GetCounter().GetValue()
}

func TestAPI_CountsRequestsAcceptsAndPublishes(t *testing.T) {
	ready := false
	m := metrics.NewAPI(metrics.APIOptions{BrokerReady: func() bool { return ready }})
	fams := gather(t, m.Gatherer())
	require.Zero(t, counterValue(t, fams, "lull_messages_accepted_total", "source", "twilio"), "every source from the start")
	require.Zero(t, counterValue(t, fams, "lull_publish_failures_total", "reason", queue.FailTimeout), "every reason from the start")
	require.Zero(t, series(t, fams, "lull_broker_ready").GetGauge().GetValue())
	require.Contains(t, fams, "go_goroutines", "the Go runtime collector")
	require.Contains(t, fams, "process_cpu_seconds_total", "the process collector")

	m.WebhookRequest("generic", 202)
	m.WebhookRequest("generic", 202)
	m.WebhookRequest("whatsapp", 401)
	m.MessagesAccepted("generic", 2)
	m.MessagesAccepted("whatsapp", 3)
	m.PublishConfirmed(3 * time.Millisecond)
	m.PublishConfirmed(7 * time.Millisecond)
	m.PublishFailed(queue.FailNotConnected)
	ready = true

	fams = gather(t, m.Gatherer())
	require.Equal(t, 2.0, counterValue(t, fams, "lull_webhook_requests_total", "source", "generic", "code", "202"))
	require.Equal(t, 1.0, counterValue(t, fams, "lull_webhook_requests_total", "source", "whatsapp", "code", "401"))
	require.Equal(t, 2.0, counterValue(t, fams, "lull_messages_accepted_total", "source", "generic"))
	require.Equal(t, 3.0, counterValue(t, fams, "lull_messages_accepted_total", "source", "whatsapp"))
	require.Equal(t, 1.0, counterValue(t, fams, "lull_publish_failures_total", "reason", queue.FailNotConnected))
	h := series(t, fams, "lull_publish_duration_seconds").GetHistogram()
	require.Equal(t, uint64(2), h.GetSampleCount())
	require.InDelta(t, 0.010, h.GetSampleSum(), 1e-9, "in seconds")
	require.Equal(t, 1.0, series(t, fams, "lull_broker_ready").GetGauge().GetValue())
}

func TestWorker_CountsAppendsFlushesAndDeliveries(t *testing.T) {
	m := metrics.NewWorker(metrics.WorkerOptions{Sinks: []string{"http", "log"}})
	fams := gather(t, m.Gatherer())
	for _, r := range delivery.Results {
		require.Zero(t, counterValue(t, fams, "lull_deliveries_total", "sink", "log", "result", r), "every sink's results from the start")
	}
	require.Zero(t, counterValue(t, fams, "lull_batches_flushed_total", "reason", "max_wait"))
	require.NotContains(t, fams, "lull_conversations_buffering", "no state reader, no state gauges")
	require.NotContains(t, fams, "lull_broker_ready")

	m.Appended(3, 1, 0, 2*time.Millisecond)
	m.Appended(0, 0, 2, time.Millisecond)
	m.Typing(time.Millisecond, nil)
	m.Typing(time.Millisecond, errors.New("redis down"))
	m.Rejected()

	// A 3-message burst that began 12.5 s before its flush, claimed 40 ms
	// after its deadline.
	flushedAt := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).UnixMilli()
	m.Flushed(&store.Claim{
		FlushedAtMs: flushedAt, Deadline: flushedAt - 40,
		Batch: batch.Batch{Reason: batch.ReasonQuiet, Messages: make([]batch.Message, 3), FirstAt: batch.FormatMillis(flushedAt - 12500)},
	})
	// A reason that should not exist is "other"; a take-over has no deadline.
	m.Flushed(&store.Claim{FlushedAtMs: flushedAt, Batch: batch.Batch{Reason: "surprise", Messages: make([]batch.Message, 1)}})
	m.Reclaimed(&store.Claim{})
	m.SinkCalled("http", 20*time.Millisecond)
	m.SinkDone("http", delivery.ResultRetry)
	m.SinkCalled("http", 10*time.Millisecond)
	m.SinkDone("http", delivery.ResultOK)

	fams = gather(t, m.Gatherer())
	for result, want := range map[string]float64{metrics.AppendStored: 3, metrics.AppendDuplicate: 1, metrics.AppendFailed: 3, metrics.AppendTyping: 1} {
		require.Equal(t, want, counterValue(t, fams, "lull_appends_total", "result", result), result)
	}
	require.Equal(t, uint64(4), series(t, fams, "lull_append_duration_seconds").GetHistogram().GetSampleCount(), "each round trip and each typing call")
	require.Equal(t, 1.0, counterValue(t, fams, "lull_inbound_dead_letters_total"))
	require.Equal(t, 1.0, counterValue(t, fams, "lull_batches_flushed_total", "reason", "quiet"))
	require.Equal(t, 1.0, counterValue(t, fams, "lull_batches_flushed_total", "reason", "other"))
	msgs := series(t, fams, "lull_batch_messages").GetHistogram()
	require.Equal(t, uint64(2), msgs.GetSampleCount())
	require.Equal(t, 4.0, msgs.GetSampleSum())
	late := series(t, fams, "lull_flush_lateness_seconds").GetHistogram()
	require.Equal(t, uint64(1), late.GetSampleCount(), "only the claim made for a deadline")
	require.InDelta(t, 0.040, late.GetSampleSum(), 1e-9)
	burst := series(t, fams, "lull_burst_duration_seconds").GetHistogram()
	require.Equal(t, uint64(1), burst.GetSampleCount(), "only the batch with a first_at")
	require.InDelta(t, 12.5, burst.GetSampleSum(), 1e-9)
	require.Equal(t, 1.0, counterValue(t, fams, "lull_leases_reclaimed_total"))
	require.Equal(t, 1.0, counterValue(t, fams, "lull_deliveries_total", "sink", "http", "result", "ok"))
	require.Equal(t, 1.0, counterValue(t, fams, "lull_deliveries_total", "sink", "http", "result", "retry"))
	d := series(t, fams, "lull_delivery_duration_seconds", "sink", "http").GetHistogram()
	require.Equal(t, uint64(2), d.GetSampleCount())
	require.InDelta(t, 0.030, d.GetSampleSum(), 1e-9)
}

func TestWorker_AFailedStateReadLeavesItsGaugesOutAndCounts(t *testing.T) {
	redisUp := true
	m := metrics.NewWorker(metrics.WorkerOptions{
		State: func(context.Context) (store.State, error) {
			if !redisUp {
				return store.State{}, errors.New("redis down")
			}
			return store.State{Buffering: 5, InFlight: 2, Dead: 1, OverdueMs: 1500}, nil
		},
		QueueDepth:   func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() },
		StateTimeout: 50 * time.Millisecond,
		BrokerReady:  func() bool { return false },
	})
	start := time.Now()
	fams := gather(t, m.Gatherer())
	require.Less(t, time.Since(start), 2*time.Second, "a read that hangs is bounded by StateTimeout")
	require.Equal(t, 5.0, series(t, fams, "lull_conversations_buffering").GetGauge().GetValue())
	require.Equal(t, 2.0, series(t, fams, "lull_batches_inflight").GetGauge().GetValue())
	require.Equal(t, 1.0, series(t, fams, "lull_dead_letters").GetGauge().GetValue())
	require.Equal(t, 1.5, series(t, fams, "lull_due_overdue_seconds").GetGauge().GetValue())
	require.NotContains(t, fams, "lull_inbound_queue_messages", "the broker read timed out")
	require.Equal(t, 1.0, counterValue(t, fams, "lull_state_read_errors_total", "source", "rabbitmq"))
	require.Zero(t, counterValue(t, fams, "lull_state_read_errors_total", "source", "redis"))
	require.Zero(t, series(t, fams, "lull_broker_ready").GetGauge().GetValue())

	redisUp = false
	fams = gather(t, m.Gatherer())
	require.NotContains(t, fams, "lull_conversations_buffering")
	require.NotContains(t, fams, "lull_due_overdue_seconds")
	require.Equal(t, 1.0, counterValue(t, fams, "lull_state_read_errors_total", "source", "redis"))
	require.Equal(t, 2.0, counterValue(t, fams, "lull_state_read_errors_total", "source", "rabbitmq"))
}
