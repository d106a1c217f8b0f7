package queue_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
)

func TestPublisher_CloseWaitsForConfirmsThenRefuses(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})

	// Publish from many goroutines while Close runs: every call either
	// gets its confirm (and the message is in the queue) or ErrClosed.
	const n = 400
	var acked atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			if i == n/2 {
				close(started)
			}
			err := p.Publish(context.Background(), "c-"+strconv.Itoa(i), []byte(`{}`))
			if err == nil {
				acked.Add(1)
				return
			}
			assert.ErrorIs(t, err, queue.ErrClosed)
		})
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Close(ctx))
	wg.Wait()

	require.False(t, p.Ready())
	require.ErrorIs(t, p.Publish(ctx, "late", []byte(`{}`)), queue.ErrClosed)
	require.Positive(t, acked.Load())
	require.Equal(t, int(acked.Load()), tb.depth(t, queue.InboundQueue(tb.ns)), "every acked message is stored")
}

func TestPublisher_UnroutableMessageIsNotAcked(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	publish(t, p, "before", `{}`)

	// An operator deletes the queue under the running publisher: the broker
	// would ack and drop the message, so Publish must refuse it...
	conn, ch := tb.channel(t)
	_, err := ch.QueueDelete(queue.InboundQueue(tb.ns), false, false, false)
	require.NoError(t, err)
	require.NoError(t, ch.Close())
	require.NoError(t, conn.Close())
	err = p.Publish(context.Background(), "lost", []byte(`{}`))
	require.ErrorIs(t, err, queue.ErrUnavailable)

	// ...and re-declare the topology, so the next attempts succeed.
	require.Eventually(t, func() bool {
		return p.Publish(context.Background(), "after", []byte(`{}`)) == nil
	}, waitFor, 20*time.Millisecond)
	require.Equal(t, 1, tb.depth(t, queue.InboundQueue(tb.ns)))
}

func TestPublisher_RecoversAfterBrokerClosesConnection(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{ConfirmTimeout: 2 * time.Second})
	rc := tb.consumer(t, queue.ConsumerOptions{Prefetch: prefetch})

	// Publish continuously from several goroutines across the forced close.
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		failures int
		seq      atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := "r-" + strconv.FormatInt(seq.Add(1), 10)
				start := time.Now()
				err := p.Publish(context.Background(), id, []byte(`{}`))
				assert.Less(t, time.Since(start), 3*time.Second, "Publish must not hang on a dead channel")
				mu.Lock()
				if err == nil {
					accepted[id] = true
				} else {
					assert.ErrorIs(t, err, queue.ErrUnavailable)
					failures++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(5 * time.Millisecond) // pace the retries of this load loop
				}
			}
		})
	}
	countAccepted := func() int { mu.Lock(); defer mu.Unlock(); return len(accepted) }
	countFailures := func() int { mu.Lock(); defer mu.Unlock(); return failures }
	require.Eventually(t, func() bool { return countAccepted() > 50 }, waitFor, 10*time.Millisecond)

	forceClose(t, "lull-publisher-"+tb.ns)
	require.Eventually(t, func() bool { return !p.Ready() || countFailures() > 0 }, waitFor, time.Millisecond)
	before := countAccepted()
	require.Eventually(t, func() bool { return p.Ready() && countAccepted() > before+50 }, waitFor, 10*time.Millisecond,
		"publisher did not recover")
	close(stop)
	wg.Wait()

	// Nothing accepted is lost: every acked id reaches the consumer.
	// (Messages that failed may have been stored too: the sender retries
	// them and the worker dedupes.)
	mu.Lock()
	missing := make(map[string]bool, len(accepted))
	for id := range accepted {
		missing[id] = true
	}
	mu.Unlock()
	for len(missing) > 0 {
		d := rc.next(t)
		delete(missing, d.MessageID)
		require.NoError(t, d.Settle(queue.Ack))
	}
}

func TestConsumer_ReconnectsAfterBrokerClosesConnection(t *testing.T) {
	t.Parallel()
	tb, p, rc := setupPubSub(t)

	publish(t, p, "held", `{"n":1}`)
	held := rc.next(t)
	require.Equal(t, "held", held.MessageID)
	require.False(t, held.Redelivered)

	forceClose(t, "lull-consumer-"+tb.ns)

	// The unsettled message comes back on the new connection...
	again := rc.next(t)
	require.Equal(t, "held", again.MessageID)
	require.True(t, again.Redelivered)
	require.Equal(t, `{"n":1}`, string(again.Body))
	// ...and the message from the old channel can no longer be settled:
	// its tag must not ack whatever carries that tag on the new channel.
	err := held.Settle(queue.Ack)
	require.Error(t, err)
	require.False(t, errors.Is(err, queue.ErrSettled))
	require.NoError(t, again.Settle(queue.Ack))
	require.True(t, rc.c.Ready())

	publish(t, p, "after", `{"n":2}`)
	d := rc.next(t)
	require.Equal(t, "after", d.MessageID)
	require.NoError(t, d.Settle(queue.Ack))

	rc.stop()
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
}

func TestConsumer_StopWaitsForHandedOutMessages(t *testing.T) {
	t.Parallel()
	tb, p, rc := setupPubSub(t)

	publish(t, p, "slow", `{}`)
	d := rc.next(t)
	stopped := make(chan struct{})
	go func() { rc.stop(); close(stopped) }()
	// Stop keeps the channel open while the message is being handled...
	require.Eventually(t, func() bool { return !rc.c.Ready() }, waitFor, time.Millisecond)
	select {
	case <-stopped:
		t.Fatal("Stop returned with a message unsettled")
	case <-time.After(100 * time.Millisecond):
	}
	// ...so the late ack still lands.
	require.NoError(t, d.Settle(queue.Ack))
	<-stopped
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
}
