package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lullhq/lull/internal/provider/evolution"
	"github.com/lullhq/lull/internal/provider/twilio"
	"github.com/lullhq/lull/internal/provider/whatsapp"
	"github.com/lullhq/lull/internal/queue"
)

// Sources are the webhook sources, the values of the api's source label:
// POST /webhook is "generic".
var Sources = []string{"generic", whatsapp.Source, evolution.Source, twilio.Source}

// APIOptions configure the api's metrics.
type APIOptions struct {
	// BrokerReady reports whether the publisher can take messages now
	// (queue.Publisher.Ready); served as lull_broker_ready. Nil leaves it
	// out.
	BrokerReady func() bool
}

// API is the api's registry. It implements httpapi.Metrics and
// queue.PublishObserver; its methods are safe for concurrent use.
type API struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	accepted        *prometheus.CounterVec
	publishDuration prometheus.Histogram
	publishFailures *prometheus.CounterVec
}

// NewAPI returns the api's registry.
func NewAPI(opts APIOptions) *API {
	reg := newRegistry()
	m := &API{
		reg: reg,
		requests: counterVec(reg, "lull_webhook_requests_total",
			"Webhook requests answered, by source and HTTP status code.", "source", "code"),
		accepted: counterVec(reg, "lull_messages_accepted_total",
			"Messages (and typing events) the broker confirmed, by webhook source.", "source"),
		publishDuration: histogram(reg, "lull_publish_duration_seconds",
			"Time from publishing one message to the broker's confirm, of the confirmed publishes.", callBuckets),
		publishFailures: counterVec(reg, "lull_publish_failures_total",
			"Publishes the broker did not confirm, by reason.", "reason"),
	}
	brokerReady(reg, "1 while the api's publisher can take messages (connected, not blocked, confirms arriving), else 0.", opts.BrokerReady)
	for _, s := range Sources {
		m.accepted.WithLabelValues(s)
		// Each source's success exists from the start, so a rate of it
		// does too: POST /webhook answers 202, the providers 200.
		ok := "200"
		if s == "generic" {
			ok = "202"
		}
		m.requests.WithLabelValues(s, ok)
	}
	for _, r := range queue.FailureReasons {
		m.publishFailures.WithLabelValues(r)
	}
	return m
}

// Gatherer is what the Server serves.
func (m *API) Gatherer() prometheus.Gatherer { return m.reg }

// WebhookRequest counts one answered webhook request.
func (m *API) WebhookRequest(source string, status int) {
	m.requests.WithLabelValues(source, strconv.Itoa(status)).Inc()
}

// MessagesAccepted counts n messages of source the broker confirmed.
func (m *API) MessagesAccepted(source string, n int) {
	m.accepted.WithLabelValues(source).Add(float64(n))
}

// PublishConfirmed observes one confirmed publish.
func (m *API) PublishConfirmed(took time.Duration) { m.publishDuration.Observe(seconds(took)) }

// PublishFailed counts one failed publish.
func (m *API) PublishFailed(reason string) { m.publishFailures.WithLabelValues(reason).Inc() }
