package store_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
	"github.com/lullhq/lull/lua"
)

func TestDeadLetter_ReleasesConversationAndReplaysSameBatch(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a", "b")
	require.Equal(t, 1, c.Batch.Attempt, "the claim counted attempt 1")

	// A message arrives while the batch is failing.
	tb.add(t, "u1", "c")

	require.NoError(t, c.DeadLetter(ctx, "http sink: status 400"))
	k := tb.buf.Keys().Conversation("u1")
	require.Equal(t, t0+20_000, tb.score(t, k.Due, "u1"), "what arrived meanwhile flushes on its own deadline")
	_, err := c.Commit(ctx)
	require.ErrorIs(t, err, store.ErrLost, "a dead-lettered batch is no longer in flight")

	id := batch.ID("u1", c.Generation)
	require.Equal(t, id, c.ID())
	all, err := tb.buf.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, id, all[0].Batch.BatchID)
	require.Equal(t, "http sink: status 400", all[0].Error)
	require.Equal(t, 1, all[0].Batch.Attempt)
	require.Len(t, all[0].Batch.Messages, 2)

	// The next batch takes the conversation; replay waits for it.
	tb.advance(10 * time.Second)
	next2 := tb.flush(t, "u1", "w1")
	require.Equal(t, []string{"c"}, texts(t, next2))
	require.ErrorIs(t, tb.buf.Replay(ctx, id), store.ErrBusy)
	commit(t, next2)

	require.NoError(t, tb.buf.Replay(ctx, id))
	require.ErrorIs(t, tb.buf.Replay(ctx, id), store.ErrNotFound, "replayed once")
	all, err = tb.buf.DeadLetters(ctx)
	require.NoError(t, err)
	require.Empty(t, all)

	// Any worker's reclaimer takes it at once, as the same batch.
	again, ok, err := tb.buf.Reclaim(ctx, "u1", "w2")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, c.Generation, again.Generation)
	require.Equal(t, texts(t, c), texts(t, again))
	require.NoError(t, again.Begin(ctx))
	require.Equal(t, 1, again.Batch.Attempt, "attempts are counted anew: its first delivery is attempt 1")
}

func TestDeadLetterByID_UnknownIDs(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	for _, id := range []string{"", "nogen", "u1:0", "u1:x", "u1:42"} {
		_, err := tb.buf.DeadLetterByID(ctx, id)
		require.ErrorIs(t, err, store.ErrNotFound, "%q", id)
		require.ErrorIs(t, tb.buf.Replay(ctx, id), store.ErrNotFound, "%q", id)
	}
}

func TestRelease_LetsAnotherWorkerRedriveAtOnce(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a")
	require.NoError(t, c.Release(ctx))
	again, ok, err := tb.buf.Reclaim(ctx, "u1", "w2")
	require.NoError(t, err)
	require.True(t, ok, "released without waiting for the lease")
	require.Equal(t, c.Generation, again.Generation)
	require.ErrorIs(t, c.Release(ctx), store.ErrLost, "the old owner holds nothing")
}

// keysInShard returns n conversation keys that share one shard.
func keysInShard(n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("conv-%d", i)
		if len(out) == 0 || keys.Shard(k) == keys.Shard(out[0]) {
			out = append(out, k)
		}
	}
	return out
}

// deadLetter buffers one message in conversation key, claims it and
// dead-letters it at the test clock; it returns the batch id.
func deadLetter(t *testing.T, tb testBundle, key string) string {
	t.Helper()
	ctx := context.Background()
	tb.append(t, key, key+"-m", key, false)
	tb.advance(10 * time.Second)
	c := tb.flush(t, key, "w1")
	require.NoError(t, c.DeadLetter(ctx, "http sink: status 400"))
	return c.ID()
}

func deadIDs(t *testing.T, tb testBundle, shard int) []string {
	t.Helper()
	ids, err := tb.client.Do(context.Background(), tb.client.B().Zrange().Key(tb.buf.Keys().Dead(shard)).Min("0").Max("-1").Build()).AsStrSlice()
	require.NoError(t, err)
	return ids
}

func recordKey(tb testBundle, id string) string {
	key, gen, _ := keys.ParseBatchID(id)
	return tb.buf.Keys().Conversation(key).DeadRecord(gen)
}

func pttl(t *testing.T, tb testBundle, key string) time.Duration {
	t.Helper()
	ms, err := tb.client.Do(context.Background(), tb.client.B().Pttl().Key(key).Build()).AsInt64()
	require.NoError(t, err)
	return time.Duration(ms) * time.Millisecond
}

func TestDeadLetter_RecordAndSetExpireAfterTTL(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.DeadLetterTTL = time.Hour })
	ctx := context.Background()
	id := deadLetter(t, tb, "u1")
	rec := recordKey(tb, id)
	for _, k := range []string{rec, tb.buf.Keys().Conversation("u1").Dead} {
		ttl := pttl(t, tb, k)
		require.Greater(t, ttl, 59*time.Minute, "%s expires after DEAD_LETTER_TTL", k)
		require.LessOrEqual(t, ttl, time.Hour, k)
	}

	// A replayed batch is live state again: it must not inherit the
	// record's expiry.
	require.NoError(t, tb.buf.Replay(ctx, id))
	require.Equal(t, -time.Millisecond, pttl(t, tb, tb.buf.Keys().Conversation("u1").Batch), "replayed batch has no TTL")
}

// The store has no retention defaults of its own (the configuration is
// their one source): it applies the options it is given, here DEAD_LETTER_TTL
// and DEAD_LETTER_MAX's defaults, 720h and 10000, that is
// ceil(10000/16) = 625 per shard.
func TestDeadLetter_RetentionIsTheOptionsGiven(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.DeadLetterTTL, o.DeadLetterMax = 720*time.Hour, 10000 })
	ctx := context.Background()
	rec := recordKey(tb, deadLetter(t, tb, "u1"))
	ttl := pttl(t, tb, rec)
	require.Greater(t, ttl, 719*time.Hour)
	require.LessOrEqual(t, ttl, 720*time.Hour)

	// Fill u1's shard up to its share with older entries (no records):
	// the next dead letter trims exactly the oldest one.
	shard := keys.Shard("u1")
	perShard := (10000 + keys.Shards - 1) / keys.Shards
	fill := tb.client.B().Zadd().Key(tb.buf.Keys().Dead(shard)).ScoreMember()
	for i := range perShard - 1 {
		fill = fill.ScoreMember(float64(t0-int64(perShard-i)), fmt.Sprintf("filler:%d", i))
	}
	require.NoError(t, tb.client.Do(ctx, fill.Build()).Error())
	require.Len(t, deadIDs(t, tb, shard), perShard)
	conv := "u1-next"
	for keys.Shard(conv) != shard {
		conv += "x"
	}
	fresh := deadLetter(t, tb, conv)
	ids := deadIDs(t, tb, shard)
	require.Len(t, ids, perShard, "a shard keeps ceil(DeadLetterMax/shards) dead letters")
	require.NotContains(t, ids, "filler:0", "the oldest went")
	require.Contains(t, ids, "filler:1")
	require.Equal(t, fresh, ids[len(ids)-1])
}

func TestDeadLetter_EntriesOlderThanTTLAreTrimmed(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.DeadLetterTTL = time.Hour })
	ctx := context.Background()
	conv := keysInShard(2)
	old := deadLetter(t, tb, conv[0])
	tb.advance(2 * time.Hour)
	fresh := deadLetter(t, tb, conv[1])

	shard := keys.Shard(conv[0])
	require.Equal(t, []string{fresh}, deadIDs(t, tb, shard), "the entry older than the TTL is trimmed")
	require.Zero(t, tb.exists(t, recordKey(tb, old)), "and its record with it")
	all, err := tb.buf.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, fresh, all[0].Batch.BatchID)
}

func TestDeadLetter_OldestBeyondShardShareAreRemovedWithTheirRecords(t *testing.T) {
	// 20 over 16 shards: ceil(20/16) = 2 per shard.
	tb := setup(t, func(o *store.Options) { o.DeadLetterMax = 20 })
	ctx := context.Background()
	conv := keysInShard(4)
	var ids []string
	for _, k := range conv {
		ids = append(ids, deadLetter(t, tb, k))
		tb.advance(time.Second)
	}
	// Another shard keeps its own share.
	other := "elsewhere"
	for keys.Shard(other) == keys.Shard(conv[0]) {
		other += "x"
	}
	otherID := deadLetter(t, tb, other)

	require.Equal(t, ids[2:], deadIDs(t, tb, keys.Shard(conv[0])), "the two newest stay")
	require.Equal(t, []string{otherID}, deadIDs(t, tb, keys.Shard(other)))
	for _, id := range ids[:2] {
		require.Zero(t, tb.exists(t, recordKey(tb, id)), "record of trimmed %s deleted", id)
	}
	// Nothing dangles: every record left is listed, and every listed id has its record.
	var records []string
	for _, k := range testenv.Keys(ctx, tb.client, tb.ns) {
		if strings.Contains(k, ":dead:") {
			records = append(records, k)
		}
	}
	want := []string{recordKey(tb, ids[2]), recordKey(tb, ids[3]), recordKey(tb, otherID)}
	require.ElementsMatch(t, want, records)
	all, err := tb.buf.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, all, 3)
}

func TestDeadLetters_SkipIDsWhoseRecordExpired(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	gone := deadLetter(t, tb, "u1")
	kept := deadLetter(t, tb, "u2")
	// As if the record's TTL ran out before the set was trimmed.
	require.NoError(t, tb.client.Do(ctx, tb.client.B().Del().Key(recordKey(tb, gone)).Build()).Error())
	all, err := tb.buf.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, kept, all[0].Batch.BatchID)
	_, err = tb.buf.DeadLetterByID(ctx, gone)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, tb.buf.Replay(ctx, gone), store.ErrNotFound)
}

// dead.lua derives the records it trims from a prefix in ARGV; it refuses a
// prefix outside the dead set's hash slot before writing anything.
func TestDeadScript_RefusesAPrefixOfAnotherSlot(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "m")
	k := tb.buf.Keys().Conversation("u1")
	id := batch.ID("u1", c.Generation)
	gen := strconv.FormatInt(c.Generation, 10)
	for _, prefix := range []string{tb.ns + ":{s99}:dead:", tb.ns + ":dead:"} {
		err := lua.Dead.Exec(ctx, tb.client,
			[]string{k.Batch, k.Inflight, k.Due, k.Meta, k.Buf, k.Dead, prefix + id, k.Stats},
			[]string{"u1", gen, id, "why", "", "1000", "1", prefix},
		).Error()
		require.ErrorContains(t, err, "hash tag", prefix)
	}
	require.Equal(t, int64(1), tb.exists(t, k.Batch), "the batch is still in flight")
}
