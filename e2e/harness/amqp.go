package harness

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/queue"
)

// Consume subscribes to queue name (waiting for it to be declared) and
// returns its deliveries; the subscription ends with the test.
func (d *Deployment) Consume(name string) <-chan amqp.Delivery {
	d.TB.Helper()
	d.WaitQueue(name, "the queue declared", func(amqp.Queue) bool { return true })
	deliveries, err := d.Channel().Consume(name, "", true, false, false, false, nil)
	require.NoError(d.TB, err)
	return deliveries
}

// NextBatch waits up to timeout for one AMQP delivery and decodes its
// batch; it returns it also as the receiver would have recorded it,
// accepted, for AssertExactlyOnce.
func NextBatch(tb testing.TB, deliveries <-chan amqp.Delivery, timeout time.Duration) (amqp.Delivery, Received) {
	tb.Helper()
	select {
	case d := <-deliveries:
		r := Received{Body: d.Body, At: time.Now(), Status: http.StatusOK}
		require.NoError(tb, json.Unmarshal(d.Body, &r.Batch), "batch JSON: %s", d.Body)
		return d, r
	case <-time.After(timeout):
		tb.Fatalf("no batch within %s", timeout)
		return amqp.Delivery{}, Received{}
	}
}

// Named returns ns+suffix, or nothing while ns is not known: for
// testenv.CleanupBrokerEntities registered before Setup named the
// namespace.
func Named(ns *string, suffix string) func() []string {
	return func() []string {
		if *ns == "" {
			return nil
		}
		return []string{*ns + suffix}
	}
}

// BatchOf is one accepted request carrying bt, as the receiver would have
// recorded it: for AssertExactlyOnce over batches a test got another way.
func BatchOf(bt batch.Batch) Received { return Received{Batch: bt, Status: http.StatusOK} }

// PublishInbound publishes body to the inbound queue as the api would
// (persistent JSON, under messageID), bypassing the api: for messages the
// api would never send. A failed publish fails the test.
func (d *Deployment) PublishInbound(messageID string, body []byte) {
	d.TB.Helper()
	require.NoError(d.TB, d.Channel().PublishWithContext(context.Background(), "", queue.InboundQueue(d.NS), false, false,
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: messageID, Body: body}))
}
