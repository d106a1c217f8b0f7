package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/scheduler"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// A Redis whose connection is dead makes a scan (and a reclaim scan) fail
// within the Redis timeout: the client would otherwise retry the script
// load it sends first forever, and the scheduler would hang without a word.
func TestScan_DeadRedisConnectionFailsWithinTheTimeout(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedisServer(t)
	client, freeze := redis.Client, func() { redis.Freeze(t) }
	ns := testenv.Namespace(t, "scheduler")
	const timeout = 300 * time.Millisecond
	opts := testenv.StoreOptions()
	opts.QuietWindow, opts.RedisTimeout = time.Millisecond, timeout
	st := store.New(client, ns, opts)
	refuse := func(context.Context, *store.Claim) bool { return false }
	s := scheduler.New(st, refuse, scheduler.Options{Owner: "w1", Interval: time.Second})
	r := scheduler.NewReclaimer(st, refuse, scheduler.Options{Owner: "w1", Interval: time.Second})
	ctx := context.Background()
	_, _, err := s.Scan(ctx)
	require.NoError(t, err, "a live Redis scans fine")

	freeze()
	for _, op := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"scan", func(ctx context.Context) error { _, _, err := s.Scan(ctx); return err }},
		{"reclaim", r.Scan},
	} {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- op.run(ctx) }()
		select {
		case err := <-done:
			took := time.Since(start)
			require.ErrorIs(t, err, context.DeadlineExceeded, op.name)
			require.Less(t, took, timeout+time.Second, "%s returns at its timeout", op.name)
			t.Logf("%s failed after %v: %v", op.name, took.Round(time.Millisecond), err)
		case <-time.After(timeout + 3*time.Second):
			t.Fatalf("%s still hangs %v after Redis froze", op.name, time.Since(start).Round(time.Millisecond))
		}
	}
}
