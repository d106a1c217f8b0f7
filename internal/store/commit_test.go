package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
)

// claimOne buffers text for key, lets its quiet window pass and claims it.
func claimOne(t *testing.T, tb testBundle, key, text string) *store.Claim {
	t.Helper()
	ctx := context.Background()
	_, err := tb.buf.Append(ctx, key, text, msg(text), false)
	require.NoError(t, err)
	tb.advance(10 * time.Second)
	c, why, err := tb.buf.Flush(ctx, key, "w1")
	require.NoError(t, err)
	require.Empty(t, why)
	return c
}

func TestCommit_CommittedNowRecordsTheGeneration(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := claimOne(t, tb, "u1", "a")
	tb.advance(time.Second)

	res, err := c.Commit(ctx)
	require.NoError(t, err)
	require.False(t, res.Already)
	require.EqualValues(t, -1, res.Next)
	require.Equal(t, tb.clock.Load(), res.Now, "commit.lua runs on the test clock, like the other scripts")

	k := tb.buf.Keys().Conversation("u1")
	committed, err := tb.client.Do(ctx, tb.client.B().Hget().Key(k.Meta).Field("committed").Build()).ToString()
	require.NoError(t, err)
	require.Equal(t, strconv.FormatInt(c.Generation, 10), committed)
	ttl, err := tb.client.Do(ctx, tb.client.B().Pttl().Key(k.Meta).Build()).AsInt64()
	require.NoError(t, err)
	require.Positive(t, ttl, "meta keeps its safety expiry")
	n, err := tb.client.Do(ctx, tb.client.B().Exists().Key(k.Batch).Build()).AsInt64()
	require.NoError(t, err)
	require.Zero(t, n, "the batch record is gone")
}

func TestCommit_RetryAfterALostReplyIsAlreadyCommitted(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	first := claimOne(t, tb, "u1", "a")
	// A message arrives while batch 1 is in flight.
	_, err := tb.buf.Append(ctx, "u1", "b", msg("b"), false)
	require.NoError(t, err)

	done, err := first.Commit(ctx) // applied; say its reply was lost
	require.NoError(t, err)
	require.False(t, done.Already)

	again, err := first.Commit(ctx)
	require.NoError(t, err, "a retried commit is not a take-over")
	require.True(t, again.Already)
	require.Equal(t, done.Next, again.Next, "the retry still reports when the waiting messages are due")

	// Even once the next batch of the conversation is in flight, the retry
	// is recognised, and it leaves that batch alone.
	tb.advance(10 * time.Second)
	second, why, err := tb.buf.Flush(ctx, "u1", "w1")
	require.NoError(t, err)
	require.Empty(t, why)
	again, err = first.Commit(ctx)
	require.NoError(t, err)
	require.True(t, again.Already)
	err = second.Renew(ctx)
	require.NoError(t, err, "batch 2 is still held by its owner")
	res, err := second.Commit(ctx)
	require.NoError(t, err)
	require.False(t, res.Already)
}

func TestCommit_TakenOverIsErrLost(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := claimOne(t, tb, "u1", "a")
	_, err := tb.buf.Append(ctx, "u1", "b", msg("b"), false)
	require.NoError(t, err)

	// Gone without being committed: dead-lettered meanwhile.
	require.NoError(t, c.DeadLetter(ctx, "status 400"))
	_, err = c.Commit(ctx)
	require.ErrorIs(t, err, store.ErrLost)

	// Another generation holds the batch.
	tb.advance(10 * time.Second)
	next, why, err := tb.buf.Flush(ctx, "u1", "w2")
	require.NoError(t, err)
	require.Empty(t, why)
	require.NotEqual(t, c.Generation, next.Generation)
	_, err = c.Commit(ctx)
	require.ErrorIs(t, err, store.ErrLost)
	err = next.Renew(ctx)
	require.NoError(t, err, "the batch in flight is untouched")
}

func TestCommit_MetaGoneGetsTheCommittedMarkWithExpiry(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := claimOne(t, tb, "u1", "a")
	k := tb.buf.Keys().Conversation("u1")
	require.NoError(t, tb.client.Do(ctx, tb.client.B().Del().Key(k.Meta).Build()).Error())

	_, err := c.Commit(ctx)
	require.NoError(t, err)
	ttl, err := tb.client.Do(ctx, tb.client.B().Pttl().Key(k.Meta).Build()).AsInt64()
	require.NoError(t, err)
	require.Positive(t, ttl, "the mark never creates a key without expiry")
	again, err := c.Commit(ctx)
	require.NoError(t, err)
	require.True(t, again.Already)
}

func TestRenew_RetriedAttemptCountsOnce(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := claimOne(t, tb, "u1", "a")
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
	n, err := tb.client.Do(context.Background(), tb.client.B().Hget().Key(tb.buf.Keys().Conversation(key).Batch).Field("attempt").Build()).ToString()
	require.NoError(t, err)
	return n
}
