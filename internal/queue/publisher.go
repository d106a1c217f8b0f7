package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/valutil"
)

var (
	// ErrUnavailable means the broker did not take responsibility for a
	// message: not connected, channel or connection closed, nack, confirm
	// timeout, the broker blocking the connection (a resource alarm), or no
	// queue to route to. The caller may retry.
	ErrUnavailable = errors.New("queue: broker unavailable")
	// ErrClosed is returned by Publish after Close was called.
	ErrClosed = errors.New("queue: publisher closed")
	// ErrUnroutable means the broker returned a mandatory message because
	// no queue is bound to its target. Errors wrapping it wrap
	// ErrUnavailable too: binding a queue (or re-declaring a deleted one)
	// makes a retry succeed.
	ErrUnroutable = errors.New("queue: no queue to route to")
)

// Defaults of the PublisherOptions that no environment variable sets.
const (
	defaultChannels      = 4
	defaultProbeInterval = 2 * time.Second
)

// PublisherOptions configures a Publisher. ConfirmTimeout is required, and
// so is Inbound's retention when Topology is unset; other zero values mean
// the defaults.
type PublisherOptions struct {
	// Channels is the number of confirm-mode channels shared by all
	// Publish calls. Default 4.
	Channels int
	// ConfirmTimeout bounds one Publish: waiting for a free channel, sending
	// and waiting for the broker's confirm (PUBLISH_TIMEOUT). Required,
	// positive.
	ConfirmTimeout time.Duration
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger

	// Exchange and RoutingKey are where every message goes. Both empty
	// (the default) means InboundQueue(ns) through the default exchange.
	Exchange   string
	RoutingKey string
	// Topology declares what the publisher sends to, on every (re)connect
	// and again after a message came back unroutable. Default
	// InboundTopology(ns, Inbound).
	Topology Topology
	// Inbound configures the default Topology (the dead-letter queue's
	// retention, DEAD_LETTER_TTL and DEAD_LETTER_MAX): required when
	// Topology is unset, unused when it is set. Its Logger defaults to
	// Logger.
	Inbound TopologyOptions
	// Name names the connection in the broker (rabbitmqctl
	// list_connections client_properties, the management UI). Default
	// "lull-publisher-<ns>".
	Name string
	// ProbeInterval is how long the publisher goes without a confirm
	// before it checks the link itself, and how often it re-checks while
	// confirms time out: a publisher nobody publishes through (an api its
	// load balancer took out of rotation) must still find out that the
	// broker is back, or that it stopped answering. Default 2s.
	ProbeInterval time.Duration
	// Observer hears the outcome of every Publish. Nil hears nothing.
	Observer PublishObserver
}

// PublishObserver hears the outcome of every Publish (metrics.API is one).
// Its methods are called on the publishing goroutine: they must be quick.
type PublishObserver interface {
	// PublishConfirmed: the broker confirmed the message, took after
	// Publish was called.
	PublishConfirmed(took time.Duration)
	// PublishFailed: the message was not confirmed, for reason, one of
	// FailureReasons.
	PublishFailed(reason string)
}

// Why a Publish failed, as PublishObserver.PublishFailed hears it.
const (
	FailClosed         = "closed"          // after Close
	FailNotConnected   = "not_connected"   // no connection to the broker
	FailBlocked        = "blocked"         // the broker blocks the connection (a resource alarm)
	FailConnectionLost = "connection_lost" // while waiting for a channel
	FailTimeout        = "timeout"         // no confirm (or channel) within ConfirmTimeout or the caller's deadline
	FailCanceled       = "canceled"        // the caller's context was cancelled
	FailSend           = "send"            // the channel refused the publish
	FailNacked         = "nacked"          // the broker nacked it
	FailChannelClosed  = "channel_closed"  // the channel closed before the confirm
	FailUnroutable     = "unroutable"      // no queue bound to the target
	FailInvalid        = "invalid"         // the message has no MessageId
)

// FailureReasons lists every reason PublishFailed hears.
var FailureReasons = []string{
	FailClosed, FailNotConnected, FailBlocked, FailConnectionLost, FailTimeout, FailCanceled,
	FailSend, FailNacked, FailChannelClosed, FailUnroutable, FailInvalid,
}

// noObserver is the Observer of a Publisher given none.
type noObserver struct{}

func (noObserver) PublishConfirmed(time.Duration) {}
func (noObserver) PublishFailed(string)           {}

// validate reports the options NewPublisher refuses.
func (o *PublisherOptions) validate() error {
	if o.ConfirmTimeout <= 0 {
		return fmt.Errorf("new publisher: ConfirmTimeout %s must be positive (PUBLISH_TIMEOUT)", o.ConfirmTimeout)
	}
	if o.Channels < 0 {
		return fmt.Errorf("new publisher: Channels %d must not be negative", o.Channels)
	}
	if o.ProbeInterval < 0 {
		return fmt.Errorf("new publisher: ProbeInterval %s must not be negative", o.ProbeInterval)
	}
	if o.Topology == nil {
		if err := o.Inbound.validate(); err != nil {
			return fmt.Errorf("new publisher: Inbound: %w", err)
		}
	}
	return nil
}

func (o *PublisherOptions) setDefaults(ns string) {
	o.Channels = valutil.ValOrDefault(o.Channels, defaultChannels)
	o.Logger = valutil.ValOrDefault(o.Logger, slog.Default())
	if o.Exchange == "" && o.RoutingKey == "" {
		o.RoutingKey = InboundQueue(ns)
	}
	if o.Topology == nil {
		o.Topology = InboundTopology(ns, o.Inbound.logTo(o.Logger))
	}
	if o.Name == "" {
		o.Name = "lull-publisher-" + ns
	}
	o.ProbeInterval = valutil.ValOrDefault(o.ProbeInterval, defaultProbeInterval)
	o.Observer = valutil.ValOrDefault[PublishObserver](o.Observer, noObserver{})
}

// target describes where the publisher sends, for errors.
func (o *PublisherOptions) target() string {
	if o.Exchange == "" {
		return "queue " + o.RoutingKey
	}
	if o.RoutingKey == "" {
		return "exchange " + o.Exchange
	}
	return fmt.Sprintf("exchange %s with routing key %s", o.Exchange, o.RoutingKey)
}

// Publisher publishes persistent messages to InboundQueue(ns), or to the
// target its options name, and returns only once the broker confirmed them.
// It owns one connection with a small pool of long-lived confirm-mode
// channels, kept up by a background loop that reconnects with capped
// exponential backoff and declares the topology each time. It is safe for
// concurrent use.
type Publisher struct {
	url, ns string
	opts    PublisherOptions
	log     *slog.Logger

	mu       sync.Mutex
	closed   bool
	sess     *pubSession    // nil while not connected
	lastErr  error          // why the last connect failed, while not connected
	inflight sync.WaitGroup // Publish calls between admission and return

	// stalled is set when a confirm did not come within ConfirmTimeout
	// and cleared by the next confirm that does: a half-open link keeps
	// the connection "up" for a heartbeat timeout while nothing arrives.
	stalled     atomic.Bool
	lastConfirm atomic.Int64 // unix nanoseconds of the latest timely ack
	probing     atomic.Bool  // a probe is under way

	redeclare chan struct{} // a message came back unroutable
	stop      context.CancelFunc
	loopDone  chan struct{}
}

// Health is whether a Publisher can take messages now and, when not, why.
type Health struct {
	Ready bool `json:"ready"`
	// Reason is empty when Ready, else one of "closed", "disconnected",
	// "blocked: <the broker's reason>" (a resource alarm, e.g. "blocked:
	// low on memory") or "confirm timeout" (the broker stopped confirming:
	// a half-open link or a stuck node).
	Reason string `json:"reason,omitempty"`
}

// NewPublisher starts a Publisher for namespace ns. It does not wait for the
// broker: while it is unreachable Ready is false and Publish fails with
// ErrUnavailable. It fails only for an unparseable url or bad options
// (among them a missing ConfirmTimeout, or a missing Inbound retention
// when it declares the inbound topology).
func NewPublisher(ctx context.Context, url, ns string, opts PublisherOptions) (*Publisher, error) {
	if err := ParseNodes(url); err != nil {
		return nil, fmt.Errorf("new publisher: parse AMQP URL: %w", err)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults(ns)
	// The loop outlives ctx's caller-scoped values only through Close.
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &Publisher{
		url:       url,
		ns:        ns,
		opts:      opts,
		log:       opts.Logger.With(slog.String("component", "queue_publisher")),
		redeclare: make(chan struct{}, 1),
		stop:      stop,
		loopDone:  make(chan struct{}),
	}
	go p.loop(loopCtx)
	return p, nil
}

// Ready reports whether a Publish now can be expected to succeed: connected
// with its channels open, not blocked by the broker and not waiting in vain
// for confirms. Health says why not.
func (p *Publisher) Ready() bool { return p.Health().Ready }

// Health reports whether the publisher is ready and, when not, why.
func (p *Publisher) Health() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return Health{Reason: "closed"}
	case p.sess == nil:
		return Health{Reason: "disconnected"}
	}
	if reason, _ := p.sess.blockState(); reason != "" {
		return Health{Reason: "blocked: " + reason}
	}
	if p.stalled.Load() {
		return Health{Reason: "confirm timeout"}
	}
	return Health{Ready: true}
}

// Publish sends body as a persistent JSON message with id messageID and
// waits for the broker's confirm, at most ConfirmTimeout (and ctx). It
// returns nil only when the broker acked the message, which then is on disk
// in a quorum queue. Every other outcome wraps ErrUnavailable, or is
// ErrClosed after Close, or ctx's error when ctx ended first.
func (p *Publisher) Publish(ctx context.Context, messageID string, body []byte) error {
	return p.PublishMessage(ctx, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    messageID,
		Timestamp:    time.Now(),
		Body:         body,
	})
}

// PublishMessage sends msg as it is (the caller sets its properties;
// DeliveryMode amqp.Persistent for a message that must survive a broker
// restart) to the publisher's target, mandatory, and waits for the
// broker's confirm like Publish. msg.MessageId must be set: it is how a
// message the broker returns as unroutable is told apart. An unroutable
// message wraps ErrUnroutable and ErrUnavailable.
func (p *Publisher) PublishMessage(ctx context.Context, msg amqp.Publishing) error {
	start := time.Now()
	failure, err := p.publish(ctx, msg)
	if err == nil {
		p.opts.Observer.PublishConfirmed(time.Since(start))
	} else {
		p.opts.Observer.PublishFailed(failure)
	}
	return err
}

// publish is PublishMessage; a failure comes with its reason, one of
// FailureReasons.
func (p *Publisher) publish(ctx context.Context, msg amqp.Publishing) (failure string, _ error) {
	messageID := msg.MessageId
	if messageID == "" {
		return FailInvalid, errors.New("publish: message has no MessageId")
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return FailClosed, ErrClosed
	}
	s, lastErr := p.sess, p.lastErr
	p.inflight.Add(1)
	p.mu.Unlock()
	defer p.inflight.Done()

	if s == nil {
		if lastErr != nil {
			return FailNotConnected, fmt.Errorf("publish %s: not connected (last error: %v): %w", messageID, lastErr, ErrUnavailable)
		}
		return FailNotConnected, fmt.Errorf("publish %s: not connected: %w", messageID, ErrUnavailable)
	}
	// A blocked connection is not read by the broker until the alarm
	// clears: refuse now rather than let the caller wait ConfirmTimeout
	// for a confirm that cannot come.
	reason, blocked := s.blockState()
	if reason != "" {
		return FailBlocked, blockedErr(messageID, reason)
	}
	tctx, cancel := context.WithTimeout(ctx, p.opts.ConfirmTimeout)
	defer cancel()

	var pc *pubChannel
	select {
	case pc = <-s.pool:
	case <-s.dead:
		return FailConnectionLost, fmt.Errorf("publish %s: connection lost: %w", messageID, ErrUnavailable)
	case <-blocked:
		return FailBlocked, blockedErr(messageID, s.blockReason())
	case <-tctx.Done():
		return timeoutFailure(ctx), p.timeoutErr(ctx, messageID, "waiting for a channel")
	}
	sent := time.Now()
	dc, err := pc.ch.PublishWithDeferredConfirmWithContext(tctx, p.opts.Exchange, p.opts.RoutingKey, true, false, msg)
	s.pool <- pc // never blocks: the pool has room for every channel
	if err != nil {
		if ctx.Err() != nil {
			return timeoutFailure(ctx), fmt.Errorf("publish %s: %w", messageID, ctx.Err())
		}
		return FailSend, fmt.Errorf("publish %s: %w: %w", messageID, ErrUnavailable, err)
	}
	select {
	case <-dc.Done():
	case <-blocked:
		// Blocked while in flight: the broker may still store the message
		// once the alarm clears, and the sender's retry is deduplicated by
		// message id, so answering now loses nothing.
		p.settleLater(s, pc, dc, messageID, sent)
		return FailBlocked, blockedErr(messageID, s.blockReason())
	case <-tctx.Done():
		p.settleLater(s, pc, dc, messageID, sent)
		return timeoutFailure(ctx), p.timeoutErr(ctx, messageID, "waiting for confirm")
	}
	acked := dc.Acked()
	if !acked {
		// A return that came for this message must not be taken for a
		// later publish of the same id.
		pc.takeReturned(messageID)
	} else {
		p.confirmed()
	}
	if !acked {
		// amqp091-go resolves pending confirms as nacks when the channel
		// closes, so look at the channel to tell the two apart.
		if pc.ch.IsClosed() {
			return FailChannelClosed, fmt.Errorf("publish %s: channel closed before confirm: %w", messageID, ErrUnavailable)
		}
		return FailNacked, fmt.Errorf("publish %s: nacked by broker: %w", messageID, ErrUnavailable)
	}
	if pc.takeReturned(messageID) {
		select {
		case p.redeclare <- struct{}{}:
		default:
		}
		return FailUnroutable, fmt.Errorf("publish %s: %s: %w: %w", messageID, p.opts.target(), ErrUnroutable, ErrUnavailable)
	}
	return "", nil
}

// timeoutFailure is the reason of a publish whose wait ended: the caller
// cancelled it, or a deadline passed.
func timeoutFailure(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.Canceled) {
		return FailCanceled
	}
	return FailTimeout
}

func blockedErr(messageID, reason string) error {
	return fmt.Errorf("publish %s: broker blocked the connection (%s): %w", messageID, reason, ErrUnavailable)
}

// settleLater follows a confirm its Publish stopped waiting for (the
// caller's deadline, ConfirmTimeout, or a block). If it does not come within
// ConfirmTimeout of the send, the publisher is marked stalled (unless the
// broker blocks the connection, which explains the silence): the api's
// deadline equals ConfirmTimeout and ends the wait a moment before ours, so
// only watching the confirm itself tells a caller in a hurry from a broker
// that does not answer. Once the confirm is settled (late, or nacked when the
// channel closes; every pending one is settled then), a return it may have
// left is dropped, so it is not taken for a later publish of the same id.
func (p *Publisher) settleLater(s *pubSession, pc *pubChannel, dc *amqp.DeferredConfirmation, messageID string, sent time.Time) {
	go func() {
		late := time.NewTimer(time.Until(sent.Add(p.opts.ConfirmTimeout)))
		defer late.Stop()
		select {
		case <-dc.Done():
			if dc.Acked() {
				p.confirmed()
			}
		case <-late.C:
			if s.blockReason() == "" {
				p.confirmTimedOut()
			}
			// A late ack proves nothing about the next publish: it stays
			// stalled until a confirm comes in time.
			<-dc.Done()
		}
		pc.takeReturned(messageID)
	}()
}

// confirmed records a confirm that came within ConfirmTimeout.
func (p *Publisher) confirmed() {
	p.lastConfirm.Store(time.Now().UnixNano())
	if p.stalled.CompareAndSwap(true, false) {
		p.log.Info("publisher confirms arrive again")
	}
}

func (p *Publisher) confirmTimedOut() {
	if p.stalled.CompareAndSwap(false, true) {
		p.log.Warn("publisher confirm timed out; not ready until a confirm arrives in time",
			slog.Duration("confirm_timeout", p.opts.ConfirmTimeout))
	}
}

func (p *Publisher) timeoutErr(ctx context.Context, messageID, what string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("publish %s: %s: %w", messageID, what, ctx.Err())
	}
	return fmt.Errorf("publish %s: %s: timeout after %s: %w", messageID, what, p.opts.ConfirmTimeout, ErrUnavailable)
}

// Close stops accepting messages (Publish returns ErrClosed), waits for the
// confirms of Publish calls already under way (bounded by ctx), then closes
// the channels and the connection. It returns ctx's error when it gave up
// waiting; the connection is closed in any case.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	drained := make(chan struct{})
	go func() {
		p.inflight.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = fmt.Errorf("close publisher: waiting for confirms: %w", ctx.Err())
	}
	p.stop()
	<-p.loopDone
	return err
}
