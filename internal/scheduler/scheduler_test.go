package scheduler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/scheduler"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// Three schedulers over one store, woken by its Alarm only through the
// store's own appends: every message is claimed exactly once.
func TestSchedulers_EachBurstClaimedOnceAcrossSchedulers(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "scheduler")
	opts := testenv.StoreOptions()
	opts.QuietWindow, opts.Lease = 50*time.Millisecond, time.Minute
	// One store per scheduler, as one per worker process: each hears only
	// the deadlines its own appends set.
	stores := make([]*store.Store, 3)
	for i := range stores {
		stores[i] = store.New(testenv.Redis(t, ns), ns, opts)
	}
	var mu sync.Mutex
	claims := map[string][]*store.Claim{}
	deliver := func(ctx context.Context, c *store.Claim) bool {
		mu.Lock()
		claims[c.Key] = append(claims[c.Key], c)
		mu.Unlock()
		_, err := c.Commit(ctx)
		require.NoError(t, err)
		return true
	}
	for i, st := range stores {
		s := scheduler.New(st, deliver, scheduler.Options{Owner: fmt.Sprint("w", i), Interval: 100 * time.Millisecond, Limit: 7})
		require.NoError(t, s.Start(context.Background()))
		t.Cleanup(s.Stop)
	}
	ctx := context.Background()
	const users, perUser = 150, 3
	for m := range perUser {
		for u := range users {
			_, err := stores[u%len(stores)].Append(ctx, fmt.Sprint("user-", u), fmt.Sprint(u, "-", m), []byte(fmt.Sprintf(`{"id":"%d-%d"}`, u, m)), false)
			require.NoError(t, err)
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, cs := range claims {
			for _, c := range cs {
				n += len(c.Batch.Messages)
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return count() >= users*perUser }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // two more scans: a duplicate claim would show now
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for key, cs := range claims {
		for _, c := range cs {
			require.Equal(t, key, c.Key)
			for _, m := range c.Batch.Messages {
				require.False(t, seen[m.ID], "message %s claimed twice", m.ID)
				seen[m.ID] = true
			}
		}
	}
	require.Len(t, seen, users*perUser, "every message claimed exactly once")
}

// The Alarm wakes a scheduler at a deadline long before its interval.
func TestScheduler_AlarmWakesItBeforeTheInterval(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "scheduler")
	opts := testenv.StoreOptions()
	opts.QuietWindow = 100 * time.Millisecond
	st := store.New(testenv.Redis(t, ns), ns, opts)
	claimed := make(chan time.Time, 1)
	s := scheduler.New(st, func(_ context.Context, c *store.Claim) bool {
		at := time.Now()
		_, err := c.Commit(context.Background()) // not the scheduler's: the test's end stops it
		require.NoError(t, err)
		claimed <- at
		return true
	}, scheduler.Options{Owner: "w1", Interval: time.Hour})
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(s.Stop)
	time.Sleep(50 * time.Millisecond) // the first scan found nothing: it sleeps an hour
	start := time.Now()
	_, err := st.Append(context.Background(), "u1", "m1", []byte(`{"id":"m1"}`), false)
	require.NoError(t, err)
	select {
	case at := <-claimed:
		took := at.Sub(start)
		require.GreaterOrEqual(t, took, opts.QuietWindow, "not before the deadline")
		require.Less(t, took, 2*time.Second, "woken by the alarm, not the hour")
	case <-time.After(5 * time.Second):
		t.Fatal("the alarm did not wake the scheduler")
	}
}
