package queue_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// The inbound queue has a single active consumer: of two workers
// subscribed, one gets messages; when it stops holding messages it never
// appended (it acked some, released the rest), the other gets the queue
// only after all of them are back, and so gets them first, in queue order,
// then the rest. A shutdown that cancelled the subscription before giving
// the held messages back would let the second consumer start on later
// messages first.
func TestConsumer_OneActiveAtATime_TheNextTakesOverInQueueOrder(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.publisher(t, queue.PublisherOptions{})
	const n, window, acked = 300, 50, 10
	for i := range n {
		publish(t, p, "m"+strconv.Itoa(i), strconv.Itoa(i))
	}
	first := tb.consumer(t, queue.ConsumerOptions{Prefetch: window})
	second := tb.consumer(t, queue.ConsumerOptions{Prefetch: window})

	var held []queue.Message
	for i := range window {
		m := first.next(t)
		require.Equal(t, strconv.Itoa(i), string(m.Body), "the first consumer gets the queue in order")
		held = append(held, m)
	}
	second.requireNothingMore(t) // while the first is active
	for i, m := range held {
		o := queue.Release
		if i < acked {
			o = queue.Ack
		}
		require.NoError(t, m.Settle(o))
	}
	first.stop()

	for i := acked; i < n; i++ {
		m := second.next(t)
		require.Equal(t, strconv.Itoa(i), string(m.Body), "the second consumer takes over where the first acked")
		require.NoError(t, m.Settle(queue.Ack))
	}
	second.requireNothingMore(t)
}

// A released message is given back when the channel closes, not before:
// it holds back the multiple ack of the messages after it, and the acks
// around it still land.
func TestMessage_ReleaseSendsNothingUntilTheChannelCloses(t *testing.T) {
	t.Parallel()
	tb, p, c := setupPubSub(t)
	for i := range 3 {
		publish(t, p, "m"+strconv.Itoa(i), strconv.Itoa(i))
	}
	ms := []queue.Message{c.next(t), c.next(t), c.next(t)}
	require.NoError(t, ms[0].Settle(queue.Ack))
	require.NoError(t, ms[1].Settle(queue.Release))
	require.ErrorIs(t, ms[1].Settle(queue.Ack), queue.ErrSettled, "released is settled")
	require.NoError(t, ms[2].Settle(queue.Ack))
	c.requireNothingMore(t) // while the channel is open
	c.stop()

	again := tb.consumer(t, queue.ConsumerOptions{Prefetch: prefetch})
	m := again.next(t)
	require.Equal(t, "1", string(m.Body), "only the released message comes back")
	require.True(t, m.Redelivered)
	require.Equal(t, 1, m.DeliveryCount(), "given back once")
	require.Zero(t, ms[0].DeliveryCount(), "a first delivery")
	require.NoError(t, m.Settle(queue.Ack))
	again.requireNothingMore(t)
}

// An inbound queue declared by an earlier lull has no single active
// consumer; redeclaring it with one is a PRECONDITION_FAILED. lull takes
// the queue as it is, warns once with the way to apply it, and runs.
func TestInboundTopology_ExistingInboundQueueWithoutSingleActiveConsumer(t *testing.T) {
	t.Parallel()
	ns := retentionNS(t)
	conn := dialBroker(t)
	declareInbound(t, conn, ns, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-dead-letter-exchange": queue.DeadLetterExchange(ns),
		"x-delivery-limit":       int32(queue.DeliveryLimit),
	})

	var logs testenv.LogBuffer
	opts := testenv.Topology()
	opts.Logger = logs.Logger()
	require.NoError(t, queue.InboundTopology(ns, opts)(conn))
	require.NoError(t, queue.InboundTopology(ns, opts)(conn), "again, as on a reconnect")
	require.False(t, conn.IsClosed())

	p, err := queue.NewPublisher(context.Background(), testenv.AMQPURL(), ns,
		queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, Logger: opts.Logger, Inbound: opts})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	got := make(chan string, 1)
	c, err := queue.NewConsumer(testenv.AMQPURL(), ns, func(m queue.Message) {
		_ = m.Settle(queue.Ack)
		got <- string(m.Body)
	}, queue.ConsumerOptions{Prefetch: prefetch, Logger: opts.Logger, Inbound: opts})
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() {
		c.Stop()
		require.NoError(t, c.Err())
	})
	require.Eventually(t, func() bool { return p.Ready() && c.Ready() }, 20*time.Second, 10*time.Millisecond,
		"publisher and consumer ready: %s", &logs)
	publish(t, p, "m", "oi")
	select {
	case body := <-got:
		require.Equal(t, "oi", body)
	case <-time.After(waitFor):
		t.Fatal("nothing consumed")
	}

	out := logs.String()
	require.Equal(t, 1, strings.Count(out, "inbound queue exists with other arguments"), "warned once: %s", out)
	require.Contains(t, out, "queue="+queue.InboundQueue(ns))
	require.Contains(t, out, "x-single-active-consumer")
	require.Contains(t, out, "--if-empty "+queue.InboundQueue(ns))
	require.NotContains(t, out, "dead-letter queue exists", "the dead-letter queue was declared as it is now")
}

// Only the missing single active consumer is tolerated: an inbound queue
// that also differs in anything else (its delivery limit, its type) is
// refused, whichever argument the broker names first.
func TestInboundTopology_InboundQueueDifferingInMoreIsRefused(t *testing.T) {
	t.Parallel()
	for name, args := range map[string]amqp.Table{
		"delivery limit": {
			amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
			"x-dead-letter-exchange": "elsewhere",
			"x-delivery-limit":       int32(20),
		},
		"classic": {"x-dead-letter-exchange": "elsewhere"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ns := retentionNS(t)
			conn := dialBroker(t)
			args["x-dead-letter-exchange"] = queue.DeadLetterExchange(ns)
			declareInbound(t, conn, ns, args)

			var logs testenv.LogBuffer
			opts := testenv.Topology()
			opts.Logger = logs.Logger()
			err := queue.InboundTopology(ns, opts)(conn)
			var aerr *amqp.Error
			require.ErrorAs(t, err, &aerr)
			require.Equal(t, amqp.PreconditionFailed, aerr.Code, "%v", err)
			require.NotContains(t, logs.String(), "inbound queue exists", "nothing taken as it is")
		})
	}
}

// declareInbound declares ns's inbound queue with args, as an earlier
// deployment would have.
func declareInbound(t *testing.T, conn *amqp.Connection, ns string, args amqp.Table) {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	_, err = ch.QueueDeclare(queue.InboundQueue(ns), true, false, false, false, args)
	require.NoError(t, err)
}
