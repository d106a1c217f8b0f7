// Package reclaimer re-drives batches whose lease expired (their worker
// died, hung, or lost Redis for a whole lease, or a dead letter was
// replayed): every Interval it takes each expired lease over
// (store.Reclaim, which counts the next attempt) and hands the same batch
// to delivery again. Any number of reclaimers may run: the script lets
// exactly one win each take-over.
package reclaimer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/valutil"
)

// DefaultLimit is how many expired leases a scan takes per shard.
const DefaultLimit = 100

// Deliver takes a claim and reports whether it started its delivery; it
// refuses a batch this worker still delivers.
type Deliver func(context.Context, *store.Claim) bool

// Options configure a Reclaimer. Owner and Interval are required.
type Options struct {
	Owner    string        // this worker's id, recorded on its claims
	Interval time.Duration // time between scans (POLL_INTERVAL)
	Limit    int           // expired leases taken per shard and scan (default DefaultLimit)
	Logger   *slog.Logger  // default slog.Default()
}

// Reclaimer takes expired leases over; it is a startstop.Service.
type Reclaimer struct {
	startstop.BaseStartStop
	st      *store.Store
	deliver Deliver
	opts    Options
}

// New returns a Reclaimer over st. It panics on invalid options.
func New(st *store.Store, deliver Deliver, opts Options) *Reclaimer {
	if opts.Owner == "" || opts.Interval <= 0 {
		panic(fmt.Sprintf("reclaimer: owner %q and interval %v are required", opts.Owner, opts.Interval))
	}
	opts.Limit = valutil.ValOrDefault(opts.Limit, DefaultLimit)
	opts.Logger = valutil.ValOrDefault(opts.Logger, slog.Default())
	return &Reclaimer{st: st, deliver: deliver, opts: opts}
}

// Start launches the scan loop; Stop ends it.
func (r *Reclaimer) Start(ctx context.Context) error {
	ctx, ok, started, stopped := r.StartInit(ctx)
	if !ok {
		return nil
	}
	go func() {
		started()
		defer stopped()
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
	}()
	return nil
}

// Scan takes every expired lease over once and re-drives its batch.
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
			// deliver refuses a batch this worker still delivers (its lease
			// ran out while Redis was failing, say): the delivery under way
			// goes on, renewing the lease this take-over gave it back.
			if ok && r.deliver(ctx, c) {
				r.opts.Logger.Info("lease expired, re-driving batch", "conversation", c.Key,
					"batch_id", c.ID(), "attempt", c.Batch.Attempt)
			}
		}
	}
	return nil
}
