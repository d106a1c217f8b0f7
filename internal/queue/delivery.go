package queue

import (
	"errors"
	"fmt"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrSettled is returned when a delivery is settled a second time. The
// second settle is not sent: RabbitMQ would close the whole channel for an
// unknown delivery tag, redelivering every other unsettled message on it.
var ErrSettled = errors.New("queue: delivery already settled")

// session is one consumer channel and the count of its deliveries that were
// handed out but not settled yet.
type session struct {
	ch      *amqp.Channel
	pending atomic.Int64
	idle    chan struct{} // signalled when pending drops to zero
}

func newSession(ch *amqp.Channel) *session {
	return &session{ch: ch, idle: make(chan struct{}, 1)}
}

// settlement is shared by the copies of one Delivery value.
type settlement struct {
	sess *session
	done atomic.Bool
}

// Delivery is one message from InboundQueue. Settle it exactly once with
// Ack, Requeue or DeadLetter, from any goroutine. It always settles on the
// channel it arrived on: after a reconnect, settling a delivery of the old
// channel fails (and the broker redelivers the message) instead of touching
// a delivery tag of the new channel.
type Delivery struct {
	// Body is the message as published.
	Body []byte
	// MessageID is the id the publisher gave the message.
	MessageID string
	// Redelivered is true when the broker delivered the message before
	// (to this or another consumer) without it being settled.
	Redelivered bool

	d amqp.Delivery
	s *settlement
}

// Ack tells the broker the message is handled; it is removed from the queue.
func (d Delivery) Ack() error {
	return d.settle("ack", func() error { return d.d.Ack(false) })
}

// Requeue hands the message back to the queue for redelivery. Each
// redelivery counts towards DeliveryLimit.
func (d Delivery) Requeue() error {
	return d.settle("requeue", func() error { return d.d.Nack(false, true) })
}

// DeadLetter rejects the message for good: it moves to DeadLetterQueue.
func (d Delivery) DeadLetter() error {
	return d.settle("dead-letter", func() error { return d.d.Reject(false) })
}

func (d Delivery) settle(op string, send func() error) error {
	if d.s == nil {
		return fmt.Errorf("%s message %s: delivery not from a consumer", op, d.MessageID)
	}
	if !d.s.done.CompareAndSwap(false, true) {
		return fmt.Errorf("%s message %s: %w", op, d.MessageID, ErrSettled)
	}
	// A closed channel makes amqp091-go return amqp.ErrClosed without
	// sending anything; the broker already requeued the message.
	err := send()
	// Count the delivery as settled only once the frame is written, so a
	// draining Run cannot close the channel under it.
	if d.s.sess.pending.Add(-1) == 0 {
		select {
		case d.s.sess.idle <- struct{}{}:
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("%s message %s: %w", op, d.MessageID, err)
	}
	return nil
}
