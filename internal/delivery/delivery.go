// Package delivery hands claimed batches to the sinks: it counts attempts,
// keeps the lease alive while a delivery runs, retries failures with backoff
// and commits the batch once every sink has it.
//
// Two kinds of failure are kept apart. A sink failure is a delivery attempt
// that failed: it is counted, and retried after the sink backoff
// (RETRY_BACKOFF_MIN up to RETRY_BACKOFF_MAX). A Redis error (OOM, READONLY,
// a dead connection) says nothing about the sink: the Redis call alone is
// retried, quickly (redisRetry), counting nothing, so that deliveries resume
// within about a second of Redis coming back instead of sleeping out a sink
// backoff while holding every delivery slot.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/jsonenc"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/store"
)

// redisRetry is the wait between retries of a Redis call that failed: short
// and capped, since Redis is usually back within seconds (a failover, a
// memory spike) and every delivery waiting on it holds a slot the poller
// needs.
var redisRetry = backoff.Policy{Min: 50 * time.Millisecond, Max: time.Second}

// errLeaseRunOut means Redis could not be reached for as long as the lease
// lasts: the batch may belong to another worker by now, so the delivery
// stops and leaves it to whichever poller reclaims it first.
var errLeaseRunOut = errors.New("delivery: redis unreachable for the whole lease")

// Options configure a Deliverer.
type Options struct {
	Sinks       []sink.Sink
	Concurrency int            // batches delivered at once (default 64)
	Retry       backoff.Policy // wait between failed attempts
	MaxAttempts int            // attempts before a batch is dead-lettered (default 10)
	// RedisTimeout bounds every Redis call (default 2s). Without a deadline
	// the client retries a call on a dead connection forever, and the
	// delivery, its slot and in the end the poller, hang with it.
	RedisTimeout time.Duration
	Logger       *slog.Logger
	// OnCommitted is told the deadline of messages that arrived while the
	// batch was in flight (Redis clock, Unix ms; next is -1 when none).
	OnCommitted func(next, now int64)
}

// Deliverer delivers claimed batches, each in its own goroutine.
type Deliverer struct {
	buf  *store.Store
	opts Options
	sem  chan struct{}
	wg   sync.WaitGroup

	mu sync.Mutex
	// running holds the ids of the batches this process is delivering (or
	// waiting for a slot to deliver). A batch whose lease ran out while its
	// delivery still runs here can be reclaimed by this same worker's
	// poller; it must not be delivered a second time alongside the first.
	running map[string]struct{}
}

// New returns a Deliverer committing to buf.
func New(buf *store.Store, opts Options) *Deliverer {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.Retry.Min <= 0 {
		opts.Retry = backoff.Policy{Min: time.Second, Max: 5 * time.Minute}
	}
	if opts.RedisTimeout <= 0 {
		opts.RedisTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.OnCommitted == nil {
		opts.OnCommitted = func(int64, int64) {}
	}
	return &Deliverer{buf: buf, opts: opts, sem: make(chan struct{}, opts.Concurrency), running: map[string]struct{}{}}
}

// Deliver starts delivering c once a slot is free, blocking until then, and
// reports whether it did. It starts nothing when a delivery of the same batch
// (key and generation) already runs in this process. When ctx ends, no new
// attempt starts: an attempt under way finishes, and a batch not delivered
// is released for another worker to re-drive.
func (d *Deliverer) Deliver(ctx context.Context, c store.Claim) bool {
	handed := time.Now()
	id := batch.ID(c.Key, c.Generation)
	d.mu.Lock()
	if _, dup := d.running[id]; dup {
		d.mu.Unlock()
		d.opts.Logger.Info("batch already being delivered by this worker; not starting it twice",
			"conversation", c.Key, "batch_id", id, "attempt", c.Attempt)
		return false
	}
	d.running[id] = struct{}{}
	d.mu.Unlock()

	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		d.release(c)
		d.finished(id)
		return false
	}
	// leave takes the batch out of the running set, once: run may do it
	// early, and the id may by then belong to the next delivery of it.
	var once sync.Once
	leave := func() { once.Do(func() { d.finished(id) }) }
	d.wg.Add(1)
	go func() {
		defer func() { <-d.sem; leave(); d.wg.Done() }()
		d.run(ctx, c, handed, leave)
	}()
	return true
}

// Wait blocks until every delivery started has ended.
func (d *Deliverer) Wait() { d.wg.Wait() }

func (d *Deliverer) finished(id string) {
	d.mu.Lock()
	delete(d.running, id)
	d.mu.Unlock()
}

// hold is what a delivery knows of its lease: it surely lasts until the
// start of the last renewal that succeeded plus the lease (Redis set it from
// a later clock reading).
type hold struct {
	until atomic.Int64 // Unix ns
}

func (h *hold) renewed(start time.Time, lease time.Duration) {
	h.until.Store(start.Add(lease).UnixNano())
}

func (h *hold) expired() bool { return time.Now().UnixNano() >= h.until.Load() }

func (d *Deliverer) run(ctx context.Context, c store.Claim, handed time.Time, leave func()) {
	log := d.opts.Logger.With("conversation", c.Key, "batch_id", batch.ID(c.Key, c.Generation))
	// I/O outlives ctx: a shutdown lets the attempt under way finish.
	io := context.WithoutCancel(ctx)
	h := &hold{}
	h.renewed(handed, d.buf.Lease())
	done := map[string]bool{}
	for failures := 0; ; {
		n, err := d.count(ctx, c, h, log)
		switch {
		case errors.Is(err, store.ErrLost):
			log.Info("batch taken over by another worker", "err", err)
			return
		case errors.Is(err, errLeaseRunOut):
			log.Warn("redis unreachable for longer than the lease; the batch will be re-driven once it is back", "err", err)
			// This worker's poller may have reclaimed the batch just now and
			// been refused, as it still ran here: leave the running set
			// first, then release it (if Redis is back) so it is re-driven
			// at once instead of after another lease.
			leave()
			d.release(c)
			return
		case err != nil: // ctx ended while Redis was failing
			d.release(c)
			return
		}
		c.Attempt = n
		err = d.attempt(io, c, h, done, log)
		if err == nil {
			return
		}
		if errors.Is(err, store.ErrLost) || errors.Is(err, errLeaseRunOut) {
			return // logged where it happened
		}
		if sink.IsPermanent(err) || n >= d.opts.MaxAttempts {
			d.deadLetter(io, c, h, n, err, log)
			return
		}
		failures++
		wait := d.opts.Retry.Delay(failures)
		if ra, ok := sink.RetryAfterOf(err); ok && ra > wait {
			wait = min(ra, d.opts.Retry.Max)
		}
		log.Warn("delivery failed, retrying", "err", err, "attempt", n, "retry_in", wait.Round(time.Millisecond))
		if err := d.holdFor(ctx, c, h, wait, log); err != nil {
			if errors.Is(err, store.ErrLost) {
				log.Info("batch taken over by another worker", "err", err)
				return
			}
			d.release(c)
			return
		}
	}
}

// count renews c's lease and records the next delivery attempt, retrying
// Redis errors (see retryRedis); it returns the attempt's number.
func (d *Deliverer) count(ctx context.Context, c store.Claim, h *hold, log *slog.Logger) (int, error) {
	var n int
	err := d.retryRedis(ctx, h, log, "count attempt", func(ctx context.Context) error {
		var err error
		n, err = d.renew(ctx, c, true, h)
		return err
	})
	return n, err
}

// attempt delivers c once to the sinks not yet in done, and commits it when
// all have it.
func (d *Deliverer) attempt(ctx context.Context, c store.Claim, h *hold, done map[string]bool, log *slog.Logger) error {
	b, err := batch.New(c.Key, c.Generation, c.Reason, c.FlushedAt, c.Attempt, c.Messages)
	if err != nil {
		return sink.Permanent(err)
	}
	body, err := jsonenc.Marshal(b)
	if err != nil {
		return sink.Permanent(err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := d.keepLease(ctx, c, h, cancel, log)
	err = sink.Deliver(ctx, d.opts.Sinks, b, body, done)
	stop()
	if cause := context.Cause(ctx); errors.Is(cause, store.ErrLost) {
		log.Info("batch taken over by another worker during delivery", "err", cause)
		return cause
	}
	if err != nil {
		return err
	}
	return d.commit(ctx, c, h, b, log)
}

// deadLetter gives up on c after attempt n failed with err.
func (d *Deliverer) deadLetter(ctx context.Context, c store.Claim, h *hold, n int, err error, log *slog.Logger) {
	why := err.Error()
	var res store.Committed
	dlErr := d.retryRedis(ctx, h, log, "dead-letter", func(ctx context.Context) error {
		var err error
		res, err = d.buf.DeadLetter(ctx, c, why)
		return err
	})
	if dlErr != nil {
		log.Error("dead-letter failed; the lease will expire and the batch is retried", "attempt", n, "err", dlErr)
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
func (d *Deliverer) commit(ctx context.Context, c store.Claim, h *hold, b batch.Batch, log *slog.Logger) error {
	var res store.Committed
	err := d.retryRedis(ctx, h, log, "commit", func(ctx context.Context) error {
		var err error
		res, err = d.buf.Commit(ctx, c)
		return err
	})
	switch {
	case errors.Is(err, store.ErrLost):
		log.Warn("batch taken over by another worker before its commit; it will be delivered again", "attempt", b.Attempt, "err", err)
		return err
	case err != nil:
		log.Warn("delivered batch not committed; it will be delivered again", "attempt", b.Attempt, "err", err)
		return err
	case res.Already:
		// A retry whose first call was applied but whose reply was lost
		// (a timeout, a dropped connection): the batch is done.
		log.Debug("batch delivered; it was already committed", "messages", len(b.Messages), "attempt", b.Attempt, "reason", b.Reason)
	default:
		log.Debug("batch delivered", "messages", len(b.Messages), "attempt", b.Attempt, "reason", b.Reason)
	}
	if res.Next >= 0 {
		d.opts.OnCommitted(res.Next, res.Now)
	}
	return nil
}

// retryRedis runs op, each call bounded by RedisTimeout, until it succeeds
// or answers store.ErrLost. A Redis error is retried after redisRetry,
// never the sink backoff, and never counts as a delivery attempt. It gives
// up with errLeaseRunOut once the lease has run out without a renewal, and
// with ctx's error when ctx ends.
func (d *Deliverer) retryRedis(ctx context.Context, h *hold, log *slog.Logger, what string, op func(context.Context) error) error {
	for retry := 1; ; retry++ {
		err := d.call(ctx, op)
		if err == nil || errors.Is(err, store.ErrLost) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if h.expired() {
			return fmt.Errorf("%s: %w: %w", what, errLeaseRunOut, err)
		}
		wait := redisRetry.Delay(retry)
		// One warning per outage and delivery; the retries that follow
		// would repeat it every second for every batch in flight.
		level := slog.LevelDebug
		if retry == 1 {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "redis call failed, retrying", "op", what, "err", err, "retry", retry, "retry_in", wait.Round(time.Millisecond))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}

// call runs one Redis operation under RedisTimeout.
func (d *Deliverer) call(ctx context.Context, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.RedisTimeout)
	defer cancel()
	return op(ctx)
}

// renew extends c's lease once (counting an attempt when attempt is true)
// and, when it succeeds, moves h on.
func (d *Deliverer) renew(ctx context.Context, c store.Claim, attempt bool, h *hold) (int, error) {
	start := time.Now()
	var n int
	err := d.call(ctx, func(ctx context.Context) error {
		var err error
		n, err = d.buf.Renew(ctx, c, attempt)
		return err
	})
	if err == nil {
		h.renewed(start, d.buf.Lease())
	}
	return n, err
}

// keepLease renews c's lease every third of it until stopped; when the lease
// is lost it cancels the attempt with store.ErrLost. A renewal that fails
// on a Redis error is tried again at the next tick: two more chances before
// the lease runs out.
func (d *Deliverer) keepLease(ctx context.Context, c store.Claim, h *hold, cancel context.CancelCauseFunc, log *slog.Logger) (stop func()) {
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
				_, err := d.renew(ctx, c, false, h)
				if errors.Is(err, store.ErrLost) {
					cancel(err)
					return
				}
				if err != nil && ctx.Err() == nil {
					log.Warn("lease renewal failed; retrying at the next renewal", "attempt", c.Attempt, "err", err)
				}
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// holdFor waits wait while keeping c's lease; it returns ctx's error when
// ctx ends first, or store.ErrLost when the lease was lost. Renewals that
// fail on a Redis error are only tried again: the wait goes on.
func (d *Deliverer) holdFor(ctx context.Context, c store.Claim, h *hold, wait time.Duration, log *slog.Logger) error {
	end := time.Now().Add(wait)
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		if err := backoff.Sleep(ctx, min(left, d.buf.Lease()/3)); err != nil {
			return err
		}
		_, err := d.renew(context.WithoutCancel(ctx), c, false, h)
		if errors.Is(err, store.ErrLost) {
			return err
		}
		if err != nil {
			log.Warn("lease renewal failed; retrying at the next renewal", "attempt", c.Attempt, "err", err)
		}
	}
}

// release gives c up for another worker to re-drive at once.
func (d *Deliverer) release(c store.Claim) {
	err := d.call(context.Background(), func(ctx context.Context) error { return d.buf.Release(ctx, c) })
	if err != nil && !errors.Is(err, store.ErrLost) {
		d.opts.Logger.Warn("release failed; the lease will expire", "conversation", c.Key,
			"batch_id", batch.ID(c.Key, c.Generation), "err", err)
	}
}
