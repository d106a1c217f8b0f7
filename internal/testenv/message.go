package testenv

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// NextMessage takes one message off queue name through ch (acked on
// delivery), polling for up to wait; it fails the test when none came.
func NextMessage(tb testing.TB, ch *amqp.Channel, name string, wait time.Duration) amqp.Delivery {
	tb.Helper()
	var d amqp.Delivery
	require.Eventually(tb, func() bool {
		var ok bool
		var err error
		d, ok, err = ch.Get(name, true)
		require.NoError(tb, err)
		return ok
	}, wait, 10*time.Millisecond, "no message in %s", name)
	return d
}

// Drain takes every message queue name holds now off it through ch (acked
// on delivery), in queue order. It consumes rather than polls: a quorum
// queue with a single active consumer (lull's inbound queue) refuses
// basic.get.
func Drain(tb testing.TB, ch *amqp.Channel, name string) []amqp.Delivery {
	tb.Helper()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	require.NoError(tb, err)
	if q.Messages == 0 {
		return nil
	}
	tag := "lull-test-drain-" + name
	deliveries, err := ch.Consume(name, tag, true, false, false, false, nil)
	require.NoError(tb, err)
	out := make([]amqp.Delivery, 0, q.Messages)
	for len(out) < q.Messages {
		select {
		case d, ok := <-deliveries:
			require.True(tb, ok, "the delivery stream of %s ended", name)
			out = append(out, d)
		case <-time.After(10 * time.Second):
			require.FailNow(tb, "not every message delivered", "%d of %d from %s", len(out), q.Messages, name)
		}
	}
	require.NoError(tb, ch.Cancel(tag, false))
	for range deliveries { // closed after basic.cancel-ok
	}
	return out
}
