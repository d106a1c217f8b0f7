// Package scheduler turns Redis schedules into claims for delivery, with two
// services, each with its own loop and interval:
//
//   - the Scheduler scans every shard's due set, claims each conversation
//     whose deadline has passed (store.FlushDue) and hands the claims to
//     delivery. It wakes at the earliest deadline in Redis, at every
//     earlier deadline the store's Alarm reports, and at least every
//     Interval.
//   - the Reclaimer re-drives batches whose lease expired (their worker
//     died, hung, or lost Redis for a whole lease, or a dead letter was
//     replayed): every Interval it takes each expired lease over
//     (store.Reclaim, which counts the next attempt) and hands the same
//     batch to delivery again.
//
// Any number of them (one of each per worker) may run: the scripts let
// exactly one win each claim and each take-over.
package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/valutil"
)

// DefaultLimit is how many entries a scan takes per shard.
const DefaultLimit = 100

// Deliver takes a claim and reports whether it started its delivery; it
// may block (the scan waits: that is its back pressure), and it refuses a
// batch this worker still delivers.
type Deliver func(context.Context, *store.Claim) bool

// Options configure a Scheduler or a Reclaimer. Owner and Interval are
// required.
type Options struct {
	Owner string // this worker's id, recorded on its claims
	// Interval (POLL_INTERVAL) is the Scheduler's longest sleep between
	// scans, and the Reclaimer's time between scans.
	Interval time.Duration
	Limit    int          // entries taken per shard and scan (default DefaultLimit)
	Logger   *slog.Logger // default slog.Default()
	Observer Observer     // hears every claim; nil hears nothing
}

// Observer hears the claims (metrics.Worker is one). Its methods are called
// on the scan's goroutine, before the claim is handed to delivery: they
// must be quick, and must not keep c.
type Observer interface {
	// Flushed: the Scheduler claimed c for its deadline.
	Flushed(c *store.Claim)
	// Reclaimed: the Reclaimer took c over after its lease expired.
	Reclaimed(c *store.Claim)
}

type noObserver struct{}

func (noObserver) Flushed(*store.Claim)   {}
func (noObserver) Reclaimed(*store.Claim) {}

func (o Options) mustValidate(what string) Options {
	if o.Owner == "" || o.Interval <= 0 {
		panic(fmt.Sprintf("%s: owner %q and interval %v are required", what, o.Owner, o.Interval))
	}
	o.Limit = valutil.ValOrDefault(o.Limit, DefaultLimit)
	o.Logger = valutil.ValOrDefault(o.Logger, slog.Default())
	o.Observer = valutil.ValOrDefault[Observer](o.Observer, noObserver{})
	return o
}

// Scheduler claims due conversations; it is a startstop.Service.
type Scheduler struct {
	startstop.BaseStartStop
	st      *store.Store
	deliver Deliver
	opts    Options
}

// New returns a Scheduler over st, handing every claim to deliver. It
// panics on invalid options.
func New(st *store.Store, deliver Deliver, opts Options) *Scheduler {
	return &Scheduler{st: st, deliver: deliver, opts: opts.mustValidate("scheduler")}
}

// Start launches the scan loop. Stop ends it; the context deliveries were
// started with ends too, so none starts a new attempt.
func (s *Scheduler) Start(ctx context.Context) error { return s.StartFunc(ctx, s.run) }

func (s *Scheduler) run(ctx context.Context) {
	alarm := s.st.Alarm()
	timer := time.NewTimer(0)
	defer timer.Stop()
	retry := backoff.Policy{Min: 100 * time.Millisecond, Max: s.opts.Interval}
	for failures := 0; ; {
		// Deadlines reported from here on are new to this scan.
		alarm.Clear()
		next, more, err := s.Scan(ctx)
		planned := time.Now().Add(s.opts.Interval)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			s.opts.Logger.Warn("scan failed", "err", err, "attempt", failures)
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
		if !sleep(ctx, timer, alarm, planned) {
			return
		}
	}
}

// sleep waits until planned or the alarm's earliest deadline, whichever is
// first (the alarm may move earlier meanwhile); false when ctx is done.
func sleep(ctx context.Context, timer *time.Timer, alarm *store.Alarm, planned time.Time) bool {
	for {
		at := planned
		if e := alarm.Earliest(); !e.IsZero() && e.Before(at) {
			at = e
		}
		d := time.Until(at)
		if d <= 0 {
			return true
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-alarm.C():
			timer.Stop()
		}
	}
}

// Scan claims every due conversation once and hands the claims to deliver.
// It returns when the next one is due (zero: none) and whether a shard had
// more due than Limit.
func (s *Scheduler) Scan(ctx context.Context) (next time.Time, more bool, err error) {
	sched, err := s.st.Due(ctx, s.opts.Limit)
	if err != nil {
		return time.Time{}, false, err
	}
	var convs []string
	for _, sh := range sched {
		if sh.Next >= 0 {
			at := time.Now().Add(time.Duration(sh.Next-sh.Now)*time.Millisecond + time.Millisecond)
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		more = more || len(sh.Due) >= s.opts.Limit
		for _, d := range sh.Due {
			convs = append(convs, d.Key)
		}
	}
	if len(convs) == 0 {
		return next, more, nil
	}
	// A flush that timed out may still have claimed its batch; nobody
	// delivers it then until its lease runs out and a reclaimer re-drives it.
	for i, f := range s.st.FlushDue(ctx, convs, s.opts.Owner) {
		switch {
		case f.Err != nil:
			s.opts.Logger.Warn("flush failed", "conversation", convs[i], "err", f.Err)
			err = f.Err
		case f.Result == "":
			s.opts.Observer.Flushed(f.Claim)
			s.deliver(ctx, f.Claim)
		}
	}
	return next, more, err
}
