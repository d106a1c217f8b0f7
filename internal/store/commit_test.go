package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
)

func TestCommit_CommittedNowRecordsTheGeneration(t *testing.T) {
	tb := setup(t)
	c := tb.claim(t, "u1", "a")
	tb.advance(time.Second)

	res := commit(t, c)
	require.False(t, res.Already)
	require.EqualValues(t, -1, res.Next)
	require.Equal(t, tb.clock.Load(), res.Now, "commit.lua runs on the test clock, like the other scripts")

	k := tb.buf.Keys().Conversation("u1")
	require.Equal(t, strconv.FormatInt(c.Generation, 10), tb.hget(t, k.Meta, "committed"))
	require.Positive(t, pttl(t, tb, k.Meta), "meta keeps its safety expiry")
	require.Zero(t, tb.exists(t, k.Batch), "the batch record is gone")
}

func TestCommit_RetryAfterALostReplyIsAlreadyCommitted(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	first := tb.claim(t, "u1", "a")
	// A message arrives while batch 1 is in flight.
	tb.add(t, "u1", "b")

	done := commit(t, first) // applied; say its reply was lost
	require.False(t, done.Already)

	again, err := first.Commit(ctx)
	require.NoError(t, err, "a retried commit is not a take-over")
	require.True(t, again.Already)
	require.Equal(t, done.Next, again.Next, "the retry still reports when the waiting messages are due")

	// Even once the next batch of the conversation is in flight, the retry
	// is recognised, and it leaves that batch alone.
	tb.advance(10 * time.Second)
	second := tb.flush(t, "u1", "w1")
	again = commit(t, first)
	require.True(t, again.Already)
	require.NoError(t, second.Renew(ctx), "batch 2 is still held by its owner")
	require.False(t, commit(t, second).Already)
}

func TestCommit_TakenOverIsErrLost(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a")
	tb.add(t, "u1", "b")

	// Gone without being committed: dead-lettered meanwhile.
	require.NoError(t, c.DeadLetter(ctx, "status 400"))
	_, err := c.Commit(ctx)
	require.ErrorIs(t, err, store.ErrLost)

	// Another generation holds the batch.
	tb.advance(10 * time.Second)
	next := tb.flush(t, "u1", "w2")
	require.NotEqual(t, c.Generation, next.Generation)
	_, err = c.Commit(ctx)
	require.ErrorIs(t, err, store.ErrLost)
	require.NoError(t, next.Renew(ctx), "the batch in flight is untouched")
}

func TestCommit_MetaGoneGetsTheCommittedMarkWithExpiry(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a")
	k := tb.buf.Keys().Conversation("u1")
	require.NoError(t, tb.client.Do(ctx, tb.client.B().Del().Key(k.Meta).Build()).Error())

	commit(t, c)
	require.Positive(t, pttl(t, tb, k.Meta), "the mark never creates a key without expiry")
	require.True(t, commit(t, c).Already)
}

func TestRenew_RetriedAttemptCountsOnce(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a")
	require.Equal(t, 1, c.Batch.Attempt, "the claim counted attempt 1")
	n, err := c.NextAttempt(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, 2, c.Batch.Attempt)

	// The same call again, as when its reply was lost: the claim still
	// named attempt 1 as the one under way.
	c.Batch.Attempt = 1
	n, err = c.NextAttempt(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n, "a retried NextAttempt does not count the attempt twice")
	require.Equal(t, 2, c.Batch.Attempt)

	n, err = c.NextAttempt(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.NoError(t, c.Renew(ctx))
	require.Equal(t, "3", attemptInRedis(t, tb, "u1"), "a plain renewal counts nothing")
	n, err = c.NextAttempt(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, n)
}

// attemptInRedis is the attempt count of conversation key's batch in flight.
func attemptInRedis(t *testing.T, tb testBundle, key string) string {
	t.Helper()
	return tb.hget(t, tb.buf.Keys().Conversation(key).Batch, "attempt")
}
