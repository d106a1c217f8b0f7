package queue_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// observed records what a PublishObserver hears.
type observed struct {
	mu        sync.Mutex
	confirmed []time.Duration
	failed    []string
}

func (o *observed) PublishConfirmed(took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.confirmed = append(o.confirmed, took)
}

func (o *observed) PublishFailed(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failed = append(o.failed, reason)
}

func (o *observed) get() ([]time.Duration, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Duration(nil), o.confirmed...), append([]string(nil), o.failed...)
}

func TestPublisher_ObserverHearsEveryOutcome(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	exchange, bound := tb.ns+".batches", tb.ns+".bot"
	tb.removeAtEnd(t, []string{bound}, []string{exchange})
	obs := &observed{}
	p := tb.publisher(t, queue.PublisherOptions{Exchange: exchange, Topology: queue.FanoutTopology(exchange, ""), Observer: obs})

	// Unroutable, then (a queue bound) confirmed, then invalid.
	msg := amqp.Publishing{MessageId: "o-1", DeliveryMode: amqp.Persistent, Body: []byte(`{}`)}
	require.ErrorIs(t, p.PublishMessage(context.Background(), msg), queue.ErrUnroutable)
	_, ch := tb.channel(t)
	_, err := ch.QueueDeclare(bound, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(bound, "", exchange, false, nil))
	start := time.Now()
	require.NoError(t, p.PublishMessage(context.Background(), msg))
	took := time.Since(start)
	require.Error(t, p.PublishMessage(context.Background(), amqp.Publishing{}))
	// A caller whose context is already over.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, p.PublishMessage(ctx, amqp.Publishing{MessageId: "o-2"}))

	confirmed, failed := obs.get()
	require.Equal(t, []string{queue.FailUnroutable, queue.FailInvalid, queue.FailCanceled}, failed)
	require.Len(t, confirmed, 1)
	require.Positive(t, confirmed[0])
	require.LessOrEqual(t, confirmed[0], took, "measured until the confirm, within the call")

	require.NoError(t, p.Close(context.Background()))
	require.ErrorIs(t, p.Publish(context.Background(), "o-3", []byte(`{}`)), queue.ErrClosed)
	_, failed = obs.get()
	require.Equal(t, queue.FailClosed, failed[len(failed)-1])
}

func TestPublisher_ObserverHearsNotConnected(t *testing.T) {
	t.Parallel()
	obs := &observed{}
	p, err := queue.NewPublisher(context.Background(), "amqp://guest:guest@127.0.0.1:1/", "test-queue-unreachable",
		queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, Inbound: testenv.Topology(), Observer: obs,
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	require.NoError(t, err)
	defer func() { _ = p.Close(context.Background()) }()
	require.ErrorIs(t, p.Publish(context.Background(), "m", []byte(`{}`)), queue.ErrUnavailable)
	_, failed := obs.get()
	require.Equal(t, []string{queue.FailNotConnected}, failed)
}

func TestDepth_CountsTheInboundQueue(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	d := queue.NewInboundDepth(tb.url, tb.ns)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	_, err := d.Messages(ctx)
	require.ErrorContains(t, err, "NOT_FOUND", "no queue yet")

	p := tb.publisher(t, queue.PublisherOptions{}) // declares the inbound topology
	for _, id := range []string{"d-1", "d-2", "d-3"} {
		require.NoError(t, p.Publish(ctx, id, []byte(`{}`)))
	}
	n, err := d.Messages(ctx)
	require.NoError(t, err, "the failed declare closed only its channel")
	require.Equal(t, 3, n)

	// A read whose context is over fails at once; the next one works.
	done, stop := context.WithCancel(ctx)
	stop()
	_, err = d.Messages(done)
	require.ErrorIs(t, err, context.Canceled)
	n, err = d.Messages(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

// TestDepth_ASilentBrokerIsBoundedByTheContext: a broker that accepts the
// connection and never answers (a half-open link) costs a read its
// context's time, not the dial's or a heartbeat's.
func TestDepth_ASilentBrokerIsBoundedByTheContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	d := queue.NewInboundDepth("amqp://guest:guest@"+ln.Addr().String()+"/", "test-queue-silent")
	defer d.Close()
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		_, err := d.Messages(ctx)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), time.Second)
	}
}
