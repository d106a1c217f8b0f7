package sink

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/queue"
)

func TestAMQP_BatchQueueConsumerGetsExactBatch(t *testing.T) {
	t.Parallel()
	bb := setupBroker(t, names(".batches"), names(".batches"))
	a := bb.amqp(t, AMQPOptions{Exchange: bb.ns + ".batches", Queue: bb.ns + ".batches"})

	b, _ := sampleBatch(t)
	b.Attempt = 3
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	b.Messages[0].Traceparent = tp
	body, err := json.Marshal(b)
	require.NoError(t, err)
	require.NoError(t, a.Deliver(context.Background(), b, body))

	d := bb.get(t, bb.ns+".batches")
	require.Equal(t, string(body), string(d.Body), "the exact batch JSON")
	require.Equal(t, b.BatchID, d.MessageId)
	require.Equal(t, "application/json", d.ContentType)
	require.Equal(t, uint8(amqp.Persistent), d.DeliveryMode)
	require.Equal(t, bb.ns+".batches", d.Exchange)
	require.Equal(t, "lull", d.AppId)
	require.Equal(t, "lull.batch", d.Type)
	require.Equal(t, b.BatchID, d.Headers[AMQPHeaderBatchID])
	require.EqualValues(t, 3, d.Headers[AMQPHeaderAttempt])
	require.Equal(t, b.Key, d.Headers[AMQPHeaderKey])
	require.Equal(t, tp, d.Headers["traceparent"], "the batch's trace context")
	var got batch.Batch
	require.NoError(t, json.Unmarshal(d.Body, &got))
	require.Equal(t, b, got)

	// The batch queue is durable and quorum: it keeps batches across
	// broker restarts until a consumer takes them.
	ch := bb.channel(t)
	_, err = ch.QueueDeclarePassive(bb.ns+".batches", true, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare(bb.ns+".batches", true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	require.NoError(t, err, "declared as a durable quorum queue")
}

func TestAMQP_EveryBoundQueueGetsTheBatch(t *testing.T) {
	t.Parallel()
	bb := setupBroker(t, names(".batches", ".bot"), names(".batches"))
	a := bb.amqp(t, AMQPOptions{Exchange: bb.ns + ".batches", Queue: bb.ns + ".batches"})
	ch := bb.channel(t)
	_, err := ch.QueueDeclare(bb.ns+".bot", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(bb.ns+".bot", "", bb.ns+".batches", false, nil))

	b, body := sampleBatch(t)
	require.NoError(t, a.Deliver(context.Background(), b, body))
	require.Equal(t, b.BatchID, bb.get(t, bb.ns+".batches").MessageId)
	require.Equal(t, b.BatchID, bb.get(t, bb.ns+".bot").MessageId)
}

func TestAMQP_NoQueueAndNothingBoundIsAnError(t *testing.T) {
	t.Parallel()
	bb := setupBroker(t, names(".bot"), names(".batches"))
	a := bb.amqp(t, AMQPOptions{Exchange: bb.ns + ".batches", Queue: NoQueue})

	b, body := sampleBatch(t)
	err := a.Deliver(context.Background(), b, body)
	require.Error(t, err, "an unroutable batch must not count as delivered")
	require.ErrorIs(t, err, queue.ErrUnroutable)
	require.False(t, IsPermanent(err), "retried (and finally dead-lettered), not dropped")

	ch := bb.channel(t)
	_, err = ch.QueueDeclarePassive(bb.ns+".batches", true, false, false, false, nil)
	var aerr *amqp.Error
	require.ErrorAs(t, err, &aerr, "BATCH_QUEUE=- declares no queue")
	require.Equal(t, amqp.NotFound, aerr.Code)

	// A bot binds its queue: the retry is delivered.
	ch = bb.channel(t)
	_, err = ch.QueueDeclare(bb.ns+".bot", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(bb.ns+".bot", "", bb.ns+".batches", false, nil))
	require.NoError(t, a.Deliver(context.Background(), b, body))
	require.Equal(t, string(body), string(bb.get(t, bb.ns+".bot").Body))
}

func TestAMQP_BrokerDownIsRetryable(t *testing.T) {
	t.Parallel()
	a, err := NewAMQP(BrokerOptions{URL: "amqp://guest:guest@127.0.0.1:1/", Namespace: "test-sink-down", Timeout: testPublishTimeout, Logger: testLogger(t)},
		AMQPOptions{Exchange: "test-sink-down.batches"})
	require.NoError(t, err, "the sink starts without a broker")
	closeAtEnd(t, a)

	b, body := sampleBatch(t)
	start := time.Now()
	err = a.Deliver(context.Background(), b, body)
	require.ErrorIs(t, err, queue.ErrUnavailable)
	require.False(t, IsPermanent(err))
	require.Less(t, time.Since(start), time.Second, "fails fast while not connected")
}

func TestAMQP_AfterCloseDeliverFails(t *testing.T) {
	t.Parallel()
	bb := setupBroker(t, names(".batches"), names(".batches"))
	a, err := NewAMQP(bb.broker(t), AMQPOptions{Exchange: bb.ns + ".batches", Queue: bb.ns + ".batches"})
	require.NoError(t, err)
	waitReady(t, a)
	require.NoError(t, Close(context.Background(), []Sink{NewLog(nil), a}))
	require.False(t, a.Ready())

	b, body := sampleBatch(t)
	err = a.Deliver(context.Background(), b, body)
	require.ErrorIs(t, err, queue.ErrClosed)
	require.False(t, IsPermanent(err), "another worker may still deliver it")
}
