// Package queue owns lull's RabbitMQ side: the topology of a namespace, a
// confirming publisher for the api (and, with another target and Topology,
// for the worker's amqp and celery sinks) and a reconnecting consumer for
// the worker.
//
// Topology of namespace ns:
//
//	<ns>.inbound       durable quorum queue, fed through the default exchange;
//	                   dead-letters to <ns>.inbound.dlx, at the latest after
//	                   50 deliveries (poison that crashes the consumer)
//	<ns>.inbound.dlx   durable fanout exchange
//	<ns>.inbound.dead  durable quorum queue bound to <ns>.inbound.dlx
package queue

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DeliveryLimit is the x-delivery-limit of the inbound queue: a message
// delivered this many times without being settled goes to the dead-letter
// exchange instead of being redelivered forever.
const DeliveryLimit = 50

// InboundQueue is the name of the queue the api publishes to and the worker
// consumes from.
func InboundQueue(ns string) string { return ns + ".inbound" }

// DeadLetterExchange is the name of the fanout exchange that receives the
// inbound queue's rejected and over-delivered messages.
func DeadLetterExchange(ns string) string { return ns + ".inbound.dlx" }

// DeadLetterQueue is the name of the queue bound to DeadLetterExchange, where
// dead-lettered messages wait for an operator.
func DeadLetterQueue(ns string) string { return ns + ".inbound.dead" }

// declareFanout declares exchange as a durable fanout exchange and, unless
// queueName is empty, a durable quorum queue of that name bound to it.
func declareFanout(ch *amqp.Channel, exchange, queueName string) error {
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", exchange, err)
	}
	if queueName == "" {
		return nil
	}
	if _, err := ch.QueueDeclare(queueName, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	}); err != nil {
		return fmt.Errorf("declare queue %s: %w", queueName, err)
	}
	if err := ch.QueueBind(queueName, "", exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %s to %s: %w", queueName, exchange, err)
	}
	return nil
}

// Declare declares the topology of namespace ns. It is idempotent; the
// publisher and the consumer call it on every (re)connect. On error the
// channel has been closed by the broker and must be discarded.
func Declare(ch *amqp.Channel, ns string) error {
	dlx, inbound := DeadLetterExchange(ns), InboundQueue(ns)
	if err := declareFanout(ch, dlx, DeadLetterQueue(ns)); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(inbound, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-dead-letter-exchange": dlx,
		"x-delivery-limit":       int32(DeliveryLimit),
	}); err != nil {
		return fmt.Errorf("declare queue %s: %w", inbound, err)
	}
	return nil
}

// Purge deletes the queues and the exchange of namespace ns, with whatever
// they hold. Tests use it to remove their own namespace; it is never called
// by the services. Missing entities are not an error.
func Purge(ctx context.Context, url, ns string) error {
	conn, err := dial(ctx, url, "lull-purge-"+ns)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("purge %s: open channel: %w", ns, err)
	}
	defer ch.Close()
	var errs []error
	for _, q := range []string{InboundQueue(ns), DeadLetterQueue(ns)} {
		// Deleting a queue that does not exist is a no-op in RabbitMQ 3.x
		// and later, so no passive declare is needed first.
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			errs = append(errs, fmt.Errorf("delete queue %s: %w", q, err))
		}
	}
	if err := ch.ExchangeDelete(DeadLetterExchange(ns), false, false); err != nil {
		errs = append(errs, fmt.Errorf("delete exchange %s: %w", DeadLetterExchange(ns), err))
	}
	return errors.Join(errs...)
}
