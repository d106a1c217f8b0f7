package sink

import (
	"context"
	"log/slog"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/testenv"
)

// brokerWait bounds every wait on the broker in these tests.
const brokerWait = 20 * time.Second

// The sinks' required options in these tests: the defaults of
// PUBLISH_TIMEOUT and CELERY_TASK.
const (
	testPublishTimeout = 5 * time.Second
	testCeleryTask     = "lull.process_batch"
)

// brokerBundle is a namespace of the test's own on the real RabbitMQ, a
// connection to inspect it, and the names to delete when the test ends.
type brokerBundle struct {
	ns   string
	url  string
	conn *amqp.Connection
}

// setupBroker gives a test its namespace and removes queues and exchanges
// (given by name) at its end, after the sinks it started were closed.
func setupBroker(t *testing.T, queues, exchanges func(ns string) []string) *brokerBundle {
	t.Helper()
	bb := &brokerBundle{ns: testenv.Namespace(t, "sink"), url: testenv.AMQPURL()}
	conn, err := amqp.Dial(bb.url)
	require.NoError(t, err, "rabbitmq %s", bb.url)
	bb.conn = conn
	t.Cleanup(func() {
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer ch.Close()
		for _, q := range queues(bb.ns) {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("delete queue %s: %v", q, err)
			}
		}
		for _, x := range exchanges(bb.ns) {
			if err := ch.ExchangeDelete(x, false, false); err != nil {
				t.Errorf("delete exchange %s: %v", x, err)
			}
		}
	})
	return bb
}

func names(list ...string) func(ns string) []string {
	return func(ns string) []string {
		out := make([]string, len(list))
		for i, s := range list {
			out[i] = ns + s
		}
		return out
	}
}

func (bb *brokerBundle) broker(t *testing.T) BrokerOptions {
	return BrokerOptions{URL: bb.url, Namespace: bb.ns, Timeout: testPublishTimeout, Logger: testLogger(t)}
}

// closeAtEnd closes c when the test ends (before setupBroker's cleanup).
func closeAtEnd(t *testing.T, c Closer) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, c.Close(ctx))
	})
}

// channel opens a channel of the bundle's connection for the test.
func (bb *brokerBundle) channel(t *testing.T) *amqp.Channel {
	t.Helper()
	ch, err := bb.conn.Channel()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ch.Close() })
	return ch
}

// get waits for one message in queue name and acks it.
func (bb *brokerBundle) get(t *testing.T, name string) amqp.Delivery {
	t.Helper()
	ch := bb.channel(t)
	var d amqp.Delivery
	require.Eventually(t, func() bool {
		var ok bool
		var err error
		d, ok, err = ch.Get(name, true)
		require.NoError(t, err)
		return ok
	}, brokerWait, 10*time.Millisecond, "no message in %s", name)
	return d
}

// waitReady waits until s is connected: the broker sinks connect in the
// background and fail, retryably, until then.
func waitReady(t *testing.T, s interface {
	Sink
	Ready() bool
}) {
	t.Helper()
	require.Eventually(t, s.Ready, brokerWait, 10*time.Millisecond, "sink %s never connected", s.Name())
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
