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
// until it is connected.
func (tb *testBundle) publisher(t *testing.T, opts queue.PublisherOptions) *queue.Publisher {
	t.Helper()
	opts.Logger = tb.log
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

// consumer runs a Consumer that passes every delivery to the returned
// channel. stop cancels Run and checks it returned nil; it also runs at the
// end of the test.
type runningConsumer struct {
	c          *queue.Consumer
	deliveries chan queue.Delivery
	stop       func()
}

func (tb *testBundle) consumer(t *testing.T, opts queue.ConsumerOptions) *runningConsumer {
	t.Helper()
	opts.Logger = tb.log
	c := queue.NewConsumer(tb.url, tb.ns, opts)
	rc := &runningConsumer{c: c, deliveries: make(chan queue.Delivery, 10_000)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func(d queue.Delivery) { rc.deliveries <- d }) }()
	var once sync.Once
	rc.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "Run after cancel")
			case <-time.After(waitFor):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(rc.stop)
	require.Eventually(t, c.Ready, waitFor, 10*time.Millisecond, "consumer never became ready")
	return rc
}

// next returns the next delivery, failing the test after waitFor.
func (rc *runningConsumer) next(t *testing.T) queue.Delivery {
	t.Helper()
	select {
	case d := <-rc.deliveries:
		return d
	case <-time.After(waitFor):
		t.Fatal("no delivery")
		return queue.Delivery{}
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

func TestDeclare_IsIdempotent(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	conn, err := amqp.Dial(tb.url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()

	require.NoError(t, queue.Declare(ch, tb.ns))
	require.NoError(t, queue.Declare(ch, tb.ns), "second declare")
	require.NoError(t, ch.ExchangeDeclarePassive(queue.DeadLetterExchange(tb.ns), amqp.ExchangeFanout, true, false, false, false, nil))
	for _, q := range []string{queue.InboundQueue(tb.ns), queue.DeadLetterQueue(tb.ns)} {
		_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		require.NoError(t, err, q)
	}
	// A classic queue of the same name is refused: the inbound queue is a
	// quorum queue.
	_, err = ch.QueueDeclare(queue.InboundQueue(tb.ns), true, false, false, false, nil)
	var aerr *amqp.Error
	require.ErrorAs(t, err, &aerr)
	require.Equal(t, amqp.PreconditionFailed, aerr.Code)
}

func TestPublishConsume_EveryMessageExactlyOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.consumer(t, queue.ConsumerOptions{})

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
		acks.Go(func() { assert.NoError(t, d.Ack()) })
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
	case d := <-rc.deliveries:
		t.Fatalf("unexpected extra delivery %s", d.MessageID)
	default:
	}
	rc.stop()
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
}

func TestDelivery_DeadLetterMovesToDeadLetterQueue(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.consumer(t, queue.ConsumerOptions{})

	publish(t, p, "poison", `{"broken"`)
	d := rc.next(t)
	require.Equal(t, "poison", d.MessageID)
	require.NoError(t, d.DeadLetter())
	require.ErrorIs(t, d.Ack(), queue.ErrSettled, "a settled delivery cannot be settled again")

	require.Eventually(t, func() bool { return tb.depth(t, queue.DeadLetterQueue(tb.ns)) == 1 },
		waitFor, 20*time.Millisecond)
	rc.stop()
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
}

func TestDelivery_RequeueIsRedelivered(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.consumer(t, queue.ConsumerOptions{})

	publish(t, p, "again", `{}`)
	first := rc.next(t)
	require.Equal(t, "again", first.MessageID)
	require.False(t, first.Redelivered)
	require.NoError(t, first.Requeue())

	second := rc.next(t)
	require.Equal(t, "again", second.MessageID)
	require.True(t, second.Redelivered)
	require.NoError(t, second.Ack())
	rc.stop()
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
	require.Equal(t, 0, tb.depth(t, queue.DeadLetterQueue(tb.ns)))
}

func TestPublisher_UnreachableBrokerIsUnavailable(t *testing.T) {
	t.Parallel()
	p, err := queue.NewPublisher(context.Background(), "amqp://guest:guest@127.0.0.1:1/", "test-queue-unreachable",
		queue.PublisherOptions{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
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
	_, err := queue.NewPublisher(context.Background(), "http://nope", "test-queue-bad", queue.PublisherOptions{})
	require.Error(t, err)
}

func TestConsumer_RefusedCredentialsEndRun(t *testing.T) {
	t.Parallel()
	url := strings.Replace(amqpURL(), "guest:guest@", "guest:wrong-password@", 1)
	if url == amqpURL() {
		t.Skip("AMQP_URL has no guest:guest credentials to spoil")
	}
	c := queue.NewConsumer(url, "test-queue-refused", queue.ConsumerOptions{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err := c.Run(ctx, func(queue.Delivery) { t.Error("unexpected delivery") })
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "Run must give up on refused credentials, not retry until ctx ends")
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

func TestDelivery_PoisonIsDeadLetteredAtDeliveryLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.consumer(t, queue.ConsumerOptions{})

	publish(t, p, "crashes-the-worker", `{}`)
	var deliveries atomic.Int64
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case d := <-rc.deliveries:
				deliveries.Add(1)
				assert.NoError(t, d.Requeue())
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
