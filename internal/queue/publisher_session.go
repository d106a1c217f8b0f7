package queue

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

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
	s := &pubSession{conn: conn, pool: make(chan *pubChannel, p.opts.Channels), dead: make(chan struct{})}
	s.watch("connection", conn.NotifyClose(make(chan *amqp.Error, 1)))
	if err := p.opts.Topology(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	for i := range p.opts.Channels {
		ch, err := conn.Channel()
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("open publisher channel %d: %w", i, err)
		}
		if err := ch.Confirm(false); err != nil {
			_ = conn.Close()
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
			_ = s.conn.Close()
			return
		}
		p.setSession(nil, s.reason)
		p.log.Warn("publisher connection lost, reconnecting", slog.Any("error", s.reason))
		// Closing fails every confirm still pending on the session's
		// channels, so no Publish waits on a dead channel.
		_ = s.conn.Close()
	}
}

// serve waits until the session dies (true) or ctx ends (false), meanwhile
// re-declaring the topology when a message came back unroutable.
func (p *Publisher) serve(ctx context.Context, s *pubSession) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.dead:
			return true
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
