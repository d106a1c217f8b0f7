package poller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/poller"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

func TestPollers_EachBurstClaimedOnceAcrossPollers(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "poller")
	buf := store.New(testenv.Redis(t, ns), ns, store.Options{
		QuietWindow: 50 * time.Millisecond, MaxWait: time.Minute, MaxMessages: 100,
		DedupeWindow: time.Hour, TTL: time.Hour, Lease: time.Minute,
	})
	var mu sync.Mutex
	claims := map[string][]store.Claim{}
	deliver := func(ctx context.Context, c store.Claim) bool {
		mu.Lock()
		claims[c.Key] = append(claims[c.Key], c)
		mu.Unlock()
		_, err := buf.Commit(ctx, c)
		require.NoError(t, err)
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	pollers := make([]*poller.Poller, 3)
	for i := range pollers {
		pollers[i] = poller.New(buf, deliver, poller.Options{Owner: fmt.Sprint("w", i), Interval: 100 * time.Millisecond, Limit: 7})
		wg.Add(1)
		go func() { defer wg.Done(); _ = pollers[i].Run(ctx) }()
	}
	const users, perUser = 150, 3
	for m := range perUser {
		for u := range users {
			a, err := buf.Append(ctx, fmt.Sprint("user-", u), fmt.Sprint(u, "-", m), []byte(fmt.Sprintf(`{"id":"%d-%d"}`, u, m)), false)
			require.NoError(t, err)
			pollers[u%len(pollers)].WakeAt(a.Deadline, a.Now)
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, cs := range claims {
			for _, c := range cs {
				n += len(c.Messages)
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return count() >= users*perUser }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // two more scans: a duplicate claim would show now
	cancel()
	wg.Wait()
	seen := map[string]bool{}
	for key, cs := range claims {
		for _, c := range cs {
			require.Equal(t, key, c.Key)
			for _, m := range c.Messages {
				require.False(t, seen[string(m)], "message %s claimed twice", m)
				seen[string(m)] = true
			}
		}
	}
	require.Len(t, seen, users*perUser, "every message claimed exactly once")
}
