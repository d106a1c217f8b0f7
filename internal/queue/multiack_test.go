package queue_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// never is an ack delay no test waits for: only a full run or Stop sends.
const never = time.Hour

// coalescingConsumer is tb.consumer with the ack coalescing set before
// Start.
func (tb *testBundle) coalescingConsumer(t *testing.T, batch int, delay time.Duration, opts queue.ConsumerOptions) *runningConsumer {
	t.Helper()
	opts.Logger = tb.log
	opts.Inbound = testenv.Topology()
	rc := &runningConsumer{messages: make(chan queue.Message, 10_000)}
	c, err := queue.NewConsumer(tb.url, tb.ns, func(m queue.Message) { rc.messages <- m }, opts)
	require.NoError(t, err)
	queue.SetAckCoalescing(c, batch, delay)
	rc.c = c
	require.NoError(t, c.Start(context.Background()))
	var once sync.Once
	rc.stop = func() {
		once.Do(func() {
			c.Stop()
			requireClosed(t, c.Stopped(), "Stopped after Stop")
			require.NoError(t, c.Err(), "Err after Stop")
		})
	}
	t.Cleanup(rc.stop)
	require.Eventually(t, c.Ready, waitFor, 10*time.Millisecond, "consumer never became ready")
	return rc
}

// nextN returns the next n messages, in delivery order, checking their ids
// are want.
func (rc *runningConsumer) nextIDs(t *testing.T, want ...string) []queue.Message {
	t.Helper()
	ms := make([]queue.Message, len(want))
	for i, id := range want {
		ms[i] = rc.next(t)
		require.Equal(t, id, ms[i].MessageID)
	}
	return ms
}

// requireNothingMore checks that no message arrives for a while.
func (rc *runningConsumer) requireNothingMore(t *testing.T) {
	t.Helper()
	select {
	case m := <-rc.messages:
		t.Fatalf("unexpected delivery %s (redelivered %v)", m.MessageID, m.Redelivered)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestConsumer_OutOfOrderAcksAreOneMultipleAck(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.coalescingConsumer(t, 2, never, queue.ConsumerOptions{Prefetch: prefetch})
	for _, id := range []string{"1", "2", "3"} {
		publish(t, p, id, `{}`)
	}
	ms := rc.nextIDs(t, "1", "2", "3")

	// 3 waits above the unsettled 1, 1 alone is a run shorter than the
	// batch, 2 joins them into the run 1..3: one multiple ack of 3.
	require.NoError(t, ms[2].Settle(queue.Ack))
	require.NoError(t, ms[0].Settle(queue.Ack))
	require.Zero(t, queue.AckFrames(rc.c), "nothing sent while the run is short")
	require.NoError(t, ms[1].Settle(queue.Ack))
	require.EqualValues(t, 1, queue.AckFrames(rc.c), "one multiple ack for three messages")
	for _, m := range ms {
		require.ErrorIs(t, m.Settle(queue.Ack), queue.ErrSettled)
	}

	rc.stop()
	require.EqualValues(t, 1, queue.AckFrames(rc.c), "nothing left to send at Stop")
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)), "all three acked")
}

func TestConsumer_RequeueInTheMiddleIsRedeliveredAndTheAcksAroundItLand(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.coalescingConsumer(t, 2, never, queue.ConsumerOptions{Prefetch: prefetch})
	for _, id := range []string{"a", "b", "c"} {
		publish(t, p, id, `{}`)
	}
	ms := rc.nextIDs(t, "a", "b", "c")

	require.NoError(t, ms[2].Settle(queue.Ack))
	require.NoError(t, ms[1].Settle(queue.Requeue), "sent at once, on its own")
	require.Zero(t, queue.AckFrames(rc.c))
	// a completes the run a, (b requeued), c: one multiple ack of c, which
	// cannot touch b: it is settled already.
	require.NoError(t, ms[0].Settle(queue.Ack))
	require.EqualValues(t, 1, queue.AckFrames(rc.c))

	again := rc.next(t)
	require.Equal(t, "b", again.MessageID)
	require.True(t, again.Redelivered)
	require.NoError(t, again.Settle(queue.Ack))
	rc.requireNothingMore(t)

	rc.stop()
	require.EqualValues(t, 2, queue.AckFrames(rc.c), "Stop sent the redelivery's ack")
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
	require.Equal(t, 0, tb.depth(t, queue.DeadLetterQueue(tb.ns)))
}

func TestConsumer_StopSendsTheWaitingAcks(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.coalescingConsumer(t, 64, never, queue.ConsumerOptions{Prefetch: prefetch})
	const n = 5
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "s-" + strconv.Itoa(i)
		publish(t, p, ids[i], `{}`)
	}
	ms := rc.nextIDs(t, ids...)
	for i := n - 1; i >= 0; i-- {
		require.NoError(t, ms[i].Settle(queue.Ack))
	}
	require.Zero(t, queue.AckFrames(rc.c), "the run waits for the batch")

	rc.stop()
	require.EqualValues(t, 1, queue.AckFrames(rc.c), "Stop sent the run as one multiple ack")
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)), "nothing acked comes back")
	again := tb.consumer(t, queue.ConsumerOptions{Prefetch: prefetch})
	again.requireNothingMore(t)
}

func TestConsumer_DrainTimeoutSendsTheAcksAboveAnUnsettledMessage(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.coalescingConsumer(t, 64, never, queue.ConsumerOptions{Prefetch: prefetch, DrainTimeout: 200 * time.Millisecond})
	for _, id := range []string{"held", "x", "y"} {
		publish(t, p, id, `{}`)
	}
	ms := rc.nextIDs(t, "held", "x", "y")
	require.NoError(t, ms[2].Settle(queue.Ack))
	require.NoError(t, ms[1].Settle(queue.Ack))

	// Stop gives up on held; x and y cannot be acked with a multiple ack
	// (it would ack held), so each is acked on its own.
	rc.stop()
	require.EqualValues(t, 2, queue.AckFrames(rc.c))
	err := ms[0].Settle(queue.Ack)
	require.Error(t, err, "a settle after Stop is not sent")
	require.False(t, errors.Is(err, queue.ErrSettled))

	again := tb.consumer(t, queue.ConsumerOptions{Prefetch: prefetch})
	m := again.next(t)
	require.Equal(t, "held", m.MessageID, "only the unsettled message comes back")
	require.True(t, m.Redelivered)
	require.NoError(t, m.Settle(queue.Ack))
	again.requireNothingMore(t)
}

// With the default coalescing and a prefetch window of 20, 200 messages
// only get through if the acks reach the broker while the consumer runs;
// settled in shuffled order from several goroutines they take fewer ack
// frames than messages.
func TestConsumer_CoalescedAcksLandWhileRunning(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	rc := tb.consumer(t, queue.ConsumerOptions{Prefetch: 20})
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { assert.NoError(t, p.Publish(context.Background(), "w-"+strconv.Itoa(i), []byte(`{}`))) })
	}

	lanes := make([]chan queue.Message, 4)
	var settled sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan queue.Message, n)
		settled.Go(func() {
			for m := range lanes[i] {
				if rand.IntN(4) == 0 {
					time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
				}
				assert.NoError(t, m.Settle(queue.Ack))
			}
		})
	}
	seen := map[string]bool{}
	for len(seen) < n {
		m := rc.next(t)
		require.False(t, seen[m.MessageID], "delivered twice: %s", m.MessageID)
		seen[m.MessageID] = true
		lanes[rand.IntN(len(lanes))] <- m
	}
	for _, l := range lanes {
		close(l)
	}
	settled.Wait()
	wg.Wait()
	rc.stop()
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
	frames := queue.AckFrames(rc.c)
	t.Logf("%d messages, %d ack frames", n, frames)
	require.Less(t, frames, int64(n))
}

// When the handed-out messages and the waiting acks fill a quarter of the
// prefetch window, acks do not wait; one that completes a run goes out in
// the run's multiple ack only (a second ack of its tag would make the
// broker close the channel).
func TestConsumer_AcksDoNotWaitWhenTheWindowIsFilling(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	// Prefetch 40: nothing waits once 10 are handed out or waiting.
	rc := tb.coalescingConsumer(t, 64, never, queue.ConsumerOptions{Prefetch: 40})
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
		publish(t, p, ids[i], `{}`)
	}
	ms := rc.nextIDs(t, ids...)

	require.NoError(t, ms[1].Settle(queue.Ack))
	require.EqualValues(t, 1, queue.AckFrames(rc.c), "2 is acked on its own at once")
	require.NoError(t, ms[0].Settle(queue.Ack))
	require.EqualValues(t, 2, queue.AckFrames(rc.c), "1 is acked at once, by the run 1..2")
	require.NoError(t, ms[2].Settle(queue.Ack))
	require.EqualValues(t, 3, queue.AckFrames(rc.c), "3 is acked at once: 9 still handed out")
	for _, m := range ms[3:] {
		require.NoError(t, m.Settle(queue.Ack))
	}
	require.EqualValues(t, 3, queue.AckFrames(rc.c), "4..12 wait: 9 acks, none handed out")

	publish(t, p, "13", `{}`)
	m := rc.next(t)
	require.Equal(t, "13", m.MessageID)
	require.False(t, m.Redelivered, "the channel stayed open")
	require.NoError(t, m.Settle(queue.Ack))
	require.EqualValues(t, 4, queue.AckFrames(rc.c), "the tenth waiting ack sends the run 4..13")
	rc.stop()
	require.EqualValues(t, 4, queue.AckFrames(rc.c))
	require.Equal(t, 0, tb.depth(t, queue.InboundQueue(tb.ns)))
	again := tb.consumer(t, queue.ConsumerOptions{Prefetch: prefetch})
	again.requireNothingMore(t)
}
