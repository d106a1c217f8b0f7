// Package metrics owns lull's Prometheus metrics: one registry per
// process (API, Worker), each with the Go runtime and process collectors,
// and the Server that serves it on GET /metrics (METRICS_ADDR).
//
// The rest of lull does not import Prometheus: each instrumented package
// declares the small observer interface it calls (httpapi.Metrics,
// queue.PublishObserver, appender.Observer, scheduler.Observer,
// delivery.Observer), and API and Worker implement them. Every label takes
// values from a fixed set (sources, status codes, reasons, results, sink
// names): never a conversation key or a batch id.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Buckets of the histograms, in base units. Redis and broker round trips
// take about a millisecond and time out in seconds; a flush is late by
// milliseconds when all is well and by minutes when it is stuck; a burst
// lasts QUIET_WINDOW (12 s) to MAX_WAIT (60 s), or much less in tests.
var (
	callBuckets     = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	latenessBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	burstBuckets    = []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600}
	messageBuckets  = []float64{1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000}
)

// newRegistry is a registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func counterVec(reg prometheus.Registerer, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	reg.MustRegister(c)
	return c
}

func counter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	reg.MustRegister(c)
	return c
}

func histogram(reg prometheus.Registerer, name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	reg.MustRegister(h)
	return h
}

// brokerReady is lull_broker_ready, read at scrape time; nil ready leaves
// it out.
func brokerReady(reg prometheus.Registerer, help string, ready func() bool) {
	if ready == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lull_broker_ready", Help: help}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	}))
}

// seconds is d in seconds, never negative.
func seconds(d time.Duration) float64 { return max(d.Seconds(), 0) }
