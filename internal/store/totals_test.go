package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
)

// The shard counters follow every change the scripts make, whichever shard a
// conversation is in, and a claim knows the deadline it was made for.
func TestTotals_CountAppendsFlushesDeliveriesAndDeadLetters(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	empty, err := tb.buf.Totals(ctx)
	require.NoError(t, err)
	require.Equal(t, store.Totals{}, empty, "a new namespace counts nothing")

	for i := range 5 {
		tb.add(t, "conv-"+strconv.Itoa(i), "a", "b")
	}
	tb.append(t, "conv-0", "a", "a", false) // a duplicate
	tb.advance(10*time.Second + 250*time.Millisecond)
	var claims []*store.Claim
	for i := range 5 {
		c := tb.flush(t, "conv-"+strconv.Itoa(i), "w1")
		require.Equal(t, int64(250), c.FlushedAtMs-c.Deadline, "lateness of conv-%d", i)
		claims = append(claims, c)
	}
	for _, c := range claims[:4] {
		commit(t, c)
	}
	require.NoError(t, claims[4].DeadLetter(ctx, "gave up"))

	got, err := tb.buf.Totals(ctx)
	require.NoError(t, err)
	require.Equal(t, store.Totals{Appended: 10, Duplicates: 1, Flushed: 5, LatenessMs: 5 * 250, Delivered: 4, DeadLettered: 1}, got)

	k := tb.buf.Keys().Conversation("conv-0")
	require.Equal(t, strconv.FormatInt(claims[0].FlushedAtMs, 10), tb.hget(t, k.Meta, "committed_at"))
}

func TestClaimFailed_KeepsTheLastErrorInTheBatch(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "m")
	k := tb.buf.Keys().Conversation("u1")
	require.NoError(t, c.Failed(ctx, "POST http://bot: 502 Bad Gateway"))
	require.Equal(t, "POST http://bot: 502 Bad Gateway", tb.hget(t, k.Batch, "last_error"))
	require.NotEmpty(t, tb.hget(t, k.Batch, "last_error_at"))

	require.NoError(t, c.Failed(ctx, strings.Repeat("é", 2000)))
	stored := tb.hget(t, k.Batch, "last_error")
	require.LessOrEqual(t, len(stored), 1024+len("…"), "bounded")
	require.True(t, strings.HasSuffix(stored, "…"))

	commit(t, c)
	require.ErrorIs(t, c.Failed(ctx, "late"), store.ErrLost, "a batch no longer held keeps nothing")
}
