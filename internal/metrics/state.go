package metrics

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// The sources of a state read, the values of
// lull_state_read_errors_total's source label.
const (
	SourceRedis    = "redis"
	SourceRabbitMQ = "rabbitmq"
)

// stateCollector reads the namespace's state at scrape time: from Redis
// (store.State: a fixed number of commands in one round trip) and the
// inbound queue's depth from the broker (a passive declare), both at once,
// each bounded by StateTimeout. A read that fails leaves its gauges out of
// that scrape, never fails it, and counts in lull_state_read_errors_total.
type stateCollector struct {
	opts WorkerOptions
	log  *slog.Logger

	buffering, inflight, dead, overdue, depth, readErrors *prometheus.Desc

	redisErrors, brokerErrors atomic.Int64
}

func newStateCollector(opts WorkerOptions) *stateCollector {
	opts = opts.withDefaults()
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{
		opts: opts,
		log:  opts.Logger.With(slog.String("component", "metrics")),
		buffering: desc("lull_conversations_buffering",
			"Conversations with messages waiting for their flush (the due sets), read from Redis at scrape time."),
		inflight: desc("lull_batches_inflight",
			"Batches claimed and not yet committed, dead-lettered or released (the inflight sets), read from Redis at scrape time."),
		dead: desc("lull_dead_letters",
			"Dead-lettered batches kept in Redis, read at scrape time."),
		overdue: desc("lull_due_overdue_seconds",
			"How far past its flush deadline the most overdue conversation is (0: none), on the Redis clock, read at scrape time."),
		depth: desc("lull_inbound_queue_messages",
			"Messages ready in the inbound queue, read from the broker at scrape time (a passive declare)."),
		readErrors: desc("lull_state_read_errors_total",
			"Scrape-time state reads that failed, by source (redis, rabbitmq); that scrape leaves the source's gauges out.", "source"),
	}
}

// Describe sends every descriptor.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buffering, c.inflight, c.dead, c.overdue, c.depth, c.readErrors} {
		ch <- d
	}
}

// Collect reads the state and sends what it could read.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.StateTimeout)
	defer cancel()
	var wg sync.WaitGroup
	if c.opts.State != nil {
		wg.Go(func() {
			st, err := c.opts.State(ctx)
			if err != nil {
				c.redisErrors.Add(1)
				c.log.Warn("reading the state from redis for /metrics", slog.Any("err", err))
				return
			}
			gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
			gauge(c.buffering, float64(st.Buffering))
			gauge(c.inflight, float64(st.InFlight))
			gauge(c.dead, float64(st.Dead))
			gauge(c.overdue, float64(st.OverdueMs)/1000)
		})
	}
	if c.opts.QueueDepth != nil {
		wg.Go(func() {
			n, err := c.opts.QueueDepth(ctx)
			if err != nil {
				c.brokerErrors.Add(1)
				c.log.Warn("reading the inbound queue's depth for /metrics", slog.Any("err", err))
				return
			}
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n))
		})
	}
	wg.Wait()
	ch <- prometheus.MustNewConstMetric(c.readErrors, prometheus.CounterValue, float64(c.redisErrors.Load()), SourceRedis)
	ch <- prometheus.MustNewConstMetric(c.readErrors, prometheus.CounterValue, float64(c.brokerErrors.Load()), SourceRabbitMQ)
}
