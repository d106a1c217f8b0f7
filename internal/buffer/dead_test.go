package buffer_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/buffer"
)

func TestDeadLetter_ReleasesConversationAndReplaysSameBatch(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	for _, m := range []string{"a", "b"} {
		_, err := tb.buf.Append(ctx, "u1", m, msg(m), false)
		require.NoError(t, err)
	}
	tb.advance(10 * time.Second)
	c, _, err := tb.buf.Flush(ctx, "u1", "", "w1")
	require.NoError(t, err)
	_, err = tb.buf.Renew(ctx, c, true)
	require.NoError(t, err)

	// A message arrives while the batch is failing.
	_, err = tb.buf.Append(ctx, "u1", "c", msg("c"), false)
	require.NoError(t, err)

	res, err := tb.buf.DeadLetter(ctx, c, "http sink: status 400")
	require.NoError(t, err)
	require.Equal(t, t0+20_000, res.Next, "what arrived meanwhile flushes on its own deadline")
	_, err = tb.buf.Commit(ctx, c)
	require.ErrorIs(t, err, buffer.ErrLost, "a dead-lettered batch is no longer in flight")

	id := batch.ID("u1", c.Generation)
	all, err := tb.buf.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, id, all[0].Batch.BatchID)
	require.Equal(t, "http sink: status 400", all[0].Error)
	require.Equal(t, 1, all[0].Batch.Attempt)
	require.Len(t, all[0].Batch.Messages, 2)

	// The next batch takes the conversation; replay waits for it.
	tb.advance(10 * time.Second)
	next, why, err := tb.buf.Flush(ctx, "u1", "", "w1")
	require.NoError(t, err)
	require.Empty(t, why)
	require.Equal(t, []string{"c"}, texts(t, next))
	require.ErrorIs(t, tb.buf.Replay(ctx, id), buffer.ErrBusy)
	_, err = tb.buf.Commit(ctx, next)
	require.NoError(t, err)

	require.NoError(t, tb.buf.Replay(ctx, id))
	require.ErrorIs(t, tb.buf.Replay(ctx, id), buffer.ErrNotFound, "replayed once")
	all, err = tb.buf.DeadLetters(ctx)
	require.NoError(t, err)
	require.Empty(t, all)

	// Any worker's recoverer takes it at once, as the same batch.
	again, ok, err := tb.buf.Reclaim(ctx, "u1", "w2")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, c.Generation, again.Generation)
	require.Equal(t, texts(t, c), texts(t, again))
	require.Equal(t, 0, again.Attempt, "attempts are counted anew")
}

func TestDeadLetterByID_UnknownIDs(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	for _, id := range []string{"", "nogen", "u1:0", "u1:x", "u1:42"} {
		_, err := tb.buf.DeadLetterByID(ctx, id)
		require.ErrorIs(t, err, buffer.ErrNotFound, "%q", id)
		require.ErrorIs(t, tb.buf.Replay(ctx, id), buffer.ErrNotFound, "%q", id)
	}
}

func TestRelease_LetsAnotherWorkerRedriveAtOnce(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	_, err := tb.buf.Append(ctx, "u1", "a", msg("a"), false)
	require.NoError(t, err)
	tb.advance(10 * time.Second)
	c, _, err := tb.buf.Flush(ctx, "u1", "", "w1")
	require.NoError(t, err)
	require.NoError(t, tb.buf.Release(ctx, c))
	again, ok, err := tb.buf.Reclaim(ctx, "u1", "w2")
	require.NoError(t, err)
	require.True(t, ok, "released without waiting for the lease")
	require.Equal(t, c.Generation, again.Generation)
	require.ErrorIs(t, tb.buf.Release(ctx, c), buffer.ErrLost, "the old owner holds nothing")
}
