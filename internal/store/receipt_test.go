package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
)

// appendReceived buffers text in key as received by the api lag ago (the
// test clock is the Redis clock) and returns the deadline it set.
func (tb testBundle) appendReceived(t *testing.T, key, text string, lag time.Duration) int64 {
	t.Helper()
	now := tb.clock.Load()
	res, errs := tb.buf.AppendMany(context.Background(), []store.AppendJob{{
		Key: key, ID: text, Message: msg(text), ReceivedAt: now - lag.Milliseconds(),
	}})
	require.NoError(t, errs[0])
	require.True(t, res[0].Stored)
	return res[0].Deadline
}

// The quiet window runs from the api's receipt, so a lagging worker does not
// push deadlines back — by at most half a window (quiet 10s here).
func TestAppend_DeadlineRunsFromReceipt(t *testing.T) {
	tb := setup(t)
	const quiet = 10 * time.Second
	now := tb.clock.Load()

	require.Equal(t, now-3000+quiet.Milliseconds(), tb.appendReceived(t, "lag3s", "m", 3*time.Second), "a lag below half the window is taken back whole")
	require.Equal(t, now+quiet.Milliseconds()/2, tb.appendReceived(t, "lag8s", "m", 8*time.Second), "a longer lag only up to half the window")
	require.Equal(t, now+quiet.Milliseconds(), tb.appendReceived(t, "ahead", "m", -2*time.Second), "a receipt in the future (a clock ahead) counts as now")
	require.Equal(t, now+quiet.Milliseconds(), tb.append(t, "unknown", "m", "m", false).Deadline, "no receipt: from the append")

	// A message received before the previous one (two api processes, one
	// queue) never moves the deadline back.
	d1 := tb.appendReceived(t, "reordered", "a", time.Second)
	require.Equal(t, d1, tb.appendReceived(t, "reordered", "b", 4*time.Second))
}

// Under a lag longer than the whole window (the worker was down while the
// user typed), messages of a burst closer than half a window stay in one
// batch: each one found queued behind the first is appended before its
// deadline.
func TestAppend_LaggingBurstIsNotSplit(t *testing.T) {
	tb := setup(t)
	const lag = 30 * time.Second
	tb.appendReceived(t, "u1", "a", lag)
	for _, text := range []string{"b", "c", "d"} {
		tb.advance(4 * time.Second) // the user's gaps, replayed at the same lag
		require.Equal(t, store.FlushResult("not_due"), tb.notFlushed(t, "u1", "w1"), "before %s", text)
		tb.appendReceived(t, "u1", text, lag)
	}
	tb.advance(5 * time.Second)
	require.Equal(t, []string{"a", "b", "c", "d"}, texts(t, tb.flush(t, "u1", "w1")))
}
