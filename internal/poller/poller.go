// Package poller finds conversations whose deadline has passed and claims
// them as batches, and re-drives batches whose lease expired. Any number of
// pollers (one per worker) may run: the scripts let exactly one win a claim.
package poller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/store"
)

// Options configure a Poller.
type Options struct {
	Owner    string        // this worker's id, recorded on its claims
	Interval time.Duration // longest sleep between scans (default 1s)
	Limit    int           // due conversations taken per shard and scan (default 100)
	// RedisTimeout bounds every Redis call (default 2s). Without a deadline
	// the client retries a call on a dead connection (its SCRIPT LOAD
	// first) forever, and the poller hangs without a word.
	RedisTimeout time.Duration
	Logger       *slog.Logger
}

// Poller claims due batches and hands them to deliver.
type Poller struct {
	buf     *store.Store
	deliver func(context.Context, store.Claim) bool
	opts    Options

	mu     sync.Mutex
	wakeAt time.Time // earliest wake-up asked for since the last scan began
	wake   chan struct{}
}

// New returns a Poller over buf; deliver is called for every claimed batch
// and may block (the poller waits: that is its back pressure). It reports
// whether it started a delivery: false when, say, this worker still runs
// the same batch, whose lease ran out meanwhile.
func New(buf *store.Store, deliver func(context.Context, store.Claim) bool, opts Options) *Poller {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Limit <= 0 {
		opts.Limit = 100
	}
	if opts.RedisTimeout <= 0 {
		opts.RedisTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Poller{buf: buf, deliver: deliver, opts: opts, wake: make(chan struct{}, 1)}
}

// WakeAt asks for a scan at deadline, given on the Redis clock with the
// Redis time now it was read at (both Unix ms).
func (p *Poller) WakeAt(deadline, now int64) {
	if deadline < 0 {
		return
	}
	at := time.Now().Add(time.Duration(deadline-now)*time.Millisecond + time.Millisecond)
	p.mu.Lock()
	earlier := p.wakeAt.IsZero() || at.Before(p.wakeAt)
	if earlier {
		p.wakeAt = at
	}
	p.mu.Unlock()
	if earlier {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// Run scans until ctx is done: at every deadline it was told of, at the
// earliest deadline found in Redis, and at least every Interval (which also
// finds expired leases).
func (p *Poller) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastRecover := time.Time{}
	retry := backoff.Policy{Min: 100 * time.Millisecond, Max: p.opts.Interval}
	failures := 0
	for {
		p.mu.Lock()
		p.wakeAt = time.Time{}
		p.mu.Unlock()

		next, more, err := p.scan(ctx)
		if err == nil && time.Since(lastRecover) >= p.opts.Interval {
			err = p.recover(ctx)
			lastRecover = time.Now()
		}
		planned := time.Now().Add(p.opts.Interval)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			p.opts.Logger.Warn("poll failed", "err", err, "attempt", failures)
			planned = time.Now().Add(retry.Delay(failures))
		case more:
			failures = 0
			planned = time.Now()
		default:
			failures = 0
			if !next.IsZero() && next.Before(planned) {
				planned = next
			}
		}
		p.mu.Lock()
		if p.wakeAt.IsZero() || planned.Before(p.wakeAt) {
			p.wakeAt = planned
		}
		p.mu.Unlock()

		if !p.sleep(ctx, timer) {
			return nil
		}
	}
}

// sleep waits until wakeAt (which WakeAt may move earlier); false when ctx is done.
func (p *Poller) sleep(ctx context.Context, timer *time.Timer) bool {
	for {
		p.mu.Lock()
		d := time.Until(p.wakeAt)
		p.mu.Unlock()
		if d <= 0 {
			return true
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-p.wake:
			timer.Stop()
		}
	}
}

// scan claims every due conversation. It returns when the next one is due
// (zero: none) and whether a shard had more due than Limit.
func (p *Poller) scan(ctx context.Context) (next time.Time, more bool, err error) {
	var sched []store.Schedule
	err = p.call(ctx, func(ctx context.Context) (err error) {
		sched, err = p.buf.Due(ctx, p.opts.Limit)
		return err
	})
	if err != nil {
		return time.Time{}, false, err
	}
	var convs []string
	for _, s := range sched {
		if s.Next >= 0 {
			at := time.Now().Add(time.Duration(s.Next-s.Now)*time.Millisecond + time.Millisecond)
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		more = more || len(s.Due) >= p.opts.Limit
		for _, d := range s.Due {
			convs = append(convs, d.Key)
		}
	}
	if len(convs) == 0 {
		return next, more, nil
	}
	var gens []string
	err = p.call(ctx, func(ctx context.Context) (err error) {
		gens, err = p.buf.Generations(ctx, convs)
		return err
	})
	if err != nil {
		return next, more, err
	}
	// A flush that timed out may still have claimed its batch; nobody
	// delivers it then until its lease runs out and recover re-drives it.
	flushCtx, cancel := context.WithTimeout(ctx, p.opts.RedisTimeout)
	outs := p.buf.FlushMany(flushCtx, convs, gens, p.opts.Owner)
	cancel()
	for i, o := range outs {
		switch {
		case o.Err != nil:
			p.opts.Logger.Warn("flush failed", "conversation", convs[i], "err", o.Err)
			err = o.Err
		case o.Result == "":
			p.deliver(ctx, o.Claim)
		case o.Result == store.FlushStale:
			more = true // its new deadline may already have passed
		}
	}
	return next, more, err
}

// recover re-drives batches whose lease expired: their worker died or hung.
func (p *Poller) recover(ctx context.Context) error {
	var sched []store.Schedule
	err := p.call(ctx, func(ctx context.Context) (err error) {
		sched, err = p.buf.Expired(ctx, p.opts.Limit)
		return err
	})
	if err != nil {
		return err
	}
	for _, s := range sched {
		for _, d := range s.Due {
			var c store.Claim
			var ok bool
			err := p.call(ctx, func(ctx context.Context) (err error) {
				c, ok, err = p.buf.Reclaim(ctx, d.Key, p.opts.Owner)
				return err
			})
			if err != nil {
				return err
			}
			// deliver refuses a batch this worker still delivers (its lease
			// ran out while Redis was failing, say): the delivery under way
			// goes on, renewing the lease this reclaim gave it back.
			if ok && p.deliver(ctx, c) {
				p.opts.Logger.Info("lease expired, re-driving batch", "conversation", c.Key,
					"batch_id", batch.ID(c.Key, c.Generation), "attempt", c.Attempt)
			}
		}
	}
	return nil
}

// call runs one Redis operation under RedisTimeout. Only the Redis call is
// bounded: deliver gets the poller's own ctx, which a delivery outlives.
func (p *Poller) call(ctx context.Context, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.RedisTimeout)
	defer cancel()
	return op(ctx)
}
