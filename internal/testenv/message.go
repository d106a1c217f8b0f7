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
