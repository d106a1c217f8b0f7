// Package backoff computes capped exponential delays with jitter and sleeps
// them under a context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff.
type Policy struct {
	Min, Max time.Duration
}

// Delay is the wait before retry number attempt (1 = the first retry): Min
// doubled per attempt, capped at Max, with ±20% jitter.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Min
	for i := 1; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)*2) - d/5
	return max(d+jitter, 0)
}

// Sleep waits d, or until ctx is done (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
