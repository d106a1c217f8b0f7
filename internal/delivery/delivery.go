// Package delivery hands claimed batches to the sinks, with the retry
// policy: a failed attempt is retried after the sink backoff
// (RETRY_BACKOFF_MIN up to RETRY_BACKOFF_MAX, or the receiver's Retry-After),
// until MAX_ATTEMPTS or a permanent failure dead-letters the batch; once
// every sink has it, the batch is committed.
//
// The lease is not this package's: a store.Claim owns it (Keep renews it,
// Commit, DeadLetter and Release end it, and their Redis errors are retried
// by the claim for as long as the lease lasts). What this package keeps is
// the one rule the store cannot see: a batch runs at most once at a time in
// this process.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/jsonenc"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/tracectx"
	"github.com/lullhq/lull/internal/valutil"
)

// Options configure a Deliverer. Sinks, Concurrency, Retry and MaxAttempts
// are required (their defaults are the configuration's); New panics without
// them.
type Options struct {
	Sinks       []sink.Sink
	Concurrency int            // batches delivered at once (DELIVERY_CONCURRENCY)
	Retry       backoff.Policy // wait between failed attempts (RETRY_BACKOFF_MIN, RETRY_BACKOFF_MAX)
	MaxAttempts int            // attempts before a batch is dead-lettered (MAX_ATTEMPTS)
	Logger      *slog.Logger   // default slog.Default()
	Observer    Observer       // hears every sink's deliveries; nil hears nothing
}

// Observer hears each sink's part of every delivery attempt (metrics.Worker
// is one). Its methods are called on the delivering goroutines: they must
// be quick.
type Observer interface {
	// SinkCalled: one delivery of a batch to sink ended, successful or
	// not, took after it began.
	SinkCalled(sink string, took time.Duration)
	// SinkDone: sink's result in one attempt, one of Results.
	SinkDone(sink, result string)
}

// The results a sink's part of an attempt has.
const (
	ResultOK    = "ok"    // the sink has the batch
	ResultRetry = "retry" // the sink failed; the batch is retried (here, or by another worker)
	ResultDead  = "dead"  // the sink failed and the batch is dead-lettered
	// ResultDiscarded: the sink's receiver discarded the batch as stale
	// (409 + X-Lull-Discard); its messages go to the conversation's next batch.
	ResultDiscarded = "discarded"
)

// Results lists every result Observer.SinkDone hears.
var Results = []string{ResultOK, ResultRetry, ResultDead, ResultDiscarded}

type noObserver struct{}

func (noObserver) SinkCalled(string, time.Duration) {}
func (noObserver) SinkDone(string, string)          {}

// timedSink tells the Observer how long each of its sink's deliveries took.
type timedSink struct {
	sink.Sink
	obs Observer
}

func (t timedSink) Deliver(ctx context.Context, b batch.Batch, body []byte) error {
	start := time.Now()
	err := t.Sink.Deliver(ctx, b, body)
	t.obs.SinkCalled(t.Name(), time.Since(start))
	return err
}

func (o Options) mustValidate() {
	if len(o.Sinks) == 0 || o.Concurrency <= 0 || o.Retry.Min <= 0 || o.Retry.Max < o.Retry.Min || o.MaxAttempts <= 0 {
		panic(fmt.Sprintf("delivery: invalid options (sinks %d, concurrency %d, retry %v..%v, max attempts %d): take them from the configuration",
			len(o.Sinks), o.Concurrency, o.Retry.Min, o.Retry.Max, o.MaxAttempts))
	}
}

// Deliverer delivers claimed batches, each in its own goroutine, at most
// Concurrency at once.
type Deliverer struct {
	opts Options
	sem  chan struct{}
	wg   sync.WaitGroup

	mu sync.Mutex
	// running holds the ids of the batches this process is delivering (or
	// waiting for a slot to deliver). A batch whose lease ran out while its
	// delivery still runs here can be reclaimed by this same worker's
	// reclaimer; it must not be delivered a second time alongside the first.
	running map[string]struct{}
}

// New returns a Deliverer. It panics on invalid options.
func New(opts Options) *Deliverer {
	opts.mustValidate()
	opts.Logger = valutil.ValOrDefault(opts.Logger, slog.Default())
	if opts.Observer != nil {
		timed := make([]sink.Sink, len(opts.Sinks))
		for i, s := range opts.Sinks {
			timed[i] = timedSink{Sink: s, obs: opts.Observer}
		}
		opts.Sinks = timed
	}
	opts.Observer = valutil.ValOrDefault[Observer](opts.Observer, noObserver{})
	return &Deliverer{opts: opts, sem: make(chan struct{}, opts.Concurrency), running: map[string]struct{}{}}
}

// Deliver starts delivering c once a slot is free, blocking until then, and
// reports whether it did. It starts nothing when a delivery of the same batch
// already runs in this process. When ctx ends, no new attempt starts: an
// attempt under way finishes, and a batch not delivered is released for
// another worker to re-drive.
func (d *Deliverer) Deliver(ctx context.Context, c *store.Claim) bool {
	id := c.ID()
	if ctx.Err() != nil {
		d.release(c) // shutting down: another worker re-drives it at once
		return false
	}
	d.mu.Lock()
	if _, dup := d.running[id]; dup {
		d.mu.Unlock()
		d.opts.Logger.Info("batch already being delivered by this worker; not starting it twice",
			"conversation", c.Key, "batch_id", id, "attempt", c.Batch.Attempt)
		return false
	}
	d.running[id] = struct{}{}
	d.mu.Unlock()

	slot := false
	select {
	case d.sem <- struct{}{}:
		slot = true
	case <-ctx.Done():
	}
	// A free slot and the end of ctx may come together (select picks
	// either): the end wins.
	if ctx.Err() != nil {
		if slot {
			<-d.sem
		}
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
		d.run(ctx, c, leave)
	}()
	return true
}

// Wait blocks until every delivery started has ended, or until ctx does; it
// returns ctx's error then.
func (d *Deliverer) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Deliverer) finished(id string) {
	d.mu.Lock()
	delete(d.running, id)
	d.mu.Unlock()
}

// run delivers c until it is committed, dead-lettered, released or lost.
// The claim's lease is kept the whole time, across attempts and the waits
// between them; losing it cancels the attempt under way.
func (d *Deliverer) run(ctx context.Context, c *store.Claim, leave func()) {
	log := d.opts.Logger.With("conversation", c.Key, "batch_id", c.ID())
	if id := tracectx.TraceID(c.Batch.Traceparent()); id != "" {
		log = log.With("trace_id", id)
	}
	// I/O outlives ctx: a shutdown lets the attempt under way finish.
	held, lose := context.WithCancelCause(context.WithoutCancel(ctx))
	keeping, stopKeeping := context.WithCancel(held)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		if err := c.Keep(keeping); err != nil {
			lose(err)
		}
	}()
	defer func() { stopKeeping(); <-kept; lose(nil) }()
	// release ends the claim for another worker; the keeper must be done
	// first, or a renewal could undo it.
	release := func() { stopKeeping(); <-kept; d.release(c) }

	if ctx.Err() != nil {
		release() // shutting down before the first attempt
		return
	}
	if err := c.Begin(ctx); err != nil {
		d.ended(c, err, log, leave, release)
		return
	}
	if c.Unreadable != nil {
		d.giveUp(held, c, sink.Permanent(c.Unreadable), log)
		return
	}
	done := map[string]bool{} // sinks that have the batch
	for failures := 0; ; {
		pending := d.pendingSinks(done)
		err := d.attempt(held, c, done, log)
		d.observe(pending, done, d.failedAs(err, c))
		switch {
		case err == nil:
			return
		case sink.IsDiscard(err):
			d.discard(held, c, err, log)
			return
		case errors.Is(err, store.ErrLost):
			log.Info("batch taken over by another worker", "err", err)
			return
		case errors.Is(err, store.ErrLeaseRunOut):
			log.Warn("delivered batch not committed: redis unreachable for longer than the lease; it will be delivered again", "err", err)
			leave() // as in ended
			release()
			return
		case d.givesUp(err, c):
			d.giveUp(held, c, err, log)
			return
		}
		failures++
		wait := d.opts.Retry.Delay(failures)
		if ra, ok := sink.RetryAfterOf(err); ok && ra > wait {
			wait = min(ra, d.opts.Retry.Max)
		}
		log.Warn("delivery failed, retrying", "err", err, "attempt", c.Batch.Attempt, "retry_in", wait.Round(time.Millisecond))
		if ferr := c.Failed(held, err.Error()); ferr != nil && !errors.Is(ferr, store.ErrLost) {
			log.Debug("recording the failed attempt", "err", ferr)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			release() // shutting down
			return
		case <-held.Done():
			timer.Stop()
			log.Info("batch taken over by another worker", "err", context.Cause(held))
			return
		case <-timer.C:
		}
		if _, err := c.NextAttempt(ctx); err != nil {
			d.ended(c, err, log, leave, release)
			return
		}
	}
}

// givesUp reports whether an attempt that failed with err dead-letters c:
// a permanent failure, or the last attempt. A batch lost to another worker
// or to a Redis outage longer than the lease is delivered again instead.
func (d *Deliverer) givesUp(err error, c *store.Claim) bool {
	switch {
	case err == nil, errors.Is(err, store.ErrLost), errors.Is(err, store.ErrLeaseRunOut):
		return false
	}
	return sink.IsPermanent(err) || c.Batch.Attempt >= d.opts.MaxAttempts
}

// pendingSinks is the names of the sinks not yet in done.
func (d *Deliverer) pendingSinks(done map[string]bool) []string {
	var out []string
	for _, s := range d.opts.Sinks {
		if !done[s.Name()] {
			out = append(out, s.Name())
		}
	}
	return out
}

// observe tells the Observer each pending sink's result in the attempt
// that just ended: ok once done has it, else failed.
func (d *Deliverer) observe(pending []string, done map[string]bool, failed string) {
	for _, name := range pending {
		if done[name] {
			d.opts.Observer.SinkDone(name, ResultOK)
		} else {
			d.opts.Observer.SinkDone(name, failed)
		}
	}
}

// failedAs is the result of the sinks that failed an attempt with err.
func (d *Deliverer) failedAs(err error, c *store.Claim) string {
	switch {
	case sink.IsDiscard(err):
		return ResultDiscarded
	case d.givesUp(err, c):
		return ResultDead
	}
	return ResultRetry
}

// discard ends c as its receiver asked: the batch is stale, its messages go
// back in front of the conversation's buffer for the next batch (which
// names c in replaces).
func (d *Deliverer) discard(ctx context.Context, c *store.Claim, why error, log *slog.Logger) {
	res, err := c.Discard(ctx)
	switch {
	case err == nil:
		log.Info("batch discarded by its receiver as stale; its messages go to the conversation's next batch",
			"messages", res.Messages, "attempt", c.Batch.Attempt, "err", why)
	case errors.Is(err, store.ErrLost):
		log.Info("batch taken over by another worker before its discard", "err", err)
	default:
		log.Warn("discard failed; the lease will expire and the batch is delivered again", "err", err)
	}
}

// ended handles the error of a claim call made before an attempt (Begin,
// NextAttempt): the batch was lost, Redis was unreachable for the whole
// lease, or ctx ended (shutting down).
func (d *Deliverer) ended(c *store.Claim, err error, log *slog.Logger, leave, release func()) {
	switch {
	case errors.Is(err, store.ErrLost):
		log.Info("batch taken over by another worker", "err", err)
	case errors.Is(err, store.ErrLeaseRunOut):
		log.Warn("redis unreachable for longer than the lease; the batch will be re-driven once it is back", "err", err)
		// This worker's reclaimer may have taken the batch over just now
		// and been refused, as it still ran here: leave the running set
		// first, then release it (if Redis is back) so it is re-driven at
		// once instead of after another lease.
		leave()
		release()
	default:
		release()
	}
}

// attempt delivers c once to the sinks not yet in done, and commits it when
// all have it.
func (d *Deliverer) attempt(ctx context.Context, c *store.Claim, done map[string]bool, log *slog.Logger) error {
	body, err := jsonenc.Marshal(c.Batch)
	if err != nil {
		return sink.Permanent(err)
	}
	err = sink.Deliver(ctx, d.opts.Sinks, c.Batch, body, done)
	if cause := context.Cause(ctx); errors.Is(cause, store.ErrLost) {
		return cause
	}
	if err != nil {
		return err
	}
	// Should the commit never succeed, the lease runs out and the same
	// batch is delivered again: the receiver dedupes it by batch_id.
	res, err := c.Commit(ctx)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, store.ErrLost) {
		err = cause // the keeper found the batch gone while the commit was retried
	}
	switch {
	case errors.Is(err, store.ErrLost):
		log.Warn("batch taken over by another worker before its commit; it will be delivered again", "attempt", c.Batch.Attempt, "err", err)
		return err
	case err != nil:
		return err
	case res.Already:
		// A retry whose first call was applied but whose reply was lost
		// (a timeout, a dropped connection): the batch is done.
		log.Debug("batch delivered; it was already committed", "messages", len(c.Batch.Messages), "attempt", c.Batch.Attempt, "reason", c.Batch.Reason)
	default:
		log.Debug("batch delivered", "messages", len(c.Batch.Messages), "attempt", c.Batch.Attempt, "reason", c.Batch.Reason)
	}
	return nil
}

// giveUp dead-letters c after its attempt failed with err.
func (d *Deliverer) giveUp(ctx context.Context, c *store.Claim, err error, log *slog.Logger) {
	if dlErr := c.DeadLetter(ctx, err.Error()); dlErr != nil {
		log.Error("dead-letter failed; the lease will expire and the batch is retried", "attempt", c.Batch.Attempt, "err", dlErr)
		return
	}
	log.Error("batch dead-lettered", "attempt", c.Batch.Attempt, "permanent", sink.IsPermanent(err), "err", err)
}

// release gives c up for another worker to re-drive at once.
func (d *Deliverer) release(c *store.Claim) {
	if err := c.Release(context.Background()); err != nil && !errors.Is(err, store.ErrLost) {
		d.opts.Logger.Warn("release failed; the lease will expire", "conversation", c.Key, "batch_id", c.ID(), "err", err)
	}
}
