package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/valutil"
)

// DefaultDrainTimeout is ConsumerOptions.DrainTimeout when it is zero.
const DefaultDrainTimeout = 5 * time.Second

// maxPrefetch is the largest prefetch count AMQP 0-9-1 can carry.
const maxPrefetch = 65535

// ConsumerOptions configures a Consumer.
type ConsumerOptions struct {
	// Prefetch is the number of unsettled messages the broker hands to this
	// consumer at a time, 1 to 65535. Required (its default is the
	// configuration's, PREFETCH).
	Prefetch int
	// DrainTimeout bounds how long Stop waits for messages already passed
	// to the handler to be settled before it closes the channel (unsettled
	// ones are then redelivered). Zero means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Logger receives connection events. Nil means slog.Default().
	Logger *slog.Logger
	// Inbound configures the topology declared on every (re)connect (the
	// dead-letter queue's retention, see InboundTopology). Its
	// DeadLetterTTL and DeadLetterMax are required (DEAD_LETTER_TTL,
	// DEAD_LETTER_MAX); its Logger defaults to Logger.
	Inbound TopologyOptions
}

// Handler gets each consumed message, serially, from the consumer's
// goroutine. It must settle every message exactly once (Message.Settle),
// now or later from any goroutine; while it runs, no other message is
// handed out.
type Handler func(Message)

// Consumer is the worker's side of InboundQueue(ns), a startstop.Service:
// NewConsumer takes the Handler that gets every Message, Start subscribes on
// a connection of its own and keeps subscribed (reconnecting by itself
// whenever the connection or channel closes), Stop ends the subscription and
// drains. The handler decides each message's Outcome and settles it with
// Message.Settle, exactly once.
type Consumer struct {
	startstop.BaseStartStop

	url, ns string
	handle  Handler
	opts    ConsumerOptions
	log     *slog.Logger

	ready   atomic.Bool
	session atomic.Uint64 // counts connections, for consumer tags

	ackBatch  int           // defaultAckBatch; tests change it before Start
	ackDelay  time.Duration // defaultAckDelay; likewise
	ackFrames atomic.Int64  // basic.ack frames sent, for tests

	errMu sync.Mutex
	err   error // why the last run ended on its own
}

// NewConsumer returns a Consumer of namespace ns that passes every message
// to handle; nothing happens until Start. It returns an error for a URL
// that does not parse, a nil handle, a Prefetch out of range or a missing
// Inbound retention.
func NewConsumer(url, ns string, handle Handler, opts ConsumerOptions) (*Consumer, error) {
	if err := ParseNodes(url); err != nil {
		return nil, fmt.Errorf("consume %s: parse AMQP URL: %w", InboundQueue(ns), err)
	}
	if handle == nil {
		return nil, fmt.Errorf("consume %s: no handler", InboundQueue(ns))
	}
	if opts.Prefetch < 1 || opts.Prefetch > maxPrefetch {
		return nil, fmt.Errorf("consume %s: prefetch %d must be between 1 and %d", InboundQueue(ns), opts.Prefetch, maxPrefetch)
	}
	if err := opts.Inbound.validate(); err != nil {
		return nil, fmt.Errorf("consume %s: Inbound: %w", InboundQueue(ns), err)
	}
	opts.DrainTimeout = valutil.ValOrDefault(opts.DrainTimeout, DefaultDrainTimeout)
	opts.Logger = valutil.ValOrDefault(opts.Logger, slog.Default())
	return &Consumer{
		url:    url,
		ns:     ns,
		handle: handle,
		opts:   opts,
		log:    opts.Logger.With(slog.String("component", "queue_consumer")),

		ackBatch: defaultAckBatch,
		ackDelay: defaultAckDelay,
	}, nil
}

// Ready reports whether the consumer is currently subscribed to the queue.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Err is why the consumer ended on its own: a problem a retry cannot fix
// (refused credentials or vhost, a queue that exists with other arguments).
// It is nil while the consumer runs and after Stop (or the end of Start's
// ctx) ended it; read it once Stopped() is closed.
func (c *Consumer) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// errLost marks the end of a session that a reconnect may cure.
var errLost = errors.New("queue: consumer connection lost")

// Start launches consuming and returns at once. The consumer subscribes,
// calls the handler for each message, and whenever the connection or
// channel closes reconnects with capped exponential backoff and
// re-declares the topology; messages of the old channel then fail to
// settle and the broker redelivers them.
//
// Stop (or the end of ctx) stops handing out messages, waits up to
// DrainTimeout for the messages handed to the handler to be settled (or
// released, see Release), sends the acks still waiting to be coalesced
// (see Message.Settle), and closes channel and connection: the broker
// gives back everything not acked, in delivery order, to the queue's next
// active consumer. Stop the handler first (the worker stops its appender,
// which releases what it holds), so that nothing is appended after the
// close. A problem a retry cannot fix ends the consumer on its own:
// Stopped() closes and Err says why.
func (c *Consumer) Start(ctx context.Context) error {
	return c.StartFunc(ctx, func(ctx context.Context) {
		c.setErr(nil) // a restarted consumer forgets why the last run ended
		c.setErr(c.run(ctx))
	})
}

func (c *Consumer) setErr(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	c.err = err
}

// run consumes until ctx is done (nil) or a permanent error.
func (c *Consumer) run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		consumed, err := c.consume(ctx)
		c.ready.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if !consumed && permanent(err) {
			return fmt.Errorf("consume %s: %w", InboundQueue(c.ns), err)
		}
		if consumed {
			attempt = 0
		}
		wait := reconnect.Delay(attempt + 1)
		c.log.Warn("consumer disconnected, reconnecting", slog.Any("error", err), slog.Int("attempt", attempt+1), slog.Duration("retry_in", wait))
		if backoff.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// consume runs one session: connect, declare, subscribe, dispatch. It
// reports whether the subscription was established, and why it ended.
func (c *Consumer) consume(ctx context.Context) (bool, error) {
	conn, err := dial(ctx, c.url, "lull-consumer-"+c.ns)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	// On channels of its own: a refused declaration closes its channel.
	if err := InboundTopology(c.ns, c.opts.Inbound.logTo(c.log))(conn); err != nil {
		return false, err
	}

	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open consumer channel: %w", err)
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	// Quorum queues only support a per-consumer prefetch (global=false).
	if err := ch.Qos(c.opts.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch %d: %w", c.opts.Prefetch, err)
	}
	host, _ := os.Hostname()
	tag := fmt.Sprintf("lull-%s-%s-%d-%d", c.ns, host, os.Getpid(), c.session.Add(1))
	// Plain Consume: ConsumeWithContext would cancel the subscription on its
	// own when ctx ends, racing the ordered shutdown below.
	deliveries, err := ch.Consume(InboundQueue(c.ns), tag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", InboundQueue(c.ns), err)
	}
	c.ready.Store(true)
	c.log.Info("consumer subscribed", slog.String("consumer_tag", tag), slog.Int("prefetch", c.opts.Prefetch))

	sess := newSession(ch, c.ackBatch, c.opts.Prefetch, c.ackDelay, &c.ackFrames)
	// However the session ends, acks still waiting are sent if the channel
	// is open (a closed one has requeued their messages).
	defer sess.finish()
	for {
		select {
		case <-ctx.Done():
			c.ready.Store(false)
			c.shutdown(sess)
			if err := ch.Close(); err != nil {
				c.log.Warn("consumer channel close failed", slog.Any("error", err))
			}
			c.log.Info("consumer stopped", slog.String("consumer_tag", tag))
			return true, nil
		case e := <-connClosed:
			return true, fmt.Errorf("%w: connection: %w", errLost, errOrClosed(e))
		case e := <-chClosed:
			return true, fmt.Errorf("%w: channel: %w", errLost, errOrClosed(e))
		case d, ok := <-deliveries:
			if !ok {
				// The broker cancelled the subscription (queue deleted)
				// or the channel went away.
				return true, fmt.Errorf("%w: delivery stream ended", errLost)
			}
			sess.handOut(d.DeliveryTag)
			c.handle(Message{Body: d.Body, MessageID: d.MessageId, Redelivered: d.Redelivered, d: d, s: &settlement{sess: sess}})
		}
	}
}

func errOrClosed(e *amqp.Error) error {
	if e == nil {
		return amqp.ErrClosed
	}
	return e
}

// shutdown ends a session in the order that loses nothing and keeps the
// queue's order: let handed-out deliveries settle (or be released), send
// the acks still waiting, then let the caller close the channel. It does
// not cancel the subscription first: with a single active consumer a
// cancel would make the next consumer active while this one still holds
// messages, and that consumer could append a conversation's later message
// before this one appends an earlier one. Closing the channel gives every
// message not acked back at once (what arrived but was never handed out,
// what the handler released), in delivery order, and only then does the
// next consumer get the queue.
func (c *Consumer) shutdown(sess *session) {
	defer sess.finish()
	deadline := time.NewTimer(c.opts.DrainTimeout)
	defer deadline.Stop()
	for sess.pending.Load() > 0 {
		select {
		case <-deadline.C:
			c.log.Warn("consumer closing with unsettled deliveries", slog.Int64("unsettled", sess.pending.Load()))
			return
		case <-sess.idle:
		}
	}
}
