package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Depth reads how many messages wait in a queue, by declaring it passively
// on a connection of its own (named "lull-metrics-<ns>"): a passive declare
// that fails closes its channel, which must never be the consumer's. The
// connection is dialled on the first read and again after it broke. It is
// safe for concurrent use; reads take turns.
type Depth struct {
	url, queue, name string

	mu   sync.Mutex       // held by the read under way
	conn *amqp.Connection // under mu
	// using is conn while it may be used; a read that gave up swaps it
	// out (and closes it), and the next read dials again.
	using  atomic.Pointer[amqp.Connection]
	closed atomic.Bool
}

// NewInboundDepth returns a Depth of InboundQueue(ns).
func NewInboundDepth(url, ns string) *Depth {
	return &Depth{url: url, queue: InboundQueue(ns), name: "lull-metrics-" + ns}
}

// Messages is the number of messages ready in the queue (not those handed
// to a consumer and not yet acked). ctx bounds the wait: when it ends
// first, the connection is closed (it may be a link that answers nothing)
// and the next read dials again.
func (d *Depth) Messages(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("depth of %s: %w", d.queue, err)
	}
	type answer struct {
		n   int
		err error
	}
	done := make(chan answer, 1)
	go func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		n, err := d.read(ctx)
		done <- answer{n, err}
	}()
	select {
	case a := <-done:
		return a.n, a.err
	case <-ctx.Done():
		select {
		case a := <-done: // it ended as ctx did
			return a.n, a.err
		default:
		}
		if conn := d.using.Swap(nil); conn != nil {
			go closeConn(conn)
		}
		return 0, fmt.Errorf("depth of %s: %w", d.queue, ctx.Err())
	}
}

// read runs under d.mu. A connection that broke since the last read (its
// channel does not open) is dialled again, once.
func (d *Depth) read(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("depth of %s: %w", d.queue, err)
	}
	if d.closed.Load() {
		return 0, fmt.Errorf("depth of %s: closed", d.queue)
	}
	fresh := false
	if d.conn == nil || d.conn.IsClosed() || d.using.Load() != d.conn {
		if err := d.dial(ctx); err != nil {
			return 0, err
		}
		fresh = true
	}
	ch, err := d.conn.Channel()
	if err != nil && !fresh {
		closeConn(d.conn)
		if err := d.dial(ctx); err != nil {
			return 0, err
		}
		ch, err = d.conn.Channel()
	}
	if err != nil {
		closeConn(d.conn)
		return 0, fmt.Errorf("depth of %s: open channel: %w", d.queue, err)
	}
	q, err := ch.QueueDeclarePassive(d.queue, true, false, false, false, nil)
	if err != nil {
		// The broker closed the channel (the queue does not exist yet:
		// the first consumer or publisher to connect declares it), or the
		// connection broke.
		return 0, fmt.Errorf("depth of %s: %w", d.queue, err)
	}
	_ = ch.Close()
	return q.Messages, nil
}

func (d *Depth) dial(ctx context.Context) error {
	conn, err := dial(ctx, d.url, d.name)
	if err != nil {
		return fmt.Errorf("depth of %s: %w", d.queue, err)
	}
	d.conn = conn
	d.using.Store(conn)
	if d.closed.Load() { // Close came while dialling
		d.using.Store(nil)
		closeConn(conn)
		return fmt.Errorf("depth of %s: closed", d.queue)
	}
	return nil
}

// Close closes the connection, if any, without waiting for a read under
// way (it fails); reads after Close fail.
func (d *Depth) Close() {
	d.closed.Store(true)
	if conn := d.using.Swap(nil); conn != nil {
		closeConn(conn)
	}
}
