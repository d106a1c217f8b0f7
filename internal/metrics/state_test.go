package metrics_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/metrics"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// TestStoreState_SumsTheShardsOnTheRedisClock reads store.State from the
// real Redis: the sets of several shards are summed, and the most overdue
// deadline is measured against Redis' TIME.
func TestStoreState_SumsTheShardsOnTheRedisClock(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "metrics")
	client := testenv.Redis(t, ns)
	st := store.New(client, ns, testenv.StoreOptions())
	ctx := context.Background()

	empty, err := st.State(ctx)
	require.NoError(t, err)
	require.Equal(t, store.State{Now: empty.Now}, empty, "an empty namespace")
	require.Positive(t, empty.Now)

	now, err := client.Do(ctx, client.B().Time().Build()).AsStrSlice()
	require.NoError(t, err)
	sec, _ := strconv.ParseInt(now[0], 10, 64)
	ms := sec * 1000
	k := keys.New(ns)
	zadd := func(key string, score int64, member string) {
		require.NoError(t, client.Do(ctx, client.B().Zadd().Key(key).ScoreMember().ScoreMember(float64(score), member).Build()).Error())
	}
	zadd(k.Due(0), ms+60_000, "later")
	zadd(k.Due(3), ms-5_000, "overdue")   // the most overdue
	zadd(k.Due(3), ms+1_000, "soon")      // not the shard's first
	zadd(k.Due(15), ms-1_000, "overdue2") // overdue, less
	zadd(k.Inflight(2), ms+30_000, "a")
	zadd(k.Inflight(9), ms+30_000, "b")
	zadd(k.Dead(7), ms, "c:1")

	got, err := st.State(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(4), got.Buffering)
	require.Equal(t, int64(2), got.InFlight)
	require.Equal(t, int64(1), got.Dead)
	// TIME was read at second granularity above, and again by State.
	require.GreaterOrEqual(t, got.OverdueMs, int64(5_000))
	require.Less(t, got.OverdueMs, int64(8_000))

	// Served by the worker's registry as gauges in base units.
	m := metrics.NewWorker(metrics.WorkerOptions{State: st.State})
	fams := gather(t, m.Gatherer())
	require.Equal(t, 4.0, series(t, fams, "lull_conversations_buffering").GetGauge().GetValue())
	require.GreaterOrEqual(t, series(t, fams, "lull_due_overdue_seconds").GetGauge().GetValue(), 5.0)
}

// TestStoreState_NothingOverdueIsZero: deadlines in the future are not
// overdue; the test clock of the store is used when set.
func TestStoreState_NothingOverdueIsZero(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "metrics")
	client := testenv.Redis(t, ns)
	opts := testenv.StoreOptions()
	opts.Now = func() int64 { return 1_000_000 }
	st := store.New(client, ns, opts)
	ctx := context.Background()
	k := keys.New(ns)
	require.NoError(t, client.Do(ctx, client.B().Zadd().Key(k.Due(4)).ScoreMember().ScoreMember(1_000_500, "x").Build()).Error())

	got, err := st.State(ctx)
	require.NoError(t, err)
	require.Equal(t, store.State{Now: 1_000_000, Buffering: 1}, got)

	require.NoError(t, client.Do(ctx, client.B().Zadd().Key(k.Due(5)).ScoreMember().ScoreMember(999_250, "y").Build()).Error())
	got, err = st.State(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(750), got.OverdueMs)
}
