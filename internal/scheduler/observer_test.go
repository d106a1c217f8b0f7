package scheduler_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/scheduler"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// observed records the claims a scheduler.Observer hears.
type observed struct {
	mu                 sync.Mutex
	flushed, reclaimed []*store.Claim
}

func (o *observed) Flushed(c *store.Claim) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushed = append(o.flushed, c)
}

func (o *observed) Reclaimed(c *store.Claim) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reclaimed = append(o.reclaimed, c)
}

// The Scheduler reports each claim with the deadline it was made for, and
// the Reclaimer each take-over, on the store's clock.
func TestObserver_HearsFlushesWithTheirDeadlineAndTakeOvers(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "scheduler")
	var now atomic.Int64
	now.Store(1_000_000)
	opts := testenv.StoreOptions()
	opts.Now = now.Load
	st := store.New(testenv.Redis(t, ns), ns, opts)
	ctx := context.Background()
	_, err := st.Append(ctx, "u1", "m1", []byte(`{"id":"m1"}`), false)
	require.NoError(t, err)

	obs := &observed{}
	var held *store.Claim
	keep := func(_ context.Context, c *store.Claim) bool { held = c; return true } // never delivered: its lease runs out
	s := scheduler.New(st, keep, scheduler.Options{Owner: "w1", Interval: time.Hour, Observer: obs})
	_, _, err = s.Scan(ctx)
	require.NoError(t, err)
	require.Empty(t, obs.flushed, "not due yet")

	deadline := now.Load() + opts.QuietWindow.Milliseconds()
	now.Store(deadline + 250)
	_, _, err = s.Scan(ctx)
	require.NoError(t, err)
	require.Len(t, obs.flushed, 1)
	c := obs.flushed[0]
	require.Same(t, held, c, "heard before it was handed to delivery")
	require.Equal(t, deadline, c.Deadline)
	require.Equal(t, deadline+250, c.FlushedAtMs)

	r := scheduler.NewReclaimer(st, func(context.Context, *store.Claim) bool { return true }, scheduler.Options{Owner: "w2", Interval: time.Hour, Observer: obs})
	require.NoError(t, r.Scan(ctx))
	require.Empty(t, obs.reclaimed, "the lease still runs")
	now.Add(opts.Lease.Milliseconds() + 1)
	require.NoError(t, r.Scan(ctx))
	require.Len(t, obs.reclaimed, 1)
	require.Equal(t, c.ID(), obs.reclaimed[0].ID())
	require.Len(t, obs.flushed, 1, "a take-over is not a flush")
}
