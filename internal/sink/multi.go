package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lullhq/lull/internal/batch"
)

// Deliver hands b to every sink whose name is not yet true in done, one
// after another, and records each success in done (when done is not nil),
// so that a retry of the same batch resends only to the sinks that failed.
//
// It returns nil when every sink has the batch, else one error joining the
// failures (each prefixed with its sink's name). That error is permanent
// only if every failure is permanent, and its RetryAfterOf is the longest
// hint any failure gave.
func Deliver(ctx context.Context, sinks []Sink, b batch.Batch, body []byte, done map[string]bool) error {
	var errs []error
	for _, s := range sinks {
		name := s.Name()
		if done[name] {
			continue
		}
		if err := s.Deliver(ctx, b, body); err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", name, err))
			continue
		}
		if done != nil {
			done[name] = true
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &multiError{errs: errs, joined: errors.Join(errs...)}
}

// multiError is the failures of one Deliver call. It answers Permanent and
// RetryAfter for the whole set, so errors.As stops here instead of at the
// first failure it would find inside.
type multiError struct {
	errs   []error
	joined error
}

func (e *multiError) Error() string   { return e.joined.Error() }
func (e *multiError) Unwrap() []error { return e.errs }

// Permanent is true when no failure would be fixed by a retry.
func (e *multiError) Permanent() bool {
	for _, err := range e.errs {
		if !IsPermanent(err) {
			return false
		}
	}
	return true
}

// RetryAfter is the longest Retry-After any failure carries.
func (e *multiError) RetryAfter() (time.Duration, bool) {
	var longest time.Duration
	var ok bool
	for _, err := range e.errs {
		if d, has := RetryAfterOf(err); has {
			if !ok || d > longest {
				longest = d
			}
			ok = true
		}
	}
	return longest, ok
}
