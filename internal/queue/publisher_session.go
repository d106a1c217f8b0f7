package queue

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/backoff"
)

// pubSession is one connection of a Publisher with its pool of channels. It
// is never repaired: when the connection or any of its channels closes, the
// whole session dies and the loop builds a new one.
type pubSession struct {
	conn *amqp.Connection
	pool chan *pubChannel // idle channels; capacity = number of channels

	dead     chan struct{} // closed when the session died
	killOnce sync.Once
	reason   error

	blockMu sync.Mutex
	// blocked is the broker's reason while it blocks the connection
	// (connection.blocked, sent under a memory or disk alarm), else "".
	blocked string
	// blockedC is closed when a block begins, so Publish calls waiting
	// for a channel or a confirm give up at once; unblock replaces it.
	blockedC chan struct{}
}

func newPubSession(conn *amqp.Connection, channels int) *pubSession {
	return &pubSession{
		conn:     conn,
		pool:     make(chan *pubChannel, channels),
		dead:     make(chan struct{}),
		blockedC: make(chan struct{}),
	}
}

// blockState returns the broker's reason while the connection is blocked
// (else ""), and a channel closed when the next block begins.
func (s *pubSession) blockState() (string, <-chan struct{}) {
	s.blockMu.Lock()
	defer s.blockMu.Unlock()
	return s.blocked, s.blockedC
}

func (s *pubSession) blockReason() string {
	r, _ := s.blockState()
	return r
}

// setBlocked records connection.blocked (reason) or unblocked (""), and
// reports whether that changed the state.
func (s *pubSession) setBlocked(reason string) bool {
	s.blockMu.Lock()
	defer s.blockMu.Unlock()
	was := s.blocked != ""
	s.blocked = reason
	switch {
	case reason != "" && !was:
		close(s.blockedC)
	case reason == "" && was:
		s.blockedC = make(chan struct{})
	}
	return was != (reason != "")
}

// watchBlocked follows connection.blocked and connection.unblocked. The
// broker sends them only to a connection that publishes while an alarm is
// on, which is one reason the publisher probes when idle. amqp091-go closes
// notify when the connection closes, ending the goroutine.
func (p *Publisher) watchBlocked(s *pubSession, notify chan amqp.Blocking) {
	go func() {
		for b := range notify {
			if b.Active {
				reason := b.Reason
				if reason == "" {
					reason = "no reason given"
				}
				if s.setBlocked(reason) {
					p.log.Warn("publisher blocked by the broker; refusing publishes until it unblocks", slog.String("reason", reason))
				}
			} else if s.setBlocked("") {
				p.log.Info("publisher unblocked by the broker")
			}
		}
	}()
}

func (s *pubSession) kill(reason error) {
	s.killOnce.Do(func() {
		s.reason = reason
		close(s.dead)
	})
}

// watch kills the session when notify delivers an error (the broker or the
// network closed the connection or channel). A close without error is our
// own doing and needs no reaction.
func (s *pubSession) watch(what string, notify chan *amqp.Error) {
	go func() {
		if e, ok := <-notify; ok && e != nil {
			s.kill(fmt.Errorf("%s closed: %w", what, e))
		}
	}()
}

// pubChannel is a confirm-mode channel with the mandatory-flag returns it
// saw, so Publish can tell an acked-but-unroutable message (the broker acks
// those too) from a stored one.
type pubChannel struct {
	ch *amqp.Channel

	mu       sync.Mutex
	returned map[string]int // message id -> returns not yet claimed
}

// collectReturns records basic.return messages. The broker sends a return
// before the ack of the same message, and amqp091-go dispatches both from
// one reader goroutine, handing the return over with a blocking send to
// each NotifyReturn listener in turn. Listening on two unbuffered channels
// makes the second hand-over a barrier: the reader moves on to the ack only
// after this goroutine recorded the return, so Publish never misses it.
func (pc *pubChannel) collectReturns() {
	returns := pc.ch.NotifyReturn(make(chan amqp.Return))
	barrier := pc.ch.NotifyReturn(make(chan amqp.Return))
	go func() {
		for r := range returns {
			pc.mu.Lock()
			pc.returned[r.MessageId]++
			pc.mu.Unlock()
			<-barrier
		}
	}()
}

func (pc *pubChannel) takeReturned(messageID string) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	n := pc.returned[messageID]
	switch {
	case n == 0:
		return false
	case n == 1:
		delete(pc.returned, messageID)
	default:
		pc.returned[messageID] = n - 1
	}
	return true
}

// connect dials, declares the topology and opens the channel pool.
func (p *Publisher) connect(ctx context.Context) (*pubSession, error) {
	conn, err := dial(ctx, p.url, p.opts.Name)
	if err != nil {
		return nil, err
	}
	s := newPubSession(conn, p.opts.Channels)
	s.watch("connection", conn.NotifyClose(make(chan *amqp.Error, 1)))
	p.watchBlocked(s, conn.NotifyBlocked(make(chan amqp.Blocking, 1)))
	if err := p.opts.Topology(conn); err != nil {
		closeConn(conn)
		return nil, err
	}
	for i := range p.opts.Channels {
		ch, err := conn.Channel()
		if err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("open publisher channel %d: %w", i, err)
		}
		if err := ch.Confirm(false); err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("confirm mode on publisher channel %d: %w", i, err)
		}
		pc := &pubChannel{ch: ch, returned: map[string]int{}}
		pc.collectReturns()
		s.watch(fmt.Sprintf("channel %d", i), ch.NotifyClose(make(chan *amqp.Error, 1)))
		s.pool <- pc
	}
	return s, nil
}

// loop keeps a session up until ctx ends, then closes it.
func (p *Publisher) loop(ctx context.Context) {
	defer close(p.loopDone)
	for attempt := 0; ; attempt++ {
		s, err := p.connect(ctx)
		if err != nil {
			p.setSession(nil, err)
			wait := reconnect.Delay(attempt + 1)
			p.log.Warn("publisher connect failed", slog.Any("error", err), slog.Int("attempt", attempt+1), slog.Duration("retry_in", wait))
			if backoff.Sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		attempt = -1
		p.setSession(s, nil)
		p.log.Info("publisher connected", slog.Int("channels", p.opts.Channels), slog.String("target", p.opts.target()))
		if !p.serve(ctx, s) {
			p.setSession(nil, nil)
			closeConn(s.conn)
			return
		}
		p.setSession(nil, s.reason)
		p.log.Warn("publisher connection lost, reconnecting", slog.Any("error", s.reason))
		// Closing fails every confirm still pending on the session's
		// channels, so no Publish waits on a dead channel.
		closeConn(s.conn)
	}
}

// serve waits until the session dies (true) or ctx ends (false), meanwhile
// re-declaring the topology when a message came back unroutable and
// probing the link when no confirm came for ProbeInterval.
func (p *Publisher) serve(ctx context.Context, s *pubSession) bool {
	tick := time.NewTicker(p.opts.ProbeInterval)
	defer tick.Stop()
	// A publisher that was stalled on the last connection is ready on this
	// one only after a confirm: find out now, not a tick later.
	if p.stalled.Load() {
		p.maybeProbe(ctx, s)
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.dead:
			return true
		case <-tick.C:
			p.maybeProbe(ctx, s)
		case <-p.redeclare:
			if err := p.opts.Topology(s.conn); err != nil {
				p.log.Error("publisher re-declare failed", slog.Any("error", err))
			} else {
				p.log.Warn("publisher re-declared topology after an unroutable message")
			}
		}
	}
}

// setSession installs s (nil while not connected) and, while not
// connected, why: Publish reports it.
func (p *Publisher) setSession(s *pubSession, why error) {
	p.mu.Lock()
	p.sess, p.lastErr = s, why
	p.mu.Unlock()
}

// probeRoutingKey routes nowhere: no client may declare a queue whose name
// starts with "amq.", so a probe published to it through the default
// exchange (non-mandatory) is dropped, and confirmed, by the broker.
const probeRoutingKey = "amq.lull.probe"

// maybeProbe starts a probe unless one is under way, the broker blocks the
// connection (it tells when that ends), or a confirm came recently.
func (p *Publisher) maybeProbe(ctx context.Context, s *pubSession) {
	if reason, _ := s.blockState(); reason != "" {
		return
	}
	if !p.stalled.Load() && time.Since(time.Unix(0, p.lastConfirm.Load())) < p.opts.ProbeInterval {
		return
	}
	if !p.probing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.probing.Store(false)
		p.probe(ctx, s)
	}()
}

// probe checks the link the way Publish uses it. Where the target is the
// default exchange (the inbound queue), it publishes a confirmed message
// that routes nowhere: a publish is also what makes a broker under an alarm
// send connection.blocked. Other targets (the sinks' exchanges) might route
// any message to a consumer, and the user may not write to the default
// exchange, so there a channel open and close is the round trip.
func (p *Publisher) probe(ctx context.Context, s *pubSession) {
	tctx, cancel := context.WithTimeout(ctx, p.opts.ConfirmTimeout)
	defer cancel()
	_, blocked := s.blockState()
	done := make(chan bool, 1) // whether the broker answered in time
	go func() {
		if p.opts.Exchange != "" {
			// Channel takes no context; closing the connection (session
			// death, Close) ends it.
			ch, err := s.conn.Channel()
			if err == nil {
				err = ch.Close()
			}
			done <- err == nil
			return
		}
		var pc *pubChannel
		select {
		case pc = <-s.pool:
		case <-tctx.Done():
			done <- false
			return
		}
		dc, err := pc.ch.PublishWithDeferredConfirmWithContext(tctx, "", probeRoutingKey, false, false, amqp.Publishing{
			MessageId: "lull-probe", Timestamp: time.Now(), Body: []byte("{}"),
		})
		s.pool <- pc
		if err != nil {
			done <- false
			return
		}
		select {
		case <-dc.Done():
			done <- dc.Acked()
		case <-tctx.Done():
			done <- false
		}
	}()
	select {
	case ok := <-done:
		if ok {
			p.confirmed()
			return
		}
	case <-tctx.Done():
	case <-blocked:
		// The block explains the silence; unblock or the next probe tells
		// whether confirms come again.
		return
	case <-s.dead:
		return
	}
	// Only a broker that did not answer within ConfirmTimeout counts: not
	// a session that died meanwhile (the loop reconnects and says
	// "disconnected") nor a Close.
	if ctx.Err() == nil && tctx.Err() != nil {
		select {
		case <-s.dead:
		case <-blocked:
		default:
			p.confirmTimedOut()
		}
	}
}
