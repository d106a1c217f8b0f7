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
	t.Cleanup(func() { _ = conn.Close() })
	testenv.CleanupBrokerEntities(t, bb.url,
		func() []string { return queues(bb.ns) }, func() []string { return exchanges(bb.ns) })
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

// amqp starts an AMQP sink on the bundle's broker, closed when the test
// ends, and waits until it is connected.
func (bb *brokerBundle) amqp(t *testing.T, opts AMQPOptions) *AMQP {
	t.Helper()
	a, err := NewAMQP(bb.broker(t), opts)
	return connected(t, a, err)
}

// celery starts a Celery sink on the bundle's broker, closed when the test
// ends, and waits until it is connected.
func (bb *brokerBundle) celery(t *testing.T, opts CeleryOptions) *Celery {
	t.Helper()
	c, err := NewCelery(bb.broker(t), opts)
	return connected(t, c, err)
}

// connected takes a broker sink just made (and the error of making it),
// closes it when the test ends and waits until it is connected.
func connected[S interface {
	Sink
	Closer
	Ready() bool
}](t *testing.T, s S, err error) S {
	t.Helper()
	require.NoError(t, err)
	closeAtEnd(t, s)
	waitReady(t, s)
	return s
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
	return testenv.NextMessage(t, bb.channel(t), name, brokerWait)
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
