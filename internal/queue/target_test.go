package queue_test

import (
	"context"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// testConfirmTimeout is the tests' PublisherOptions.ConfirmTimeout
// (PUBLISH_TIMEOUT's default).
const testConfirmTimeout = 5 * time.Second

// removeAtEnd deletes the test's own queues and exchanges when it ends,
// after the publishers started later have closed.
func (tb *testBundle) removeAtEnd(t *testing.T, queues, exchanges []string) {
	t.Helper()
	testenv.CleanupBrokerEntities(t, tb.url, func() []string { return queues }, func() []string { return exchanges })
}

// get fetches one message from queue name, failing the test after waitFor.
func (tb *testBundle) get(t *testing.T, name string) amqp.Delivery {
	t.Helper()
	_, ch := tb.channel(t)
	return testenv.NextMessage(t, ch, name, waitFor)
}

func TestPublisher_FanoutTargetKeepsMessagesInItsQueue(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	exchange, q := tb.ns+".batches", tb.ns+".batches"
	tb.removeAtEnd(t, []string{q}, []string{exchange})
	p := tb.publisher(t, queue.PublisherOptions{Exchange: exchange, Topology: queue.FanoutTopology(exchange, q)})

	err := p.PublishMessage(context.Background(), amqp.Publishing{
		MessageId:    "b-1",
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Headers:      amqp.Table{"x-test": "yes"},
		Body:         []byte(`{"batch_id":"b-1"}`),
	})
	require.NoError(t, err)

	d := tb.get(t, q)
	require.Equal(t, "b-1", d.MessageId)
	require.Equal(t, exchange, d.Exchange)
	require.Equal(t, `{"batch_id":"b-1"}`, string(d.Body))
	require.Equal(t, uint8(amqp.Persistent), d.DeliveryMode)
	require.Equal(t, "yes", d.Headers["x-test"])

	// The queue is a quorum queue: a classic declaration is refused.
	_, ch := tb.channel(t)
	_, err = ch.QueueDeclare(q, true, false, false, false, nil)
	requirePreconditionFailed(t, err)
}

func TestPublisher_NoQueueBoundIsUnroutableNotSuccess(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	exchange, bound := tb.ns+".batches", tb.ns+".bot"
	tb.removeAtEnd(t, []string{bound}, []string{exchange})
	p := tb.publisher(t, queue.PublisherOptions{Exchange: exchange, Topology: queue.FanoutTopology(exchange, "")})

	msg := amqp.Publishing{MessageId: "b-2", DeliveryMode: amqp.Persistent, Body: []byte(`{}`)}
	err := p.PublishMessage(context.Background(), msg)
	require.ErrorIs(t, err, queue.ErrUnroutable)
	require.ErrorIs(t, err, queue.ErrUnavailable, "unroutable is retryable")
	require.Contains(t, err.Error(), "exchange "+exchange)

	// Once a consumer binds a queue of its own, the retry succeeds.
	_, ch := tb.channel(t)
	_, err = ch.QueueDeclare(bound, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(bound, "", exchange, false, nil))
	require.NoError(t, p.PublishMessage(context.Background(), msg))
	require.Equal(t, "b-2", tb.get(t, bound).MessageId)
}

func TestClassicQueueTopology_DeclaresWhatCeleryDeclares(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	q := tb.ns + ".celery"
	tb.removeAtEnd(t, []string{q}, nil)
	p := tb.publisher(t, queue.PublisherOptions{RoutingKey: q, Topology: queue.ClassicQueueTopology(q)})
	require.NoError(t, p.PublishMessage(context.Background(), amqp.Publishing{MessageId: "t-1", Body: []byte(`[]`)}))

	// A Celery 5 worker declares its queue durable, without arguments.
	_, ch := tb.channel(t)
	_, err := ch.QueueDeclare(q, true, false, false, false, nil)
	require.NoError(t, err, "a consumer declaring the queue the Celery way must not get PRECONDITION_FAILED")
	require.Equal(t, "t-1", tb.get(t, q).MessageId)
}

func TestClassicQueueTopology_UsesAnExistingQueueAsItIs(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	q := tb.ns + ".celery"
	tb.removeAtEnd(t, []string{q}, nil)
	_, ch := tb.channel(t)
	_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	require.NoError(t, err)

	p := tb.publisher(t, queue.PublisherOptions{RoutingKey: q, Topology: queue.ClassicQueueTopology(q)})
	require.NoError(t, p.PublishMessage(context.Background(), amqp.Publishing{MessageId: "t-2", Body: []byte(`[]`)}))
	require.Equal(t, "t-2", tb.get(t, q).MessageId)
}

func TestPublishMessage_RequiresMessageID(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	err := p.PublishMessage(context.Background(), amqp.Publishing{Body: []byte(`{}`)})
	require.ErrorContains(t, err, "no MessageId")
	require.NotErrorIs(t, err, queue.ErrUnavailable)
}

func TestPublisher_NotConnectedSaysWhy(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	// The inbound queue exists as a classic queue: the publisher's
	// declaration fails with PRECONDITION_FAILED on every attempt.
	_, ch := tb.channel(t)
	_, err := ch.QueueDeclare(queue.InboundQueue(tb.ns), true, false, false, false, nil)
	require.NoError(t, err)

	p, err := queue.NewPublisher(context.Background(), tb.url, tb.ns,
		queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, Inbound: testenv.Topology(), Logger: tb.log})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	require.Eventually(t, func() bool {
		err := p.Publish(context.Background(), "m", []byte(`{}`))
		return err != nil && strings.Contains(err.Error(), "not connected") && strings.Contains(err.Error(), "PRECONDITION_FAILED")
	}, waitFor, 20*time.Millisecond)
	require.False(t, p.Ready())
}

func TestNewPublisher_RequiresConfirmTimeout(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := queue.NewPublisher(context.Background(), "amqp://guest:guest@127.0.0.1:1/", "test-queue-options",
			queue.PublisherOptions{ConfirmTimeout: d, Inbound: testenv.Topology()})
		require.ErrorContains(t, err, "ConfirmTimeout", d)
		require.ErrorContains(t, err, "PUBLISH_TIMEOUT", d)
	}
}

// The retention of the inbound topology is the configuration's, required
// when the publisher declares that topology and unused when it declares
// another.
func TestNewPublisher_RequiresTheInboundRetention(t *testing.T) {
	t.Parallel()
	const url = "amqp://guest:guest@127.0.0.1:1/"
	for _, bad := range badRetentions() {
		_, err := queue.NewPublisher(context.Background(), url, "test-queue-options",
			queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, Inbound: bad})
		require.ErrorContains(t, err, "Inbound", bad)
		require.ErrorContains(t, err, "DEAD_LETTER_", bad)
	}
	p, err := queue.NewPublisher(context.Background(), url, "test-queue-options",
		queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, RoutingKey: "elsewhere", Topology: queue.ClassicQueueTopology("elsewhere")})
	require.NoError(t, err, "another topology needs no retention")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, p.Close(ctx))
}
