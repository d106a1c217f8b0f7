// Package sink delivers batches to where they are answered: a log, an HTTP
// callback, a RabbitMQ exchange (amqp) and a Celery task (celery). A sink
// delivers one batch; the caller owns retries, backoff and dead-lettering,
// guided by the errors a sink returns (Permanent, RetryAfterOf). Sinks
// that hold connections implement Closer; Close closes them.
package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lullhq/lull/internal/batch"
)

// Sink delivers one batch. body is the batch's JSON encoding
// (json.Marshal(b)), computed once by the caller. Deliver is called
// concurrently for different batches. A nil error means the batch was
// handed over; any other error is retried later unless it is Permanent.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, b batch.Batch, body []byte) error
}

// Sink names accepted by FromNames (the SINKS variable).
const (
	NameLog    = "log"
	NameHTTP   = "http"
	NameAMQP   = "amqp"
	NameCelery = "celery"
)

// Options configures the sinks FromNames builds.
type Options struct {
	// Log is where the log sink writes; nil means os.Stdout.
	Log io.Writer
	// HTTP configures the http sink; used only when "http" is named.
	HTTP HTTPOptions
	// Broker is the RabbitMQ the amqp and celery sinks publish to; used
	// only when one of them is named.
	Broker BrokerOptions
	// AMQP configures the amqp sink; used only when "amqp" is named.
	AMQP AMQPOptions
	// Celery configures the celery sink; used only when "celery" is named.
	Celery CeleryOptions
}

// known is every sink name, in the order errors list them.
var known = []string{NameLog, NameHTTP, NameAMQP, NameCelery}

// ParseNames checks a list of sink names (the SINKS list) and returns it
// normalized: each name trimmed and lowercased, in order. An empty list, an
// empty, unknown or repeated name is an error naming every problem. The
// normalized names are returned even then, so a caller can report further
// problems (a missing CALLBACK_URL) in the same pass.
func ParseNames(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	var errs []error
	seen := make(map[string]bool, len(names))
	for _, raw := range names {
		name := strings.ToLower(strings.TrimSpace(raw))
		out = append(out, name)
		if !slices.Contains(known, name) {
			errs = append(errs, fmt.Errorf("sink %q: unknown (known: %s)", raw, strings.Join(known, ", ")))
			continue
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("sink %q: listed twice", name))
		}
		seen[name] = true
	}
	if len(names) == 0 {
		errs = append(errs, fmt.Errorf("sink: no sinks named (known: %s)", strings.Join(known, ", ")))
	}
	return out, errors.Join(errs...)
}

// FromNames builds the sinks named in names (the SINKS list), in order.
// The names are checked by ParseNames. Bad names or bad options are an
// error naming the problem. The amqp and celery sinks connect in the
// background; close what FromNames returns with Close once deliveries have
// finished.
func FromNames(names []string, opts Options) (_ []Sink, err error) {
	names, err = ParseNames(names)
	if err != nil {
		return nil, err
	}
	var sinks []Sink
	defer func() {
		if err != nil {
			_ = Close(context.Background(), sinks)
		}
	}()
	for _, name := range names {
		switch name {
		case NameLog:
			sinks = append(sinks, NewLog(opts.Log))
		case NameHTTP:
			h, err := NewHTTP(opts.HTTP)
			if err != nil {
				return nil, fmt.Errorf("sink %q: %w", name, err)
			}
			sinks = append(sinks, h)
		case NameAMQP:
			a, err := NewAMQP(opts.Broker, opts.AMQP)
			if err != nil {
				return nil, fmt.Errorf("sink %q: %w", name, err)
			}
			sinks = append(sinks, a)
		case NameCelery:
			c, err := NewCelery(opts.Broker, opts.Celery)
			if err != nil {
				return nil, fmt.Errorf("sink %q: %w", name, err)
			}
			sinks = append(sinks, c)
		}
	}
	return sinks, nil
}

func defaultWriter(w io.Writer) io.Writer {
	if w == nil {
		return os.Stdout
	}
	return w
}

// discardError is a receiver's answer that the batch is stale: it noticed
// newer messages of the conversation while it held the request and threw its
// answer away.
type discardError struct{ err error }

func (e *discardError) Error() string { return e.err.Error() }
func (e *discardError) Unwrap() error { return e.err }

// Discard marks err as the receiver's discard of the batch: its messages go
// back in front of the conversation's buffer, for the next batch (which
// names this one in replaces). Discard(nil) is nil.
func Discard(err error) error {
	if err == nil {
		return nil
	}
	return &discardError{err: err}
}

// IsDiscard reports whether err, or an error it wraps, was marked with
// Discard.
func IsDiscard(err error) bool {
	var d *discardError
	return errors.As(err, &d)
}

// permanenter is implemented by errors that know whether retrying can fix
// them. IsPermanent asks the first error in the chain that implements it.
type permanenter interface {
	Permanent() bool
}

// retryAfterer is implemented by errors that carry a server's hint for when
// to try again.
type retryAfterer interface {
	RetryAfter() (time.Duration, bool)
}

// permanentError marks an error that retrying will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// Permanent marks err as one that retrying will not fix: the caller
// dead-letters the batch instead of retrying. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent. For an error returned by Deliver (several sinks) it is true
// only when every failure is permanent.
func IsPermanent(err error) bool {
	var p permanenter
	return errors.As(err, &p) && p.Permanent()
}

// retryAfterError carries a Retry-After hint alongside a retryable error.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string                     { return e.err.Error() }
func (e *retryAfterError) Unwrap() error                     { return e.err }
func (e *retryAfterError) RetryAfter() (time.Duration, bool) { return e.after, true }

// withRetryAfter attaches a Retry-After hint to err.
func withRetryAfter(err error, after time.Duration) error {
	return &retryAfterError{err: err, after: after}
}

// RetryAfterOf returns how long the receiver asked lull to wait before
// trying again (from a Retry-After header), if it said so.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r retryAfterer
	if !errors.As(err, &r) {
		return 0, false
	}
	return r.RetryAfter()
}
