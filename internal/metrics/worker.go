package metrics

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/delivery"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/valutil"
)

// FlushReasons are the values of lull_batches_flushed_total's reason label;
// a reason not among them (none should be) is counted as "other".
var FlushReasons = []string{
	batch.ReasonQuiet, batch.ReasonMaxWait, batch.ReasonMaxMessages, batch.ReasonImmediate,
	batch.ReasonManual, "max_bytes",
}

// The values of lull_appends_total's result label.
const (
	AppendStored    = "stored"    // appended to its conversation's buffer
	AppendDuplicate = "duplicate" // dropped: its message id was seen (a redelivery or a retry)
	AppendTyping    = "typing"    // a typing event applied (it moves the deadline, appends nothing)
	AppendFailed    = "failed"    // Redis refused it; it is retried
)

// DefaultStateTimeout is WorkerOptions.StateTimeout when it is zero.
const DefaultStateTimeout = 2 * time.Second

// WorkerOptions configure the worker's metrics.
type WorkerOptions struct {
	// Sinks are the configured sink names (SINKS): their series exist from
	// the start.
	Sinks []string
	// State reads the namespace's state from Redis at scrape time
	// (store.Store.State). Nil leaves its gauges out.
	State func(context.Context) (store.State, error)
	// QueueDepth reads the inbound queue's ready messages at scrape time
	// (queue.Depth.Messages). Nil leaves lull_inbound_queue_messages out.
	QueueDepth func(context.Context) (int, error)
	// BrokerReady reports whether the consumer is subscribed
	// (queue.Consumer.Ready); served as lull_broker_ready. Nil leaves it out.
	BrokerReady func() bool
	// StateTimeout bounds each scrape-time read. Zero means
	// DefaultStateTimeout.
	StateTimeout time.Duration
	// Logger receives failed state reads. Nil means slog.Default().
	Logger *slog.Logger
}

// Worker is the worker's registry. It implements appender.Observer,
// scheduler.Observer and delivery.Observer; its methods are safe for
// concurrent use.
type Worker struct {
	reg *prometheus.Registry

	appends          *prometheus.CounterVec
	appendDuration   prometheus.Histogram
	inboundDead      prometheus.Counter
	flushed          *prometheus.CounterVec
	batchMessages    prometheus.Histogram
	lateness         prometheus.Histogram
	burst            prometheus.Histogram
	deliveries       *prometheus.CounterVec
	deliveryDuration *prometheus.HistogramVec
	reclaimed        prometheus.Counter
	handovers        prometheus.Counter
}

// NewWorker returns the worker's registry.
func NewWorker(opts WorkerOptions) *Worker {
	reg := newRegistry()
	m := &Worker{
		reg: reg,
		appends: counterVec(reg, "lull_appends_total",
			"Inbound messages the appender applied to Redis, by result: stored, duplicate, typing; failed attempts are retried.", "result"),
		appendDuration: histogram(reg, "lull_append_duration_seconds",
			"Time of one append round trip to Redis: a lane's pipeline of append.lua calls, or one typing event.", callBuckets),
		inboundDead: counter(reg, "lull_inbound_dead_letters_total",
			"Inbound messages rejected to the dead-letter queue: bodies that can never be processed."),
		flushed: counterVec(reg, "lull_batches_flushed_total",
			"Batches claimed by a flush, by reason.", "reason"),
		batchMessages: histogram(reg, "lull_batch_messages",
			"Messages in each batch claimed by a flush.", messageBuckets),
		lateness: histogram(reg, "lull_flush_lateness_seconds",
			"Claim time minus the flush deadline it was claimed for, on the Redis clock.", latenessBuckets),
		burst: histogram(reg, "lull_burst_duration_seconds",
			"Time from a batch's first message (its receipt by the api) to its flush.", burstBuckets),
		deliveries: counterVec(reg, "lull_deliveries_total",
			"Delivery attempts per sink, by result: ok, retry (the batch is retried), dead (the batch is dead-lettered).", "sink", "result"),
		deliveryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lull_delivery_duration_seconds", Help: "Time of one delivery of a batch to a sink, successful or not.", Buckets: callBuckets,
		}, []string{"sink"}),
		reclaimed: counter(reg, "lull_leases_reclaimed_total",
			"Batches whose lease expired, taken over by this worker's reclaimer to be delivered again."),
		handovers: counter(reg, "lull_intake_handovers_total",
			"Times this worker handed the inbound queue over because Redis did not answer it (INTAKE_HANDOVER_AFTER)."),
	}
	reg.MustRegister(m.deliveryDuration)
	brokerReady(reg, "1 while the worker's consumer is subscribed to the inbound queue, else 0.", opts.BrokerReady)
	reg.MustRegister(newStateCollector(opts))
	for _, r := range []string{AppendStored, AppendDuplicate, AppendTyping, AppendFailed} {
		m.appends.WithLabelValues(r)
	}
	for _, r := range append(slices.Clone(FlushReasons), "other") {
		m.flushed.WithLabelValues(r)
	}
	for _, s := range opts.Sinks {
		m.deliveryDuration.WithLabelValues(s)
		for _, r := range delivery.Results {
			m.deliveries.WithLabelValues(s, r)
		}
	}
	return m
}

// Gatherer is what the Server serves.
func (m *Worker) Gatherer() prometheus.Gatherer { return m.reg }

// Appended observes one append round trip of a lane.
func (m *Worker) Appended(stored, duplicates, failed int, took time.Duration) {
	m.appendDuration.Observe(seconds(took))
	if stored > 0 {
		m.appends.WithLabelValues(AppendStored).Add(float64(stored))
	}
	if duplicates > 0 {
		m.appends.WithLabelValues(AppendDuplicate).Add(float64(duplicates))
	}
	if failed > 0 {
		m.appends.WithLabelValues(AppendFailed).Add(float64(failed))
	}
}

// Typing observes one typing event's Redis call; err is its failure.
func (m *Worker) Typing(took time.Duration, err error) {
	m.appendDuration.Observe(seconds(took))
	if err != nil {
		m.appends.WithLabelValues(AppendFailed).Inc()
		return
	}
	m.appends.WithLabelValues(AppendTyping).Inc()
}

// Rejected counts one inbound message sent to the dead-letter queue.
func (m *Worker) Rejected() { m.inboundDead.Inc() }

// Flushed observes one batch claimed by a flush.
func (m *Worker) Flushed(c *store.Claim) {
	reason := c.Batch.Reason
	if !slices.Contains(FlushReasons, reason) {
		reason = "other"
	}
	m.flushed.WithLabelValues(reason).Inc()
	m.batchMessages.Observe(float64(len(c.Batch.Messages)))
	if c.Deadline > 0 {
		m.lateness.Observe(max(float64(c.FlushedAtMs-c.Deadline)/1000, 0))
	}
	if first := batch.ParseMillis(c.Batch.FirstAt); first > 0 {
		m.burst.Observe(max(float64(c.FlushedAtMs-first)/1000, 0))
	}
}

// Reclaimed counts one expired lease taken over.
func (m *Worker) Reclaimed(*store.Claim) { m.reclaimed.Inc() }

// HandedOver observes one intake handover.
func (m *Worker) HandedOver() { m.handovers.Inc() }

// SinkCalled observes one delivery of a batch to sink.
func (m *Worker) SinkCalled(sink string, took time.Duration) {
	m.deliveryDuration.WithLabelValues(sink).Observe(seconds(took))
}

// SinkDone counts one delivery attempt's result for sink, one of
// delivery.Results.
func (m *Worker) SinkDone(sink, result string) { m.deliveries.WithLabelValues(sink, result).Inc() }

// withDefaults fills the options' defaults.
func (o WorkerOptions) withDefaults() WorkerOptions {
	o.StateTimeout = valutil.ValOrDefault(o.StateTimeout, DefaultStateTimeout)
	o.Logger = valutil.ValOrDefault(o.Logger, slog.Default())
	return o
}
