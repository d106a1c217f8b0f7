package testenv

import (
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/queue"
)

// CleanupBroker deletes namespace ns's queues and exchange on the broker at
// url when the test ends, with whatever they hold. Register it before the
// test's publishers and consumers: cleanups run last-in first-out, so it
// runs after they stopped. Missing entities are not an error.
func CleanupBroker(tb testing.TB, url, ns string) {
	tb.Helper()
	tb.Cleanup(func() {
		if err := purgeBroker(url, ns); err != nil {
			tb.Errorf("purge broker namespace %s: %v", ns, err)
		}
	})
}

func purgeBroker(url, ns string) error {
	return deleteEntities(url,
		[]string{queue.InboundQueue(ns), queue.DeadLetterQueue(ns)},
		[]string{queue.DeadLetterExchange(ns)})
}

// CleanupBrokerEntities deletes, when the test ends, the queues and
// exchanges that queues and exchanges list then (a test may learn their
// names only after registering it) on the broker at url. Like
// CleanupBroker, register it before the publishers and consumers that use
// them.
func CleanupBrokerEntities(tb testing.TB, url string, queues, exchanges func() []string) {
	tb.Helper()
	tb.Cleanup(func() {
		if err := deleteEntities(url, queues(), exchanges()); err != nil {
			tb.Errorf("cleanup broker: %v", err)
		}
	})
}

// deleteEntities deletes queues and exchanges on the broker at url.
// Deleting one that does not exist is a no-op in RabbitMQ 3.x and later,
// so no passive declare is needed first.
func deleteEntities(url string, queues, exchanges []string) error {
	conn, err := DialAMQP(url)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	var errs []error
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			errs = append(errs, fmt.Errorf("delete queue %s: %w", q, err))
		}
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			errs = append(errs, fmt.Errorf("delete exchange %s: %w", x, err))
		}
	}
	return errors.Join(errs...)
}

// DialAMQP connects to the first node of urls (AMQP_URL: one URL, or a
// cluster's nodes, comma-separated) that answers.
func DialAMQP(urls string) (*amqp.Connection, error) {
	var errs []error
	for _, url := range queue.Nodes(urls) {
		conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dial %d AMQP node(s): %w", len(queue.Nodes(urls)), errors.Join(errs...))
}
