package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/testenv"
)

// scrape is one parsed GET /metrics.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, addr string) (scrape, error) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// value is the value of name's series with labels (name, value pairs; a
// series may have more), summed over the matching series: a counter's or
// gauge's value, a histogram's sample count. ok is false when none matches.
func (s scrape) value(name string, labels ...string) (v float64, ok bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && got[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		ok = true
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			v += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v, ok
}

// at is what a check expects of one series: at least min.
type at struct {
	name   string
	labels []string
	min    float64
}

// unmet lists the checks s fails.
func (s scrape) unmet(checks []at) []string {
	var out []string
	for _, c := range checks {
		if v, ok := s.value(c.name, c.labels...); !ok || v < c.min {
			out = append(out, fmt.Sprintf("%s%v = %v (present %v), want >= %v", c.name, c.labels, v, ok, c.min))
		}
	}
	return out
}

// TestMetrics_BothProcessesServeAndCount starts an api and a worker with
// METRICS_ADDR on free ports, sends bursts (a duplicate, a poison message,
// a batch the receiver refuses, a first delivery that fails), and checks
// through GET /metrics of both that every metric is there and that the
// counters moved.
func TestMetrics_BothProcessesServeAndCount(t *testing.T) {
	apiMetrics, workerMetrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	d := harness.Setup(t, harness.Options{
		APIEnv:    map[string]string{"METRICS_ADDR": apiMetrics},
		WorkerEnv: map[string]string{"METRICS_ADDR": workerMetrics},
		Receiver:  harness.ReceiverOptions{FailFirst: 1}, // one attempt is retried
	})

	// Never on the public webhook port.
	resp, err := d.Client.Get(d.URL("/metrics"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// Everything is there before any traffic, the scrape-time state
	// included.
	api, err := scrapeMetrics(t, apiMetrics)
	require.NoError(t, err)
	worker, err := scrapeMetrics(t, workerMetrics)
	require.NoError(t, err)
	apiNames := []string{
		"lull_webhook_requests_total", "lull_messages_accepted_total", "lull_publish_duration_seconds",
		"lull_publish_failures_total", "lull_broker_ready", "go_goroutines", "process_cpu_seconds_total",
	}
	workerNames := []string{
		"lull_appends_total", "lull_append_duration_seconds", "lull_inbound_dead_letters_total",
		"lull_batches_flushed_total", "lull_batch_messages", "lull_flush_lateness_seconds",
		"lull_burst_duration_seconds", "lull_deliveries_total", "lull_delivery_duration_seconds",
		"lull_leases_reclaimed_total", "lull_conversations_buffering", "lull_batches_inflight",
		"lull_dead_letters", "lull_due_overdue_seconds", "lull_inbound_queue_messages",
		"lull_state_read_errors_total", "lull_broker_ready", "go_goroutines", "process_cpu_seconds_total",
	}
	for _, name := range apiNames {
		require.Contains(t, api, name, "api")
	}
	for _, name := range workerNames {
		require.Contains(t, worker, name, "worker")
	}
	before, _ := api.value("lull_webhook_requests_total", "source", "generic", "code", "202")
	require.Zero(t, before)

	// A burst of three (its first message sent twice, under one id), one
	// lone message, one batch the receiver refuses for good, and a body
	// the worker can never decode.
	const refused = "refused-conversation"
	d.Recv.Reject(refused)
	for i := range 3 {
		fields := map[string]any{"message_id": fmt.Sprintf("burst-%d", i)}
		require.Equal(t, http.StatusAccepted, d.Post("burst", harness.MsgText("burst", i), fields))
	}
	require.Equal(t, http.StatusAccepted, d.Post("burst", harness.MsgText("burst", 0), map[string]any{"message_id": "burst-0"}))
	d.Send("lone", "alone")
	d.Send(refused, "no thanks")
	d.PublishInbound("poison", []byte("not json"))
	d.WaitBatches(2, 20*time.Second)

	apiWant := []at{
		{"lull_webhook_requests_total", []string{"source", "generic", "code", "202"}, 6},
		{"lull_messages_accepted_total", []string{"source", "generic"}, 6},
		{"lull_publish_duration_seconds", nil, 6},
		{"lull_broker_ready", nil, 1},
	}
	workerWant := []at{
		{"lull_appends_total", []string{"result", "stored"}, 5},
		{"lull_appends_total", []string{"result", "duplicate"}, 1},
		{"lull_append_duration_seconds", nil, 1},
		{"lull_inbound_dead_letters_total", nil, 1},
		{"lull_batches_flushed_total", []string{"reason", "quiet"}, 3},
		{"lull_batch_messages", nil, 3},
		{"lull_flush_lateness_seconds", nil, 3},
		{"lull_burst_duration_seconds", nil, 3},
		{"lull_deliveries_total", []string{"sink", "http", "result", "ok"}, 2},
		{"lull_deliveries_total", []string{"sink", "http", "result", "retry"}, 1},
		{"lull_deliveries_total", []string{"sink", "http", "result", "dead"}, 1},
		{"lull_delivery_duration_seconds", []string{"sink", "http"}, 4},
		{"lull_dead_letters", nil, 1},
		{"lull_broker_ready", nil, 1},
	}
	var unmet []string
	harness.WaitUntil(t, 20*time.Second, "the counters to move", func() bool {
		api, err = scrapeMetrics(t, apiMetrics)
		require.NoError(t, err)
		worker, err = scrapeMetrics(t, workerMetrics)
		require.NoError(t, err)
		unmet = append(api.unmet(apiWant), worker.unmet(workerWant)...)
		return len(unmet) == 0
	})
	require.Empty(t, unmet)
	// Nothing is left waiting or stuck, and no state read failed.
	for _, zero := range []at{
		{name: "lull_conversations_buffering"}, {name: "lull_batches_inflight"}, {name: "lull_due_overdue_seconds"},
		{name: "lull_inbound_queue_messages"}, {name: "lull_state_read_errors_total"}, {name: "lull_leases_reclaimed_total"},
	} {
		v, ok := worker.value(zero.name)
		require.True(t, ok, zero.name)
		require.Zero(t, v, zero.name)
	}
	failures, _ := api.value("lull_publish_failures_total")
	require.Zero(t, failures)
}
