package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

func TestCheckShards_RecordsTheFirstAndRefusesAnother(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := testenv.Namespace(t, "shards")
	client := testenv.Redis(t, ns)
	require.NoError(t, store.CheckShards(ctx, client, ns, 16))
	require.NoError(t, store.CheckShards(ctx, client, ns, 16), "the same count again")
	err := store.CheckShards(ctx, client, ns, 32)
	require.ErrorIs(t, err, store.ErrShardsDiffer)
	require.ErrorContains(t, err, "SHARDS=16")
	n, err := store.RecordedShards(ctx, client, ns)
	require.NoError(t, err)
	require.Equal(t, 16, n)
}

// The documented way to change SHARDS: drain, ChangeShards, restart with it.
func TestChangeShards_OnlyWhenDrained(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := testenv.Namespace(t, "shards")
	client := testenv.Redis(t, ns)
	require.NoError(t, store.CheckShards(ctx, client, ns, keys.DefaultShards))

	// A conversation buffering in shard 3 of the 16, and a dead letter in shard 15.
	space := keys.New(ns)
	require.NoError(t, client.Do(ctx, client.B().Zadd().Key(space.Due(3)).ScoreMember().ScoreMember(1, "u").Build()).Error())
	require.NoError(t, client.Do(ctx, client.B().Zadd().Key(space.Dead(15)).ScoreMember().ScoreMember(1, "v:1").Build()).Error())
	err := store.ChangeShards(ctx, client, ns, 48)
	require.ErrorIs(t, err, store.ErrNotDrained)
	require.ErrorContains(t, err, "1 conversations scheduled, 0 buffers (paused ones included), 0 paused conversations, 0 batches in flight, 1 dead letters")
	require.ErrorIs(t, store.CheckShards(ctx, client, ns, 48), store.ErrShardsDiffer, "still 16")

	require.NoError(t, client.Do(ctx, client.B().Del().Key(space.Due(3), space.Dead(15)).Build()).Error())
	require.NoError(t, store.ChangeShards(ctx, client, ns, 48))
	require.NoError(t, store.CheckShards(ctx, client, ns, 48))
	require.ErrorIs(t, store.CheckShards(ctx, client, ns, 16), store.ErrShardsDiffer)
	require.Error(t, store.ChangeShards(ctx, client, ns, 0))
}

// A conversation paused until resumed is in no due set, but its buffer
// would be lost under the new keys all the same: ChangeShards finds it.
func TestChangeShards_RefusesWhileAPausedConversationHoldsMessages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := testenv.Namespace(t, "shards")
	client := testenv.Redis(t, ns)
	require.NoError(t, store.CheckShards(ctx, client, ns, keys.DefaultShards))
	st := store.New(client, ns, testenv.StoreOptions())
	_, err := st.Append(ctx, "u", "m1", []byte(`{"id":"m1","text":"oi"}`), false)
	require.NoError(t, err)
	_, err = st.Pause(ctx, "u", 0)
	require.NoError(t, err)
	due, err := client.Do(ctx, client.B().Zcard().Key(st.Keys().Conversation("u").Due).Build()).AsInt64()
	require.NoError(t, err)
	require.Zero(t, due, "paused until resumed: not scheduled")

	err = store.ChangeShards(ctx, client, ns, 32)
	require.ErrorIs(t, err, store.ErrNotDrained)
	require.ErrorContains(t, err, "0 conversations scheduled, 1 buffers (paused ones included), 1 paused conversations")

	// Nothing buffered, still paused: the pause would end unseen.
	_, err = st.Cancel(ctx, "u")
	require.NoError(t, err)
	err = store.ChangeShards(ctx, client, ns, 32)
	require.ErrorIs(t, err, store.ErrNotDrained)
	require.ErrorContains(t, err, "0 buffers (paused ones included), 1 paused conversations")

	// A pause that ran out does not count.
	_, err = st.Resume(ctx, "u")
	require.NoError(t, err)
	_, err = st.Pause(ctx, "v", time.Millisecond)
	require.NoError(t, err)
	time.Sleep(5 * time.Millisecond)
	require.NoError(t, store.ChangeShards(ctx, client, ns, 32))
}

func TestIsShardKey(t *testing.T) {
	t.Parallel()
	require.True(t, store.IsShardKey("lull", "buf", "lull:{s07}:buf:5511"))
	require.True(t, store.IsShardKey("lull", "buf", "lull:{s07}:buf:a}:buf:b"))
	require.False(t, store.IsShardKey("lull", "buf", "lull:{s07}:seen:a}:buf:b"), "a conversation key holding }:buf:")
	require.False(t, store.IsShardKey("lull", "buf", "lull:{sx}:buf:a"))
	require.False(t, store.IsShardKey("lull", "meta", "lull:{s07}:buf:a"))
	require.False(t, store.IsShardKey("lull", "buf", "other:{s07}:buf:a"))
}

func TestGlobEscape_QuotesThePatternCharacters(t *testing.T) {
	t.Parallel()
	require.Equal(t, `a\*b\?c\[d\]e\\f{s}`, store.GlobEscape(`a*b?c[d]e\f{s}`))
}
