package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/tracectx"
)

// AMQP message headers the amqp sink sets on every batch.
const (
	AMQPHeaderBatchID = "x-lull-batch-id"
	AMQPHeaderAttempt = "x-lull-attempt"
	AMQPHeaderKey     = "x-lull-key"
)

// NoQueue as AMQPOptions.Queue (BATCH_QUEUE=-) makes the amqp sink declare
// no queue of its own: consumers bind theirs to the exchange.
const NoQueue = "-"

// AMQPOptions configures the amqp sink.
type AMQPOptions struct {
	// Exchange receives the batches (BATCH_EXCHANGE, default
	// <ns>.batches): a durable fanout exchange the sink declares.
	Exchange string
	// Queue (BATCH_QUEUE, default <ns>.batches) is a durable quorum queue
	// the sink declares and binds to Exchange, so batches are kept even
	// before any consumer bound a queue of its own. NoQueue ("-") or ""
	// declares none: a batch that no bound queue takes is then a delivery
	// error, retried and finally dead-lettered, never dropped.
	Queue string
}

// AMQP publishes each batch's JSON to a fanout exchange (the README's "Batch JSON"),
// persistent, mandatory and publisher-confirmed: Deliver returns nil only
// once the broker has the batch in at least one queue.
//
// Message: body = the batch JSON; message_id = batch_id (consumers dedupe
// on it); content_type application/json; delivery_mode 2; app_id "lull";
// type "lull.batch"; headers x-lull-batch-id, x-lull-attempt (int),
// x-lull-key (the conversation key). The routing key is empty: a fanout
// exchange hands every batch to every bound queue.
//
// Every failure is retryable: broker down, nack, confirm timeout, or no
// queue bound (unroutable).
type AMQP struct {
	pub *queue.Publisher
}

// NewAMQP returns an amqp sink. It connects in the background (Deliver
// fails, retryably, until it has) and must be closed with Close.
func NewAMQP(broker BrokerOptions, opts AMQPOptions) (*AMQP, error) {
	if err := broker.validate(NameAMQP); err != nil {
		return nil, err
	}
	if opts.Exchange == "" {
		return nil, errors.New("amqp sink: Exchange is required (BATCH_EXCHANGE)")
	}
	q := opts.Queue
	if q == NoQueue {
		q = ""
	}
	pub, err := broker.publisher(NameAMQP, queue.PublisherOptions{
		Exchange: opts.Exchange,
		Topology: queue.FanoutTopology(opts.Exchange, q),
	})
	if err != nil {
		return nil, err
	}
	return &AMQP{pub: pub}, nil
}

// Name is "amqp".
func (a *AMQP) Name() string { return NameAMQP }

// Ready reports whether the sink is connected to the broker.
func (a *AMQP) Ready() bool { return a.pub.Ready() }

// Deliver publishes body and waits for the broker's confirm.
func (a *AMQP) Deliver(ctx context.Context, b batch.Batch, body []byte) error {
	if b.BatchID == "" {
		return Permanent(errors.New("amqp sink: batch has no batch_id"))
	}
	err := a.pub.PublishMessage(ctx, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    b.BatchID,
		Timestamp:    time.Now(),
		Type:         "lull.batch",
		AppId:        "lull",
		Headers: withTrace(amqp.Table{
			AMQPHeaderBatchID: b.BatchID,
			AMQPHeaderAttempt: int32(b.Attempt),
			AMQPHeaderKey:     b.Key,
		}, b),
		Body: body,
	})
	if err != nil {
		// Every publish error is retryable (see AMQP).
		return fmt.Errorf("amqp sink: %w", err)
	}
	return nil
}

// Close waits for publishes under way (bounded by ctx) and closes the
// connection.
func (a *AMQP) Close(ctx context.Context) error { return a.pub.Close(ctx) }

// withTrace adds the batch's W3C trace context to AMQP headers h, under
// the same name as the HTTP header (traceparent), when it has one.
func withTrace(h amqp.Table, b batch.Batch) amqp.Table {
	if tp := b.Traceparent(); tp != "" {
		h[tracectx.Header] = tp
	}
	return h
}
