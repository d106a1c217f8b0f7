package scheduler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/scheduler"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// claimed buffers one message in conversation key, waits for its deadline
// and claims it for owner.
func claimed(t *testing.T, st *store.Store, key, owner string) *store.Claim {
	t.Helper()
	ctx := context.Background()
	_, err := st.Append(ctx, key, key+"-m1", []byte(`{"id":"`+key+`-m1","text":"hi"}`), true)
	require.NoError(t, err)
	f := st.FlushDue(ctx, []string{key}, owner)[0]
	require.NoError(t, f.Err)
	require.NotNil(t, f.Claim, "claimed: %s", f.Result)
	return f.Claim
}

// A batch whose worker died (its lease ran out) is re-driven once, as the
// same batch, with the next attempt counted; a batch still held is left
// alone.
func TestReclaimer_RedrivesAnExpiredLeaseOnce(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "reclaimer")
	opts := testenv.StoreOptions()
	opts.Lease = 300 * time.Millisecond
	st := store.New(testenv.Redis(t, ns), ns, opts)
	dead := claimed(t, st, "u1", "dead-worker") // never renewed
	alive := claimed(t, st, "u2", "live-worker")
	keepCtx, stopKeeping := context.WithCancel(context.Background())
	t.Cleanup(stopKeeping)
	go func() { _ = alive.Keep(keepCtx) }()

	var mu sync.Mutex
	var got []*store.Claim
	deliver := func(ctx context.Context, c *store.Claim) bool {
		require.NoError(t, c.Begin(ctx), "the take-over still holds the batch")
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
		_, err := c.Commit(ctx)
		require.NoError(t, err)
		return true
	}
	// Two reclaimers race, as two workers would.
	for _, owner := range []string{"w1", "w2"} {
		r := scheduler.NewReclaimer(st, deliver, scheduler.Options{Owner: owner, Interval: 50 * time.Millisecond})
		require.NoError(t, r.Start(context.Background()))
		t.Cleanup(r.Stop)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(4 * opts.Lease) // more scans: a second take-over, or one of the held batch, would show now
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 1, "only the expired lease, once")
	c := got[0]
	require.Equal(t, dead.ID(), c.ID(), "the same batch")
	require.Equal(t, dead.Batch.Messages, c.Batch.Messages)
	require.Equal(t, 2, c.Batch.Attempt, "the take-over's delivery counts the next attempt when it begins")
	require.Contains(t, []string{"w1", "w2"}, c.Owner)
	require.ErrorIs(t, dead.Release(context.Background()), store.ErrLost, "the dead worker holds nothing any more")
}
