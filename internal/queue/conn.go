package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/redact"
)

const (
	// dialTimeout bounds the TCP connect and the AMQP handshake.
	dialTimeout = 5 * time.Second
	// heartbeat is proposed to the broker so a dead peer is noticed within
	// about two intervals.
	heartbeat = 10 * time.Second

	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

// dial opens a connection named name (shown by `rabbitmqctl list_connections
// client_properties` and the management UI) to one of the nodes of urls
// (see Nodes): each in turn, from a random one on, until one accepts. A
// reconnect after a node died thus lands on a live node. ctx cancels the
// TCP connects; each handshake is bounded by dialTimeout. Automatic
// recovery of amqp091-go stays off: the publisher and the consumer
// reconnect themselves.
func dial(ctx context.Context, urls, name string) (*amqp.Connection, error) {
	nodes := Nodes(urls)
	if len(nodes) == 0 {
		return nil, errors.New("dial: no AMQP URL")
	}
	var errs []error
	for _, url := range dialOrder(nodes) {
		conn, err := dialNode(ctx, url, name)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dialNode opens a connection named name to the node at url.
func dialNode(ctx context.Context, url, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(url, amqp.Config{
		Heartbeat:  heartbeat,
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Cleared by amqp091-go once the handshake completes.
			if err := c.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", redact.URL(url), err)
	}
	return conn, nil
}

// closeTimeout bounds connection.close: a broker that blocks a connection
// (a memory or disk alarm) reads nothing from it, close included, and a
// half-open link answers nothing, so a plain Close could wait for ever.
const closeTimeout = 2 * time.Second

// closeConn closes conn, waiting at most closeTimeout for the broker's
// close-ok; the socket is closed in any case.
func closeConn(conn *amqp.Connection) {
	_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
}

// reconnect is the pause between reconnect attempts.
var reconnect = backoff.Policy{Min: backoffMin, Max: backoffMax}

// permanent reports whether err is a broker answer that retrying will not
// change: bad credentials, a vhost without access, or a queue that exists
// with other arguments than Declare asks for.
func permanent(err error) bool {
	var aerr *amqp.Error
	if !errors.As(err, &aerr) {
		return false
	}
	switch aerr.Code {
	case amqp.AccessRefused, amqp.NotAllowed, amqp.PreconditionFailed, amqp.InvalidPath:
		return true
	}
	return false
}
