package queue

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrSettled is returned when a message is settled a second time. The
// second settle is not sent: RabbitMQ would close the whole channel for an
// unknown delivery tag, redelivering every other unsettled message on it.
var ErrSettled = errors.New("queue: message already settled")

// Outcome is how a consumed message is settled with the broker: the one
// decision a handler makes about it.
type Outcome int

// The outcomes. The zero Outcome is none of them: Settle refuses it (and
// the message stays unsettled), so a forgotten decision acks nothing.
const (
	// Ack: the message is handled; the broker removes it from the queue.
	Ack Outcome = iota + 1
	// Requeue: the message goes back to the queue for redelivery. Each
	// redelivery counts towards DeliveryLimit, after which the broker moves
	// the message to DeadLetterQueue.
	Requeue
	// Reject: the message can never be handled (poison); the broker moves it
	// to DeadLetterQueue at once.
	Reject
)

// String names the outcome, for logs.
func (o Outcome) String() string {
	switch o {
	case Ack:
		return "ack"
	case Requeue:
		return "requeue"
	case Reject:
		return "reject"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// session is one consumer channel and the count of its messages that were
// handed out but not settled yet.
type session struct {
	ch      *amqp.Channel
	pending atomic.Int64
	idle    chan struct{} // signalled when pending drops to zero
}

func newSession(ch *amqp.Channel) *session {
	return &session{ch: ch, idle: make(chan struct{}, 1)}
}

// settlement is shared by the copies of one Message value.
type settlement struct {
	sess *session
	done atomic.Bool
}

// Message is one message consumed from InboundQueue. Settle it exactly
// once, from any goroutine. It always settles on the channel it arrived on:
// after a reconnect, settling a message of the old channel fails (and the
// broker redelivers the message) instead of touching a delivery tag of the
// new channel.
type Message struct {
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

// Settle tells the broker the message's outcome. Only the first Settle of a
// message is sent; later ones return ErrSettled. An outcome that is not
// Ack, Requeue or Reject is an error and leaves the message unsettled.
func (m Message) Settle(o Outcome) error {
	var send func() error
	switch o {
	case Ack:
		send = func() error { return m.d.Ack(false) }
	case Requeue:
		send = func() error { return m.d.Nack(false, true) }
	case Reject:
		send = func() error { return m.d.Reject(false) }
	default:
		return fmt.Errorf("settle message %s: unknown outcome %v", m.MessageID, o)
	}
	if m.s == nil {
		return fmt.Errorf("%v message %s: not from a consumer", o, m.MessageID)
	}
	if !m.s.done.CompareAndSwap(false, true) {
		return fmt.Errorf("%v message %s: %w", o, m.MessageID, ErrSettled)
	}
	// A closed channel makes amqp091-go return amqp.ErrClosed without
	// sending anything; the broker already requeued the message.
	err := send()
	// Count the message as settled only once the frame is written, so a
	// draining consumer cannot close the channel under it.
	if m.s.sess.pending.Add(-1) == 0 {
		select {
		case m.s.sess.idle <- struct{}{}:
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("%v message %s: %w", o, m.MessageID, err)
	}
	return nil
}
