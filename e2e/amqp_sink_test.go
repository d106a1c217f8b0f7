package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/testenv"
)

// removeBrokerEntities deletes queues and exchanges a test created outside
// its namespace's inbound topology, when the test ends. Register it before
// setup so it runs after the processes stopped.
func removeBrokerEntities(t *testing.T, queues, exchanges func() []string) {
	t.Helper()
	t.Cleanup(func() {
		conn, err := amqp.Dial(testenv.AMQPURL())
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer ch.Close()
		for _, q := range queues() {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("delete queue %s: %v", q, err)
			}
		}
		for _, x := range exchanges() {
			if err := ch.ExchangeDelete(x, false, false); err != nil {
				t.Errorf("delete exchange %s: %v", x, err)
			}
		}
	})
}

// named returns ns+suffix, or nothing while ns is not known.
func named(ns, suffix string) []string {
	if ns == "" {
		return nil
	}
	return []string{ns + suffix}
}

// consume subscribes to queue name (waiting for it to be declared) and
// returns its deliveries; the subscription ends with the test.
func (b *bundle) consume(name string) <-chan amqp.Delivery {
	b.tb.Helper()
	waitUntil(b.tb, startTimeout, "queue "+name+" declared", func() bool {
		ch, err := b.broker.Channel()
		if err != nil {
			return false
		}
		defer func() { _ = ch.Close() }()
		_, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
		return err == nil
	})
	ch, err := b.broker.Channel()
	require.NoError(b.tb, err)
	b.tb.Cleanup(func() { _ = ch.Close() })
	deliveries, err := ch.Consume(name, "", true, false, false, false, nil)
	require.NoError(b.tb, err)
	return deliveries
}

// nextBatch waits for one delivery and decodes its batch.
func nextBatch(t *testing.T, deliveries <-chan amqp.Delivery, timeout time.Duration) (amqp.Delivery, batch.Batch) {
	t.Helper()
	select {
	case d := <-deliveries:
		var bt batch.Batch
		require.NoError(t, json.Unmarshal(d.Body, &bt), "batch JSON: %s", d.Body)
		return d, bt
	case <-time.After(timeout):
		t.Fatalf("no batch within %s", timeout)
		return amqp.Delivery{}, batch.Batch{}
	}
}

func TestAMQPSink_BurstReachesBatchQueue(t *testing.T) {
	var ns string // known once setup ran
	removeBrokerEntities(t, func() []string { return named(ns, ".batches") }, func() []string { return named(ns, ".batches") })
	// BATCH_EXCHANGE and BATCH_QUEUE keep their defaults: <ns>.batches.
	b := setup(t, options{Env: map[string]string{"SINKS": "amqp"}})
	ns = b.ns
	deliveries := b.consume(b.ns + ".batches")

	const key = "5511999990101"
	for i := range 4 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // typing: well inside QUIET_WINDOW
		}
		require.Equal(t, http.StatusAccepted, b.post(key, msgText(key, i), nil))
	}
	sent := b.sentSoFar()

	d, bt := nextBatch(t, deliveries, 10*time.Second)
	assert.Equal(t, bt.BatchID, d.MessageId, "message_id = batch_id")
	assert.Equal(t, "application/json", d.ContentType)
	assert.Equal(t, uint8(amqp.Persistent), d.DeliveryMode)
	assert.Equal(t, b.ns+".batches", d.Exchange)
	assert.Equal(t, bt.BatchID, d.Headers[sink.AMQPHeaderBatchID])
	assert.Equal(t, key, d.Headers[sink.AMQPHeaderKey])
	assert.EqualValues(t, 1, d.Headers[sink.AMQPHeaderAttempt])
	assert.Equal(t, sentTexts(sent), texts(bt), "the whole burst, in send order")
	assertExactlyOnce(t, sent, []delivery{{Batch: bt, Body: d.Body, Status: http.StatusOK}})
	require.Len(t, b.recv.all(), 0, "SINKS=amqp posts nothing")
}

func TestAMQPSink_NoQueueBoundRetriesUntilOneIs(t *testing.T) {
	var ns string // known once setup ran
	removeBrokerEntities(t, func() []string { return named(ns, ".bot") }, func() []string { return named(ns, ".batches") })
	b := setup(t, options{Env: map[string]string{
		"SINKS":        "amqp",
		"BATCH_QUEUE":  "-", // lull declares the exchange only
		"MAX_ATTEMPTS": "1000",
	}})
	ns = b.ns

	const key = "5511999990102"
	b.send(key, msgText(key, 0))
	b.send(key, msgText(key, 1))
	sent := b.sentSoFar()
	// The batch flushes one quiet window later and finds no queue: its
	// deliveries fail and are retried. (Waiting out the time is the point.)
	time.Sleep(b.opts.QuietWindow + time.Second)

	// A bot binds its queue; the next retry delivers the same batch.
	ch, err := b.broker.Channel()
	require.NoError(t, err)
	defer ch.Close()
	_, err = ch.QueueDeclare(b.ns+".bot", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(b.ns+".bot", "", b.ns+".batches", false, nil))
	d, bt := nextBatch(t, b.consume(b.ns+".bot"), 10*time.Second)

	assert.Greater(t, bt.Attempt, 1, "earlier attempts failed: unroutable is an error, not a silent success")
	assert.EqualValues(t, bt.Attempt, d.Headers[sink.AMQPHeaderAttempt])
	assert.Equal(t, sentTexts(sent), texts(bt))
	assertExactlyOnce(t, sent, []delivery{{Batch: bt, Body: d.Body, Status: http.StatusOK}})
}
