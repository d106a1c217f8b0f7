package scheduler

import (
	"context"
	"time"

	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/store"
)

// Reclaimer takes expired leases over; it is a startstop.Service.
type Reclaimer struct {
	startstop.BaseStartStop
	st      *store.Store
	deliver Deliver
	opts    Options
}

// NewReclaimer returns a Reclaimer over st. It panics on invalid options.
func NewReclaimer(st *store.Store, deliver Deliver, opts Options) *Reclaimer {
	return &Reclaimer{st: st, deliver: deliver, opts: opts.mustValidate("reclaimer")}
}

// Start launches the scan loop; Stop ends it.
func (r *Reclaimer) Start(ctx context.Context) error { return r.StartFunc(ctx, r.run) }

func (r *Reclaimer) run(ctx context.Context) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		if err := r.Scan(ctx); err != nil && ctx.Err() == nil {
			r.opts.Logger.Warn("reclaim scan failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Scan takes every expired lease over once and re-drives its batch (its
// delivery counts the next attempt when it begins).
func (r *Reclaimer) Scan(ctx context.Context) error {
	sched, err := r.st.Expired(ctx, r.opts.Limit)
	if err != nil {
		return err
	}
	for _, sh := range sched {
		for _, d := range sh.Due {
			c, ok, err := r.st.Reclaim(ctx, d.Key, r.opts.Owner)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			r.opts.Observer.Reclaimed(c)
			// Read before deliver: the delivery owns c from then on.
			key, id, attempts := c.Key, c.ID(), c.Batch.Attempt
			// deliver refuses a batch this worker still delivers (its lease
			// ran out while Redis was failing, say): the delivery under way
			// goes on, renewing the lease this take-over gave it back.
			if r.deliver(ctx, c) {
				r.opts.Logger.Info("lease expired, re-driving batch", "conversation", key,
					"batch_id", id, "attempts_before", attempts)
			}
		}
	}
	return nil
}
