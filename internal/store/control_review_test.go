package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
)

func (tb testBundle) pttl(t *testing.T, key string) time.Duration {
	t.Helper()
	n, err := tb.client.Do(context.Background(), tb.client.B().Pttl().Key(key).Build()).AsInt64()
	require.NoError(t, err)
	return time.Duration(n) * time.Millisecond
}

func (tb testBundle) state(t *testing.T, id string) store.BatchStatus {
	t.Helper()
	st, err := tb.buf.BatchState(context.Background(), id)
	require.NoError(t, err)
	return st
}

// The rest of a sliced buffer is not newer than the slice: a bot that
// checks current answers every slice instead of discarding them forever.
func TestBatchState_ASliceIsCurrentDespiteItsRest(t *testing.T) {
	tb := setup(t, keepDelivered, func(o *store.Options) { o.MaxMessages = 2 })
	first := tb.claim(t, "u1", "a", "b") // max messages: due at once
	tb.add(t, "u1", "c", "d", "e")       // a flood while the first is in flight
	commit(t, first)
	slice := tb.flush(t, "u1", "w1")
	require.Equal(t, []string{"c", "d"}, texts(t, slice))
	st := tb.state(t, slice.ID())
	require.True(t, st.Current, "%+v", st)
	require.Zero(t, st.NewerMessages)
	tb.add(t, "u1", "f")
	require.Equal(t, int64(1), tb.state(t, slice.ID()).NewerMessages, "one message arrived after the claim")
}

// A discard gives the batch that holds the messages again an id of its own,
// and that batch is current.
func TestDiscard_TheReplacementHasItsOwnIDAndIsCurrent(t *testing.T) {
	tb := setup(t, keepDelivered)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a")
	commit(t, c)
	_, err := tb.buf.Discard(ctx, c.ID()) // still current: the bot changed its mind
	require.NoError(t, err)
	tb.advance(10 * time.Second)
	next := tb.flush(t, "u1", "w1")
	require.NotEqual(t, c.ID(), next.ID())
	require.Equal(t, []string{c.ID()}, next.Batch.Replaces)
	require.True(t, tb.state(t, next.ID()).Current)
	require.Equal(t, store.StateDiscarded, tb.state(t, c.ID()).State)
	commit(t, next)
	require.Equal(t, store.StateDelivered, tb.state(t, next.ID()).State)
}

// A held batch whose conversation's meta expired (a dead letter replayed
// days later) is discarded into a buffer that has a generation and expires.
func TestDiscard_AfterMetaExpiredKeepsTheMessages(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a", "b")
	k := tb.buf.Keys().Conversation("u1")
	require.NoError(t, tb.client.Do(ctx, tb.client.B().Del().Key(k.Meta).Build()).Error())
	_, err := c.Discard(ctx)
	require.NoError(t, err)
	require.Greater(t, tb.pttl(t, k.Buf), time.Hour, "the buffer expires")
	require.Greater(t, tb.pttl(t, k.Meta), time.Hour, "meta expires")
	tb.advance(10 * time.Second)
	next := tb.flush(t, "u1", "w1")
	require.Equal(t, []string{"a", "b"}, texts(t, next))
	_, err = tb.buf.Discard(ctx, "nobody:123")
	require.ErrorIs(t, err, store.ErrUnknown)
}

// A pause for longer than the keys' TTL keeps what it holds until after
// its end.
func TestPause_KeepsTheBufferAliveUntilItEnds(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	tb.add(t, "u1", "a")
	_, err := tb.buf.Pause(ctx, "u1", 48*time.Hour) // TTL is 24h
	require.NoError(t, err)
	k := tb.buf.Keys().Conversation("u1")
	require.Greater(t, tb.pttl(t, k.Buf), 48*time.Hour)
	tb.add(t, "u1", "b")
	require.Greater(t, tb.pttl(t, k.Buf), 48*time.Hour, "a message during the pause does not shorten it")
	require.Greater(t, tb.pttl(t, k.Meta), 48*time.Hour)
}

// A pause whose time ran out with nothing buffered is over: the status says
// so, and the next burst is a plain one.
func TestPause_ThatRanOutIsOver(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	_, err := tb.buf.Pause(ctx, "u1", time.Minute)
	require.NoError(t, err)
	tb.advance(59 * time.Minute)
	s, err := tb.buf.ConversationStatus(ctx, "u1")
	require.NoError(t, err)
	require.False(t, s.Paused)
	tb.add(t, "u1", "a")
	tb.advance(10 * time.Second)
	require.False(t, tb.flush(t, "u1", "w1").Batch.Paused)
}

// Replaying an older batch never moves the conversation's last delivered
// batch back.
func TestCommit_AReplayedOlderBatchDoesNotLowerCommitted(t *testing.T) {
	tb := setup(t, keepDelivered)
	ctx := context.Background()
	old := tb.claim(t, "u1", "a")
	require.NoError(t, old.DeadLetter(ctx, "gave up"))
	newer := tb.claim(t, "u1", "b")
	commit(t, newer)
	require.NoError(t, tb.buf.Replay(ctx, old.ID()))
	again, ok, err := tb.buf.Reclaim(ctx, "u1", "w2")
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, again.Begin(ctx))
	commit(t, again)
	s, err := tb.buf.ConversationStatus(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, newer.ID(), s.LastBatchID)
	require.Equal(t, store.StateDelivered, tb.state(t, newer.ID()).State)
	res, err := again.Commit(ctx)
	require.NoError(t, err)
	require.True(t, res.Already, "a lost reply of the replayed batch's commit is recognised")
}

// The adaptive window never puts a lagging message's deadline in the past.
func TestAdaptiveWindow_WithALaggingWorkerStillWaits(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.Adaptive = &store.Adaptive{Min: 2 * time.Second, K: 1} })
	tb.add(t, "u1", "a")
	tb.advance(500 * time.Millisecond)
	tb.add(t, "u1", "b") // learns a 0.5 s gap: window 2 s
	tb.advance(time.Second)
	d := tb.appendReceived(t, "u1", "c", 4*time.Second)
	require.GreaterOrEqual(t, d, tb.clock.Load()+1000, "at least half the window in force from now")
}
