// Package delivery hands claimed batches to the sinks: it counts attempts,
// keeps the lease alive while a delivery runs, retries failures with backoff
// and commits the batch once every sink has it.
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/buffer"
	"github.com/lullhq/lull/internal/sink"
)

// Options configure a Deliverer.
type Options struct {
	Sinks       []sink.Sink
	Concurrency int            // batches delivered at once (default 64)
	Retry       backoff.Policy // wait between failed attempts
	MaxAttempts int            // attempts before a batch is dead-lettered (default 10)
	Logger      *slog.Logger
	// OnCommitted is told the deadline of messages that arrived while the
	// batch was in flight (Redis clock, Unix ms; next is -1 when none).
	OnCommitted func(next, now int64)
}

// Deliverer delivers claimed batches, each in its own goroutine.
type Deliverer struct {
	buf  *buffer.Buffer
	opts Options
	sem  chan struct{}
	wg   sync.WaitGroup
}

// New returns a Deliverer committing to buf.
func New(buf *buffer.Buffer, opts Options) *Deliverer {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.Retry.Min <= 0 {
		opts.Retry = backoff.Policy{Min: time.Second, Max: 5 * time.Minute}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.OnCommitted == nil {
		opts.OnCommitted = func(int64, int64) {}
	}
	return &Deliverer{buf: buf, opts: opts, sem: make(chan struct{}, opts.Concurrency)}
}

// Deliver starts delivering c once a slot is free, blocking until then. When
// ctx ends, no new attempt starts: an attempt under way finishes, and a batch
// not delivered is released for another worker to re-drive.
func (d *Deliverer) Deliver(ctx context.Context, c buffer.Claim) {
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		d.release(c)
		return
	}
	d.wg.Add(1)
	go func() {
		defer func() { <-d.sem; d.wg.Done() }()
		d.run(ctx, c)
	}()
}

// Wait blocks until every delivery started has ended.
func (d *Deliverer) Wait() { d.wg.Wait() }

func (d *Deliverer) run(ctx context.Context, c buffer.Claim) {
	log := d.opts.Logger.With("conversation", c.Key, "batch_id", batch.ID(c.Key, c.Generation))
	// I/O outlives ctx: a shutdown lets the attempt under way finish.
	io := context.WithoutCancel(ctx)
	done := map[string]bool{}
	for failures := 0; ; {
		n, err := d.attempt(io, c, done, log)
		if err == nil {
			return
		}
		if errors.Is(err, buffer.ErrLost) {
			log.Info("batch taken over by another worker", "err", err)
			return
		}
		if sink.IsPermanent(err) || n >= d.opts.MaxAttempts {
			d.deadLetter(io, c, n, err, log)
			return
		}
		failures++
		wait := d.opts.Retry.Delay(failures)
		if ra, ok := sink.RetryAfterOf(err); ok && ra > wait {
			wait = min(ra, d.opts.Retry.Max)
		}
		log.Warn("delivery failed, retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		if err := d.holdFor(ctx, c, wait); err != nil {
			if errors.Is(err, buffer.ErrLost) {
				return
			}
			d.release(c)
			return
		}
	}
}

// attempt delivers c once to the sinks not yet in done, and commits it when
// all have it. It returns the attempt's number.
func (d *Deliverer) attempt(ctx context.Context, c buffer.Claim, done map[string]bool, log *slog.Logger) (int, error) {
	n, err := d.buf.Renew(ctx, c, true)
	if err != nil {
		return 0, err
	}
	b, err := batch.New(c.Key, c.Generation, c.Reason, c.FlushedAt, n, c.Messages)
	if err != nil {
		return n, sink.Permanent(err)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return n, sink.Permanent(err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := d.keepLease(ctx, c, cancel)
	err = sink.Deliver(ctx, d.opts.Sinks, b, body, done)
	stop()
	if cause := context.Cause(ctx); errors.Is(cause, buffer.ErrLost) {
		return n, cause
	}
	if err != nil {
		return n, err
	}
	return n, d.commit(ctx, c, b, log)
}

// deadLetter gives up on c after attempt n failed with err.
func (d *Deliverer) deadLetter(ctx context.Context, c buffer.Claim, n int, err error, log *slog.Logger) {
	res, dlErr := d.buf.DeadLetter(ctx, c, err.Error())
	if dlErr != nil {
		log.Error("dead-letter failed; the lease will expire and the batch is retried", "err", dlErr)
		return
	}
	log.Error("batch dead-lettered", "attempt", n, "permanent", sink.IsPermanent(err), "err", err)
	if res.Next >= 0 {
		d.opts.OnCommitted(res.Next, res.Now)
	}
}

// commit records the delivery, retrying Redis errors while the lease lasts.
// Should it never succeed, the lease runs out and the same batch is
// delivered again: the receiver dedupes it by batch_id.
func (d *Deliverer) commit(ctx context.Context, c buffer.Claim, b batch.Batch, log *slog.Logger) error {
	deadline := time.Now().Add(d.buf.Lease())
	for i := 1; ; i++ {
		res, err := d.buf.Commit(ctx, c)
		if err == nil {
			log.Debug("batch delivered", "messages", len(b.Messages), "attempt", b.Attempt, "reason", b.Reason)
			if res.Next >= 0 {
				d.opts.OnCommitted(res.Next, res.Now)
			}
			return nil
		}
		if errors.Is(err, buffer.ErrLost) || time.Now().After(deadline) {
			log.Warn("delivered batch not committed; it will be delivered again", "err", err)
			return buffer.ErrLost
		}
		if backoff.Sleep(ctx, backoff.Policy{Min: 50 * time.Millisecond, Max: time.Second}.Delay(i)) != nil {
			return ctx.Err()
		}
	}
}

// keepLease renews c's lease every third of it until stopped; when the lease
// is lost it cancels the attempt with buffer.ErrLost.
func (d *Deliverer) keepLease(ctx context.Context, c buffer.Claim, cancel context.CancelCauseFunc) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d.buf.Lease() / 3)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := d.buf.Renew(ctx, c, false); errors.Is(err, buffer.ErrLost) {
					cancel(err)
					return
				}
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// holdFor waits d while keeping c's lease; it returns ctx's error when ctx
// ends first, or buffer.ErrLost when the lease was lost.
func (d *Deliverer) holdFor(ctx context.Context, c buffer.Claim, wait time.Duration) error {
	end := time.Now().Add(wait)
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		if err := backoff.Sleep(ctx, min(left, d.buf.Lease()/3)); err != nil {
			return err
		}
		if _, err := d.buf.Renew(context.WithoutCancel(ctx), c, false); errors.Is(err, buffer.ErrLost) {
			return err
		}
	}
}

// release gives c up for another worker to re-drive at once.
func (d *Deliverer) release(c buffer.Claim) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := d.buf.Release(ctx, c); err != nil && !errors.Is(err, buffer.ErrLost) {
		d.opts.Logger.Warn("release failed; the lease will expire", "conversation", c.Key, "err", err)
	}
}
