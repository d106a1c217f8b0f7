package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lullhq/lull/internal/queue"
)

// BrokerOptions is the RabbitMQ connection the amqp and celery sinks
// publish on; each of them holds one connection of its own.
type BrokerOptions struct {
	// URL is the broker (AMQP_URL).
	URL string
	// Namespace names the connections ("lull-sink-amqp-<ns>") and is part
	// of the celery sink's task ids (NAMESPACE).
	Namespace string
	// Timeout bounds one publish, from waiting for a channel to the
	// broker's confirm (PUBLISH_TIMEOUT); required, positive.
	Timeout time.Duration
	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger
}

func (o BrokerOptions) validate(sink string) error {
	if o.URL == "" {
		return fmt.Errorf("%s sink: URL is required (AMQP_URL)", sink)
	}
	if o.Namespace == "" {
		return fmt.Errorf("%s sink: Namespace is required (NAMESPACE)", sink)
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("%s sink: Timeout %s: must be positive (PUBLISH_TIMEOUT)", sink, o.Timeout)
	}
	return nil
}

// publisher starts the confirming publisher a broker sink sends with. It
// connects in the background: until it has, Deliver fails with a
// retryable error.
func (o BrokerOptions) publisher(sink string, opts queue.PublisherOptions) (*queue.Publisher, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	opts.Logger = log.With(slog.String("sink", sink))
	opts.ConfirmTimeout = o.Timeout
	opts.Name = "lull-sink-" + sink + "-" + o.Namespace
	// The publisher's loop runs until Close; the context only carries
	// values, and there are none to carry here.
	p, err := queue.NewPublisher(context.Background(), o.URL, o.Namespace, opts)
	if err != nil {
		return nil, fmt.Errorf("%s sink: %w", sink, err)
	}
	return p, nil
}

// Closer is implemented by sinks that hold connections (amqp, celery).
type Closer interface {
	// Close waits for publishes under way (bounded by ctx), then closes
	// the connection. Deliver fails after Close.
	Close(ctx context.Context) error
}

// Close closes every sink in sinks that holds connections. Call it after
// the last delivery finished; ctx bounds the wait for confirms under way.
func Close(ctx context.Context, sinks []Sink) error {
	var errs []error
	for _, s := range sinks {
		if c, ok := s.(Closer); ok {
			if err := c.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("close sink %s: %w", s.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
