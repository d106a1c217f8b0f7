package e2e

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
)

// A message in the inbound queue that the worker can never decode goes to
// the dead-letter queue at once, and the messages around it are delivered.
func TestPoisonMessage_DeadLetteredWorkerKeepsGoing(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow})
	const key = "5511999990066"
	b.send(key, msgText(key, 0))

	ch, err := b.broker.Channel()
	require.NoError(t, err)
	defer ch.Close()
	for _, body := range []string{`{not json`, `{"key":"","message":{"id":"x"}}`, `{"key":"k","kind":"explode","message":{"id":"x"}}`} {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", queue.InboundQueue(b.ns), false, false,
			amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: "poison", Body: []byte(body)}))
	}
	b.send(key, msgText(key, 1))

	b.waitDelivered(10 * time.Second)
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
	waitUntil(t, 10*time.Second, "3 poison messages in the dead-letter queue", func() bool {
		q, err := ch.QueueDeclarePassive(queue.DeadLetterQueue(b.ns), true, false, false, false, nil)
		return err == nil && q.Messages == 3
	})
	messages, _, err := b.queueState()
	require.NoError(t, err)
	require.Zero(t, messages, "nothing left in the inbound queue: no endless requeue")
}
