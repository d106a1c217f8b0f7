package queue

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Topology declares the exchanges, queues and bindings a Publisher sends
// to. It gets the publisher's connection, opens the channels it needs and
// closes them again. It must be idempotent: it runs on every (re)connect
// and again after a message came back unroutable.
type Topology func(conn *amqp.Connection) error

// OnChannel turns declare, which declares on one channel, into a Topology
// that runs it on a short-lived channel of its own.
func OnChannel(declare func(ch *amqp.Channel) error) Topology {
	return func(conn *amqp.Connection) error {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("open channel to declare: %w", err)
		}
		if err := declare(ch); err != nil {
			// The broker closed the channel; closing it again is a no-op.
			_ = ch.Close()
			return err
		}
		if err := ch.Close(); err != nil {
			return fmt.Errorf("close declare channel: %w", err)
		}
		return nil
	}
}

// FanoutTopology declares exchange as a durable fanout exchange and, when
// queueName is not empty, a durable quorum queue of that name bound to it,
// so messages are kept even before any consumer bound a queue of its own.
// With an empty queueName and no queue bound by anyone else, a mandatory
// publish to the exchange comes back unroutable (ErrUnroutable).
func FanoutTopology(exchange, queueName string) Topology {
	return OnChannel(func(ch *amqp.Channel) error {
		return declareFanout(ch, exchange, queueName)
	})
}

// ClassicQueueTopology declares queueName as a durable classic queue
// without arguments: what Celery 5 and most AMQP clients declare by
// default, so a consumer declaring it that way later gets no
// PRECONDITION_FAILED. Messages reach it through the default exchange
// (routing key = queueName).
//
// A queue of that name that already exists with other arguments (a quorum
// queue, x-max-priority, ...) is used as it is: its owner's declaration
// wins, and declaring it is not an error.
func ClassicQueueTopology(queueName string) Topology {
	declare := OnChannel(func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare(queueName, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare queue %s: %w", queueName, err)
		}
		return nil
	})
	return func(conn *amqp.Connection) error {
		err := declare(conn)
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
			// It exists, with other arguments (the broker says which in
			// aerr.Reason). A passive declare proves it and reports
			// anything else, such as an exclusive queue of another
			// connection.
			return OnChannel(func(ch *amqp.Channel) error {
				if _, err := ch.QueueDeclarePassive(queueName, true, false, false, false, nil); err != nil {
					return fmt.Errorf("declare queue %s passively: %w", queueName, err)
				}
				return nil
			})(conn)
		}
		return err
	}
}
