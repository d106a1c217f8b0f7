package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/backoff"
)

// ConsumerOptions configures a Consumer. Zero values mean the defaults.
type ConsumerOptions struct {
	// Prefetch is the number of unsettled deliveries the broker hands to
	// this consumer at a time. Default 200.
	Prefetch int
	// DrainTimeout bounds how long Run, once ctx is done, waits for
	// deliveries already passed to handle to be settled before it closes
	// the channel (unsettled ones are then redelivered). Default 5s.
	DrainTimeout time.Duration
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
	// Inbound configures the topology declared on every (re)connect (the
	// dead-letter queue's retention, see InboundTopology). Its Logger
	// defaults to Logger.
	Inbound TopologyOptions
}

func (o *ConsumerOptions) setDefaults() {
	if o.Prefetch <= 0 {
		o.Prefetch = 200
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Consumer consumes InboundQueue(ns) on a connection of its own and
// reconnects by itself whenever the connection or channel closes.
type Consumer struct {
	url, ns string
	opts    ConsumerOptions
	log     *slog.Logger

	ready   atomic.Bool
	session atomic.Uint64 // counts connections, for consumer tags
}

// NewConsumer returns a Consumer for namespace ns; nothing happens until Run.
func NewConsumer(url, ns string, opts ConsumerOptions) *Consumer {
	opts.setDefaults()
	return &Consumer{
		url:  url,
		ns:   ns,
		opts: opts,
		log:  opts.Logger.With(slog.String("component", "queue_consumer")),
	}
}

// Ready reports whether the consumer is currently subscribed to the queue.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// errLost marks the end of a session that a reconnect may cure.
var errLost = errors.New("queue: consumer connection lost")

// Run consumes InboundQueue(ns) until ctx is done, calling handle for each
// delivery, serially, from the calling goroutine. handle must settle every
// delivery exactly once (Ack, Requeue or DeadLetter), now or later from any
// goroutine. When the connection or channel closes, Run reconnects with
// capped exponential backoff and re-declares the topology; deliveries of the
// old channel then fail to settle and the broker redelivers them.
//
// Run returns nil once ctx is done, after cancelling the subscription,
// waiting up to DrainTimeout for deliveries handed to handle to be settled,
// and closing channel and connection. It returns an error only for problems
// a retry cannot fix: an unparseable URL, refused credentials or vhost, or a
// queue that exists with other arguments. Run must not be called again
// before it returned.
func (c *Consumer) Run(ctx context.Context, handle func(Delivery)) error {
	if _, err := amqp.ParseURI(c.url); err != nil {
		return fmt.Errorf("consume %s: parse AMQP URL: %w", InboundQueue(c.ns), err)
	}
	for attempt := 0; ; attempt++ {
		consumed, err := c.consume(ctx, handle)
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
func (c *Consumer) consume(ctx context.Context, handle func(Delivery)) (bool, error) {
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

	sess := newSession(ch)
	for {
		select {
		case <-ctx.Done():
			c.ready.Store(false)
			c.shutdown(sess, tag, deliveries)
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
			sess.pending.Add(1)
			handle(Delivery{Body: d.Body, MessageID: d.MessageId, Redelivered: d.Redelivered, d: d, s: &settlement{sess: sess}})
		}
	}
}

func errOrClosed(e *amqp.Error) error {
	if e == nil {
		return amqp.ErrClosed
	}
	return e
}

// shutdown ends a session in the order that loses nothing: stop the
// broker sending, give back what arrived but was never handed out, let
// handed-out deliveries settle, then let the caller close the channel.
func (c *Consumer) shutdown(sess *session, tag string, deliveries <-chan amqp.Delivery) {
	if err := sess.ch.Cancel(tag, false); err != nil {
		c.log.Warn("consumer cancel failed", slog.Any("error", err))
		return
	}
	// After basic.cancel-ok amqp091-go still hands out what it buffered,
	// then closes the stream.
	for d := range deliveries {
		_ = d.Nack(false, true)
	}
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
