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
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
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
	for _, q := range []string{queue.InboundQueue(ns), queue.DeadLetterQueue(ns)} {
		// Deleting a queue that does not exist is a no-op in RabbitMQ 3.x
		// and later, so no passive declare is needed first.
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			errs = append(errs, fmt.Errorf("delete queue %s: %w", q, err))
		}
	}
	if err := ch.ExchangeDelete(queue.DeadLetterExchange(ns), false, false); err != nil {
		errs = append(errs, fmt.Errorf("delete exchange %s: %w", queue.DeadLetterExchange(ns), err))
	}
	return errors.Join(errs...)
}
