package queue

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
	// Release: the message is given back without a frame: the broker
	// requeues it when the consumer closes its channel (Stop, or a lost
	// connection), together with every other message of the channel not
	// acked, in delivery order. The queue's next active consumer then gets
	// them first, in the order they came, where a Requeue (sent at once,
	// while this consumer is still the active one) comes back behind the
	// messages delivered after it. What a stopping handler settles the
	// messages it will not handle with.
	Release
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
	case Release:
		return "release"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Acks are coalesced. A message settled as Ack is not acked on its own but
// by one basic.ack with multiple=true for the highest tag of a run: the
// settled messages below the lowest handed-out one that is not settled yet
// (a multiple ack acks every unsettled tag up to it, so a run never passes
// one). The run is sent when it has ackBatch acks, when an ack waited
// ackDelay (the acks waiting above an unsettled message are then sent each
// on its own), or at once when the handed-out messages and the waiting acks
// fill a quarter of the prefetch window: to the broker a waiting ack is an
// unsettled message, holding the window, and a consumer that cannot keep
// up needs the window more than fewer frames. Requeue and Reject are
// always sent at once, each on its own.
const (
	defaultAckBatch = 64
	defaultAckDelay = 2 * time.Millisecond
)

// tagState is where a handed-out delivery is in its settlement.
type tagState uint8

const (
	handedOut tagState = iota // passed to the handler, not settled
	ackLater                  // settled as Ack, its ack not sent yet
	sent                      // its settle is sent: nack, reject, or an ack of its own
)

type tagEntry struct {
	tag   uint64
	state tagState
}

// session is one consumer channel: the count of its messages that were
// handed out but not settled yet, and the acks waiting to be sent.
type session struct {
	ch      *amqp.Channel
	pending atomic.Int64
	idle    chan struct{} // signalled when pending drops to zero
	frames  *atomic.Int64 // basic.ack frames sent, the consumer's

	batch int           // acks in a run that send it at once
	eager int           // a quarter of the prefetch window, see above
	delay time.Duration // longest an ack waits

	inMu     sync.Mutex
	incoming []tagEntry // handed out, not in tags yet

	mu     sync.Mutex // held while settle frames are written, keeping them in order
	tags   []tagEntry // delivery order, from tags[head]: the lowest tag handed out and not settled
	head   int
	nsent  int    // entries in tags[head:] in state sent
	nlater int    // entries in tags[head:] in state ackLater
	run    uint64 // highest tag of the unsent acks below tags[head]
	nrun   int    // unsent acks up to run
	timer  *time.Timer
	armed  bool // timer runs
	closed bool // finished: nothing more is sent
}

func newSession(ch *amqp.Channel, batch, prefetch int, delay time.Duration, frames *atomic.Int64) *session {
	return &session{
		ch:     ch,
		idle:   make(chan struct{}, 1),
		frames: frames,
		batch:  max(1, batch),
		eager:  max(1, prefetch/4),
		delay:  delay,
	}
}

// handOut records delivery tag as passed to the handler. Tags come in
// increasing order (the channel numbers its deliveries).
func (s *session) handOut(tag uint64) {
	s.pending.Add(1)
	// Not s.mu: a settle holds it while it writes frames, and the consumer
	// goroutine must not wait for that.
	s.inMu.Lock()
	s.incoming = append(s.incoming, tagEntry{tag: tag})
	s.inMu.Unlock()
}

// take moves the handed-out tags into s.tags. Call it holding s.mu.
func (s *session) take() {
	s.inMu.Lock()
	s.tags = append(s.tags, s.incoming...)
	s.incoming = s.incoming[:0]
	s.inMu.Unlock()
}

// settle sends (or, for an Ack, queues) the outcome of the handed-out
// delivery tag. It fails only when the session is over: the broker
// redelivers the message.
func (s *session) settle(tag uint64, o Outcome) error {
	defer func() {
		// Counted as settled once its frame is written or queued (and
		// then flushed by finish), so a draining consumer cannot close
		// the channel under it.
		if s.pending.Add(-1) == 0 {
			select {
			case s.idle <- struct{}{}:
			default:
			}
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if o == Release {
		// Nothing is sent: the entry stays handed out, so no multiple ack
		// passes it, and the channel's close gives the message back.
		return nil
	}
	if s.closed || s.ch.IsClosed() {
		return amqp.ErrClosed
	}
	s.take()
	i, found := slices.BinarySearchFunc(s.tags[s.head:], tag, func(e tagEntry, t uint64) int { return cmp.Compare(e.tag, t) })
	i += s.head
	if !found || s.tags[i].state != handedOut {
		return fmt.Errorf("delivery tag %d not handed out", tag)
	}
	var err error
	switch o {
	case Ack:
		s.tags[i].state = ackLater
		s.nlater++
	case Requeue:
		// Sent before a later multiple ack can pass the tag.
		err = s.ch.Nack(tag, false, true)
		s.tags[i].state = sent
		s.nsent++
	case Reject:
		err = s.ch.Reject(tag, false)
		s.tags[i].state = sent
		s.nsent++
	}
	s.advance()
	switch unsent := s.nrun + s.nlater; {
	case unsent >= s.eager:
		s.flush()
	case s.held()+unsent >= s.eager:
		// Nothing waits: the run goes, and this ack if it is not in it.
		// The acks above an unsettled message that waited before are left
		// to the timer (or to the flush above).
		s.sendRun()
		// Still above head (not in the run): wait it may not either.
		if i >= s.head && s.tags[i].state == ackLater {
			_ = s.ch.Ack(tag, false)
			s.frames.Add(1)
			s.tags[i].state = sent
			s.nlater--
			s.nsent++
		}
	case s.nrun >= s.batch:
		s.sendRun()
	}
	s.compact(false)
	if s.nrun+s.nlater > 0 && !s.armed {
		s.armed = true
		if s.timer == nil {
			s.timer = time.AfterFunc(s.delay, s.expire)
		} else {
			s.timer.Reset(s.delay)
		}
	}
	return err
}

// held is how many handed-out deliveries are not settled yet.
func (s *session) held() int { return len(s.tags) - s.head - s.nsent - s.nlater }

// advance moves tags[head] past every settled delivery, adding the acks it
// passes to the run.
func (s *session) advance() {
	for s.head < len(s.tags) && s.tags[s.head].state != handedOut {
		if e := s.tags[s.head]; e.state == ackLater {
			s.run = e.tag
			s.nrun++
			s.nlater--
		} else {
			s.nsent--
		}
		s.head++
	}
}

// compact drops the entries below head and those already sent, when they
// are half of s.tags (or always, with force).
func (s *session) compact(force bool) {
	if !force && !(s.head > 64 && 2*s.head > len(s.tags)) && !(s.nsent > 64 && 2*s.nsent > len(s.tags)-s.head) {
		return
	}
	kept := s.tags[:0]
	for _, e := range s.tags[s.head:] {
		if e.state != sent {
			kept = append(kept, e)
		}
	}
	clear(s.tags[len(kept):])
	s.tags, s.head, s.nsent = kept, 0, 0
}

// sendRun acks the run with one multiple ack. Every tag up to run is
// settled: the acks of the run are waiting, the others were sent.
func (s *session) sendRun() {
	if s.nrun == 0 {
		return
	}
	// A failure means the channel closed: the broker requeued the run.
	_ = s.ch.Ack(s.run, true)
	s.frames.Add(1)
	s.nrun = 0
}

// flush sends every waiting ack: the run, then each ack above an unsettled
// delivery on its own.
func (s *session) flush() {
	s.sendRun()
	if s.nlater == 0 {
		return
	}
	for i := s.head; i < len(s.tags); i++ {
		if s.tags[i].state == ackLater {
			_ = s.ch.Ack(s.tags[i].tag, false)
			s.frames.Add(1)
			s.tags[i].state = sent
			s.nsent++
		}
	}
	s.nlater = 0
	s.compact(true)
}

// expire flushes the acks that waited ackDelay.
func (s *session) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = false
	if !s.closed {
		s.flush()
	}
}

// finish sends every waiting ack and ends the session: later settles fail
// (the broker redelivers those messages once the channel closes).
func (s *session) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if !s.ch.IsClosed() {
		s.flush()
	}
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
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
// Ack, Requeue, Reject or Release is an error and leaves the message
// unsettled.
//
// Requeue and Reject are sent before Settle returns. An Ack may be sent a
// moment later, together with the acks of other messages of the channel
// (one multiple ack), and at the latest when the consumer stops; if the
// channel closes first the broker redelivers the message, as it does for
// a message settled after its channel closed (Settle then fails).
func (m Message) Settle(o Outcome) error {
	switch o {
	case Ack, Requeue, Reject, Release:
	default:
		return fmt.Errorf("settle message %s: unknown outcome %v", m.MessageID, o)
	}
	if m.s == nil {
		return fmt.Errorf("%v message %s: not from a consumer", o, m.MessageID)
	}
	if !m.s.done.CompareAndSwap(false, true) {
		return fmt.Errorf("%v message %s: %w", o, m.MessageID, ErrSettled)
	}
	// A closed channel fails the settle without sending anything; the
	// broker already requeued the message.
	if err := m.s.sess.settle(m.d.DeliveryTag, o); err != nil {
		return fmt.Errorf("%v message %s: %w", o, m.MessageID, err)
	}
	return nil
}

// DeliveryCount is how many times the quorum queue gave the message back
// before this delivery (its x-delivery-count header; 0 on the first): at
// DeliveryLimit it dead-letters the message instead.
func (m Message) DeliveryCount() int {
	switch v := m.d.Headers["x-delivery-count"].(type) {
	case int64:
		return int(v)
	case int32:
		return int(v)
	case int:
		return v
	}
	return 0
}
