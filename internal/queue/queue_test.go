package queue_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// waitFor bounds every polling wait in these tests.
const waitFor = 20 * time.Second

func amqpURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

type testBundle struct {
	url string
	ns  string
	log *slog.Logger
}

// setup gives a test its own namespace, deleted when the test ends (after
// the test's publishers and consumers stopped: cleanups run last-in first-out).
func setup(t *testing.T) *testBundle {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	tb := &testBundle{
		url: amqpURL(),
		ns:  "test-queue-" + hex.EncodeToString(b),
		log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	testenv.CleanupBroker(t, tb.url, tb.ns)
	return tb
}

// publisher starts a Publisher, closed at the end of the test, and waits
// until it is connected. Its ConfirmTimeout and Inbound default to the
// configuration's.
func (tb *testBundle) publisher(t *testing.T, opts queue.PublisherOptions) *queue.Publisher {
	t.Helper()
	opts.Logger = tb.log
	if opts.ConfirmTimeout == 0 {
		opts.ConfirmTimeout = testConfirmTimeout
	}
	if opts.Inbound == (queue.TopologyOptions{}) {
		opts.Inbound = testenv.Topology()
	}
	p, err := queue.NewPublisher(context.Background(), tb.url, tb.ns, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	require.Eventually(t, p.Ready, waitFor, 10*time.Millisecond, "publisher never became ready")
	return p
}

// prefetch is the consumers' Prefetch in these tests.
const prefetch = 200

// consumer starts a Consumer (Inbound defaults to the configuration's) that
// passes every message to the returned channel. stop stops it and checks it ended without an error; it also runs
// at the end of the test.
type runningConsumer struct {
	c        *queue.Consumer
	messages chan queue.Message
	stop     func()
}

func (tb *testBundle) consumer(t *testing.T, opts queue.ConsumerOptions) *runningConsumer {
	t.Helper()
	opts.Logger = tb.log
	if opts.Inbound == (queue.TopologyOptions{}) {
		opts.Inbound = testenv.Topology()
	}
	rc := &runningConsumer{messages: make(chan queue.Message, 10_000)}
	c, err := queue.NewConsumer(tb.url, tb.ns, func(m queue.Message) { rc.messages <- m }, opts)
	require.NoError(t, err)
	rc.c = c
	require.NoError(t, c.Start(context.Background()))
	var once sync.Once
	rc.stop = func() {
		once.Do(func() {
			stopped := make(chan struct{})
			go func() { c.Stop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(waitFor):
				t.Fatal("Stop did not return")
			}
			requireClosed(t, c.Stopped(), "Stopped after Stop")
			require.NoError(t, c.Err(), "Err after Stop")
		})
	}
	t.Cleanup(rc.stop)
	requireClosed(t, c.Started(), "Started")
	require.Eventually(t, c.Ready, waitFor, 10*time.Millisecond, "consumer never became ready")
	return rc
}

// setupPubSub is setup with a publisher and a consumer (Prefetch prefetch)
// of the test's namespace, both connected.
func setupPubSub(t *testing.T) (*testBundle, *queue.Publisher, *runningConsumer) {
	t.Helper()
	tb := setup(t)
	return tb, tb.publisher(t, queue.PublisherOptions{}), tb.consumer(t, queue.ConsumerOptions{Prefetch: prefetch})
}

func requireClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("%s: not closed", what)
	}
}

// next returns the next message, failing the test after waitFor.
func (rc *runningConsumer) next(t *testing.T) queue.Message {
	t.Helper()
	select {
	case m := <-rc.messages:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message")
		return queue.Message{}
	}
}

// depth is the number of ready messages in queue name.
func (tb *testBundle) depth(t *testing.T, name string) int {
	t.Helper()
	conn, err := amqp.Dial(tb.url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

// forceClose makes the broker close the connection named name, as an
// operator or a node failover would. It uses rabbitmqctl, or the command in
// RABBITMQCTL (e.g. "docker compose exec -T rabbitmq rabbitmqctl").
func forceClose(t *testing.T, name string) {
	t.Helper()
	ctl := strings.Fields(os.Getenv("RABBITMQCTL"))
	if len(ctl) == 0 {
		ctl = []string{"rabbitmqctl"}
	}
	if _, err := exec.LookPath(ctl[0]); err != nil {
		t.Skipf("%s not found: set RABBITMQCTL to force-close connections", ctl[0])
	}
	run := func(args ...string) string {
		out, err := exec.Command(ctl[0], append(ctl[1:], args...)...).CombinedOutput()
		require.NoError(t, err, "rabbitmqctl %v: %s", args, out)
		return string(out)
	}
	var pid string
	// The broker may list a fresh connection a moment after the handshake.
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(run("list_connections", "pid", "client_properties", "-q", "--no-table-headers"), "\n") {
			if strings.Contains(line, `"`+name+`"`) {
				pid = strings.Fields(line)[0]
				return true
			}
		}
		return false
	}, waitFor, 100*time.Millisecond, "connection %s not listed", name)
	run("close_connection", pid, "lull test: forced close")
}

func publish(t *testing.T, p *queue.Publisher, id, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Publish(ctx, id, []byte(body)))
}

func TestInboundTopology_IsIdempotent(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	conn, ch := tb.channel(t)

	declare := queue.InboundTopology(tb.ns, testenv.Topology())
	require.NoError(t, declare(conn))
	require.NoError(t, declare(conn), "second declare")
	require.NoError(t, ch.ExchangeDeclarePassive(queue.DeadLetterExchange(tb.ns), amqp.ExchangeFanout, true, false, false, false, nil))
	for _, q := range []string{queue.InboundQueue(tb.ns), queue.DeadLetterQueue(tb.ns)} {
		_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		require.NoError(t, err, q)
	}
	// A classic queue of the same name is refused: the inbound queue is a
	// quorum queue.
	_, err := ch.QueueDeclare(queue.InboundQueue(tb.ns), true, false, false, false, nil)
	requirePreconditionFailed(t, err)
}

// requirePreconditionFailed checks that the broker refused a declaration
// because the entity exists with other arguments.
func requirePreconditionFailed(t *testing.T, err error) {
	t.Helper()
	var aerr *amqp.Error
	require.ErrorAs(t, err, &aerr)
	require.Equal(t, amqp.PreconditionFailed, aerr.Code)
}

func TestPublishConsume_EveryMessageExactlyOnce(t *testing.T) {
	t.Parallel()
	tb, p, rc := setupPubSub(t)

	const n, workers = 500, 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				id := "m-" + strconv.Itoa(i)
				if err := p.Publish(context.Background(), id, []byte(`{"n":"`+id+`"}`)); err != nil {
					errs <- err
				}
			}
		})
	}

	seen := map[string]int{}
	var acks sync.WaitGroup
	for len(seen) < n {
		d := rc.next(t)
		seen[d.MessageID]++
		require.Equal(t, `{"n":"`+d.MessageID+`"}`, string(d.Body))
		require.False(t, d.Redelivered, d.MessageID)
		// Settle from other goroutines, as the worker does.
		acks.Go(func() { assert.NoError(t, d.Settle(queue.Ack)) })
	}
	wg.Wait()
	acks.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for id, c := range seen {
		require.Equal(t, 1, c, id)
	}
	select {
	case d := <-rc.messages:
		t.Fatalf("unexpected extra delivery %s", d.MessageID)
	default:
	}
	rc.stop()
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
}

func TestMessage_RejectMovesToDeadLetterQueue(t *testing.T) {
	t.Parallel()
	tb, p, rc := setupPubSub(t)

	publish(t, p, "poison", `{"broken"`)
	d := rc.next(t)
	require.Equal(t, "poison", d.MessageID)
	require.Error(t, d.Settle(0), "no outcome")
	require.NoError(t, d.Settle(queue.Reject), "an unknown outcome leaves the message unsettled")
	for _, o := range []queue.Outcome{queue.Ack, queue.Requeue, queue.Reject} {
		require.ErrorIs(t, d.Settle(o), queue.ErrSettled, "a settled message cannot be settled again")
	}

	require.Eventually(t, func() bool { return tb.depth(t, queue.DeadLetterQueue(tb.ns)) == 1 },
		waitFor, 20*time.Millisecond)
	rc.stop()
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
}

func TestMessage_RequeueIsRedelivered(t *testing.T) {
	t.Parallel()
	tb, p, rc := setupPubSub(t)

	publish(t, p, "again", `{}`)
	first := rc.next(t)
	require.Equal(t, "again", first.MessageID)
	require.False(t, first.Redelivered)
	require.NoError(t, first.Settle(queue.Requeue))

	second := rc.next(t)
	require.Equal(t, "again", second.MessageID)
	require.True(t, second.Redelivered)
	require.NoError(t, second.Settle(queue.Ack))
	rc.stop()
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
	require.Equal(t, 0, tb.depth(t, queue.DeadLetterQueue(tb.ns)))
}

func TestPublisher_UnreachableBrokerIsUnavailable(t *testing.T) {
	t.Parallel()
	p, err := queue.NewPublisher(context.Background(), "amqp://guest:guest@127.0.0.1:1/", "test-queue-unreachable",
		queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, Inbound: testenv.Topology(), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	require.NoError(t, err, "NewPublisher must start without a broker")
	require.False(t, p.Ready())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err = p.Publish(ctx, "m", []byte(`{}`))
	require.ErrorIs(t, err, queue.ErrUnavailable)
	require.Less(t, time.Since(start), time.Second)
	require.False(t, p.Ready())

	require.NoError(t, p.Close(ctx))
	require.ErrorIs(t, p.Publish(ctx, "m", []byte(`{}`)), queue.ErrClosed)
}

func TestPublisher_BadURLFailsAtStart(t *testing.T) {
	t.Parallel()
	_, err := queue.NewPublisher(context.Background(), "http://nope", "test-queue-bad",
		queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, Inbound: testenv.Topology()})
	require.ErrorContains(t, err, "parse AMQP URL")
}

func TestConsumer_RefusedCredentialsEndIt(t *testing.T) {
	t.Parallel()
	url := strings.Replace(amqpURL(), "guest:guest@", "guest:wrong-password@", 1)
	if url == amqpURL() {
		t.Skip("AMQP_URL has no guest:guest credentials to spoil")
	}
	c, err := queue.NewConsumer(url, "test-queue-refused", func(queue.Message) { t.Error("unexpected message") },
		queue.ConsumerOptions{Prefetch: prefetch, Inbound: testenv.Topology(), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	requireClosed(t, c.Stopped(), "the consumer must give up on refused credentials, not retry for ever")
	require.Error(t, c.Err())
	require.False(t, c.Ready())
	c.Stop() // ended already: returns at once
}

func TestNewConsumer_RefusesBadOptions(t *testing.T) {
	t.Parallel()
	handle := func(queue.Message) {}
	retention := testenv.Topology()
	_, err := queue.NewConsumer("http://nope", "test-queue-bad", handle, queue.ConsumerOptions{Prefetch: prefetch, Inbound: retention})
	require.ErrorContains(t, err, "parse AMQP URL")
	_, err = queue.NewConsumer(amqpURL(), "test-queue-bad", nil, queue.ConsumerOptions{Prefetch: prefetch, Inbound: retention})
	require.ErrorContains(t, err, "no handler")
	for _, n := range []int{0, -1, 65536} {
		_, err = queue.NewConsumer(amqpURL(), "test-queue-bad", handle, queue.ConsumerOptions{Prefetch: n, Inbound: retention})
		require.ErrorContains(t, err, "prefetch", n)
	}
	for _, bad := range badRetentions() {
		_, err = queue.NewConsumer(amqpURL(), "test-queue-bad", handle, queue.ConsumerOptions{Prefetch: 1, Inbound: bad})
		require.ErrorContains(t, err, "DEAD_LETTER_", bad)
	}
	c, err := queue.NewConsumer(amqpURL(), "test-queue-bad", handle, queue.ConsumerOptions{Prefetch: 1, Inbound: retention})
	require.NoError(t, err)
	c.Stop() // never started: returns at once
	require.NoError(t, c.Err())
}

func TestMessage_NotFromAConsumerCannotBeSettled(t *testing.T) {
	t.Parallel()
	require.ErrorContains(t, queue.Message{MessageID: "m"}.Settle(queue.Ack), "not from a consumer")
	require.Equal(t, "reject", queue.Reject.String())
}

// channel opens a connection and channel of the test's own.
func (tb *testBundle) channel(t *testing.T) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(tb.url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return conn, ch
}

func TestMessage_RequeuedPoisonMovesToDeadLetterQueueAtDeliveryLimit(t *testing.T) {
	t.Parallel()
	tb, p, rc := setupPubSub(t)

	publish(t, p, "crashes-the-worker", `{}`)
	var deliveries atomic.Int64
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case d := <-rc.messages:
				deliveries.Add(1)
				assert.NoError(t, d.Settle(queue.Requeue))
			case <-done:
				return
			}
		}
	}()
	require.Eventually(t, func() bool { return tb.depth(t, queue.DeadLetterQueue(tb.ns)) == 1 },
		waitFor, 20*time.Millisecond)
	t.Logf("delivered %d times before dead-lettering", deliveries.Load())
	require.InDelta(t, queue.DeliveryLimit, deliveries.Load(), 1, "deliveries before dead-lettering")
}
