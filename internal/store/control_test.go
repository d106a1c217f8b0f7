package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/store"
)

func keepDelivered(o *store.Options) { o.KeepDelivered = time.Hour }

func TestSourceOf_MatchesTheProviderKeySpaces(t *testing.T) {
	for _, s := range ingest.ProviderSources {
		require.Equal(t, s, ingest.SourceOf(ingest.ProviderKey(s, "x:y")))
	}
	require.Equal(t, "generic", ingest.SourceOf("5511999"))
	require.Equal(t, "generic", ingest.SourceOf("shop:5511999"))
}

func TestConversationStatus(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	_, err := tb.buf.ConversationStatus(ctx, "nobody")
	require.ErrorIs(t, err, store.ErrUnknown)

	a := tb.add(t, "u1", "a", "b")
	s, err := tb.buf.ConversationStatus(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, int64(2), s.Buffered)
	require.Equal(t, a.Deadline, s.Deadline)
	require.Equal(t, "quiet", s.Reason)
	require.Equal(t, "generic", s.Source)
	require.Empty(t, s.InFlight)

	tb.advance(10 * time.Second)
	c := tb.flush(t, "u1", "w1")
	s, err = tb.buf.ConversationStatus(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, c.ID(), s.InFlight)
	require.Zero(t, s.Buffered)
	require.Equal(t, int64(-1), s.Deadline)
	commit(t, c)
	s, err = tb.buf.ConversationStatus(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, c.ID(), s.LastBatchID)
	require.Empty(t, s.InFlight)
}

func TestCancel_DropsWhatIsBufferedNotTheBatchInFlight(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a")
	tb.add(t, "u1", "b", "c")
	dropped, err := tb.buf.Cancel(ctx, "u1")
	require.NoError(t, err)
	require.Len(t, dropped, 2)
	require.Contains(t, string(dropped[0]), `"b"`)
	require.Contains(t, string(dropped[1]), `"c"`)
	commit(t, c)
	tb.advance(time.Minute)
	require.Equal(t, store.FlushResult("gone"), tb.notFlushed(t, "u1", "w1"), "nothing left to flush")

	tb.add(t, "u1", "d")
	tb.advance(10 * time.Second)
	require.Equal(t, []string{"d"}, texts(t, tb.flush(t, "u1", "w1")), "the next message starts a new burst")
	none, err := tb.buf.Cancel(ctx, "nobody")
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestCancelWord_DropsTheBufferAndItself(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	tb.add(t, "u1", "a", "b")
	res, errs := tb.buf.AppendMany(ctx, []store.AppendJob{{Key: "u1", ID: "stop", Message: msg("cancelar"), Cancel: true}})
	require.NoError(t, errs[0])
	require.Equal(t, int64(3), res[0].Dropped)
	require.Equal(t, int64(-1), res[0].Deadline)
	tb.advance(time.Minute)
	require.Equal(t, store.FlushResult("gone"), tb.notFlushed(t, "u1", "w1"))
	again, errs := tb.buf.AppendMany(ctx, []store.AppendJob{{Key: "u1", ID: "stop", Message: msg("cancelar"), Cancel: true}})
	require.NoError(t, errs[0])
	require.False(t, again[0].Stored, "a redelivered cancel word is a duplicate")
	totals, err := tb.buf.Totals(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), totals.Appended)
}

func TestPause_KeepsMessagesAndFlushesThemAsOnePausedBatchOnResume(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	tb.add(t, "u1", "a")
	p, err := tb.buf.Pause(ctx, "u1", 0)
	require.NoError(t, err)
	require.Equal(t, int64(-1), p.Until)
	tb.add(t, "u1", "b")
	tb.advance(time.Hour)
	require.Equal(t, store.FlushResult("gone"), tb.notFlushed(t, "u1", "w1"), "paused until resumed: not scheduled")
	s, err := tb.buf.ConversationStatus(ctx, "u1")
	require.NoError(t, err)
	require.True(t, s.Paused)
	require.Equal(t, int64(2), s.Buffered)

	r, err := tb.buf.Resume(ctx, "u1")
	require.NoError(t, err)
	require.True(t, r.Changed)
	require.Equal(t, r.Now, r.Deadline, "due at once")
	c := tb.flush(t, "u1", "w1")
	require.Equal(t, []string{"a", "b"}, texts(t, c))
	require.True(t, c.Batch.Paused)
	require.Equal(t, "resumed", c.Batch.Reason)
	commit(t, c)

	again, err := tb.buf.Resume(ctx, "u1")
	require.NoError(t, err)
	require.False(t, again.Changed, "not paused")
	tb.add(t, "u1", "c")
	tb.advance(10 * time.Second)
	require.False(t, tb.flush(t, "u1", "w1").Batch.Paused, "the next batch is a plain one")
}

// A pause or resume that happened before the one in force (a command that
// lands late, sent by a worker cut off from Redis) changes nothing: the
// latest decision wins, and a call without a time (the HTTP API's) is now.
func TestPauseAt_ALateCommandDoesNotUndoALaterOne(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	tb.add(t, "u1", "a")
	r, err := tb.buf.ResumeAt(ctx, "u1", t0-1_000)
	require.NoError(t, err)
	require.False(t, r.Changed, "not paused")
	p, err := tb.buf.PauseAt(ctx, "u1", 0, t0-2_000) // happened before that resume
	require.NoError(t, err)
	require.True(t, p.Stale)
	require.False(t, p.Changed)
	s, err := tb.buf.ConversationStatus(ctx, "u1")
	require.NoError(t, err)
	require.False(t, s.Paused, "the later resume stands")

	p, err = tb.buf.PauseAt(ctx, "u1", 0, t0-500)
	require.NoError(t, err)
	require.True(t, p.Changed)
	r, err = tb.buf.ResumeAt(ctx, "u1", t0-700) // before the pause in force
	require.NoError(t, err)
	require.True(t, r.Stale)
	s, err = tb.buf.ConversationStatus(ctx, "u1")
	require.NoError(t, err)
	require.True(t, s.Paused)
	r, err = tb.buf.Resume(ctx, "u1") // now
	require.NoError(t, err)
	require.True(t, r.Changed)

	// A resume of a conversation lull holds nothing of leaves no key
	// without an expiry: it leaves no key at all.
	_, err = tb.buf.ResumeAt(ctx, "nobody", t0)
	require.NoError(t, err)
	pttl, err := tb.client.Do(ctx, tb.client.B().Pttl().Key(tb.buf.Keys().Conversation("nobody").Meta).Build()).AsInt64()
	require.NoError(t, err)
	require.NotEqual(t, int64(-1), pttl, "a key without an expiry")
	require.Equal(t, int64(-2), pttl, "no key")
}

func TestPause_ForAWhileEndsByItself(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	_, err := tb.buf.Pause(ctx, "u1", 30*time.Minute)
	require.NoError(t, err)
	tb.add(t, "u1", "a")
	tb.advance(10 * time.Second)
	require.Equal(t, store.FlushResult("not_due"), tb.notFlushed(t, "u1", "w1"), "scheduled at the pause's end")
	tb.advance(30 * time.Minute)
	c := tb.flush(t, "u1", "w1")
	require.True(t, c.Batch.Paused)
	require.Equal(t, []string{"a"}, texts(t, c))
}

func TestDiscard_NextBatchHoldsTheDiscardedMessagesFirst(t *testing.T) {
	tb := setup(t, keepDelivered)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a", "b")
	commit(t, c)
	st, err := tb.buf.BatchState(ctx, c.ID())
	require.NoError(t, err)
	require.Equal(t, store.BatchStatus{BatchID: c.ID(), Key: "u1", State: store.StateDelivered, Current: true}, st)

	newer := tb.add(t, "u1", "c")
	st, err = tb.buf.BatchState(ctx, c.ID())
	require.NoError(t, err)
	require.False(t, st.Current, "a newer message arrived")
	require.Equal(t, int64(1), st.NewerMessages)

	d, err := tb.buf.Discard(ctx, c.ID())
	require.NoError(t, err)
	require.Equal(t, 2, d.Messages)
	require.Equal(t, newer.Deadline, d.Deadline, "flushes on the newer message's deadline")
	_, err = tb.buf.Discard(ctx, c.ID())
	require.ErrorIs(t, err, store.ErrConflict, "discarded once")
	st, err = tb.buf.BatchState(ctx, c.ID())
	require.NoError(t, err)
	require.Equal(t, store.StateDiscarded, st.State)

	tb.advance(10 * time.Second)
	next := tb.flush(t, "u1", "w1")
	require.Equal(t, []string{"a", "b", "c"}, texts(t, next))
	require.Equal(t, []string{c.ID()}, next.Batch.Replaces)
	commit(t, next)

	// A discard of the replacing batch names both.
	tb.add(t, "u1", "d")
	_, err = tb.buf.Discard(ctx, next.ID())
	require.NoError(t, err)
	tb.advance(10 * time.Second)
	third := tb.flush(t, "u1", "w1")
	require.Equal(t, []string{"a", "b", "c", "d"}, texts(t, third))
	require.Equal(t, []string{c.ID(), next.ID()}, third.Batch.Replaces)
}

func TestDiscard_Refusals(t *testing.T) {
	tb := setup(t, keepDelivered)
	ctx := context.Background()
	first := tb.claim(t, "u1", "a")
	commit(t, first)
	second := tb.claim(t, "u1", "b")
	_, err := tb.buf.Discard(ctx, first.ID())
	require.ErrorIs(t, err, store.ErrConflict, "a later batch is in flight")
	require.ErrorContains(t, err, "in flight")
	commit(t, second)
	_, err = tb.buf.Discard(ctx, first.ID())
	require.ErrorIs(t, err, store.ErrConflict, "not the last delivered batch")
	require.ErrorContains(t, err, "not latest")
	_, err = tb.buf.Discard(ctx, "nope")
	require.ErrorIs(t, err, store.ErrUnknown)
	_, err = tb.buf.BatchState(ctx, "nobody:1")
	require.ErrorIs(t, err, store.ErrUnknown, "a generation that never was a batch of a conversation without state")
}

func TestDiscard_NothingKeptWithoutKeepDelivered(t *testing.T) {
	nokeep := setup(t)
	ctx := context.Background()
	c := nokeep.claim(t, "u2", "a")
	commit(t, c)
	_, err := nokeep.buf.Discard(ctx, c.ID())
	require.ErrorIs(t, err, store.ErrConflict, "without KeepDelivered nothing is kept")
	require.ErrorContains(t, err, "gone")
}

func TestClaimDiscard_A409PutsTheBatchBack(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a", "b")
	tb.add(t, "u1", "c")
	_, err := c.Discard(ctx)
	require.NoError(t, err)
	_, err = c.Commit(ctx)
	require.ErrorIs(t, err, store.ErrLost, "the claim ended with the discard")
	tb.advance(10 * time.Second)
	next := tb.flush(t, "u1", "w1")
	require.Equal(t, []string{"a", "b", "c"}, texts(t, next))
	require.Equal(t, []string{c.ID()}, next.Batch.Replaces)
}

func TestWindows_PerSourceAndMedia(t *testing.T) {
	tb := setup(t, func(o *store.Options) {
		o.Windows = map[string]store.Window{"whatsapp": {Quiet: 3 * time.Second}, "generic": {MaxWait: 20 * time.Second}}
		o.MediaQuietWindow = 40 * time.Second
	})
	ctx := context.Background()
	now := tb.clock.Load()
	appendJob := func(j store.AppendJob) store.Appended {
		res, errs := tb.buf.AppendMany(ctx, []store.AppendJob{j})
		require.NoError(t, errs[0])
		return res[0]
	}
	require.Equal(t, now+3000, appendJob(store.AppendJob{Key: "whatsapp:pn:1", ID: "a", Message: msg("a")}).Deadline)
	require.Equal(t, now+10000, appendJob(store.AppendJob{Key: "twilio:1", ID: "a", Message: msg("a")}).Deadline, "a source without its own window")
	require.Equal(t, now+20000, appendJob(store.AppendJob{Key: "g1", ID: "a", Message: msg("a"), Media: true}).Deadline,
		"media waits longer, still capped by the source's max wait")
	require.Equal(t, now+10000, appendJob(store.AppendJob{Key: "g1", ID: "b", Message: msg("b")}).Deadline, "the words that follow: the text window")
}

func TestAdaptiveWindow_LearnsTheUsersGaps(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.Adaptive = &store.Adaptive{Min: 2 * time.Second, K: 3} })
	// A fast typist: 1 s gaps. The first burst starts on the full window.
	require.Equal(t, tb.clock.Load()+10000, tb.add(t, "fast", "a").Deadline, "nothing learnt yet: the full window")
	var last store.Appended
	for _, text := range []string{"b", "c", "d"} {
		tb.advance(time.Second)
		last = tb.add(t, "fast", text)
	}
	require.Equal(t, tb.clock.Load()+3000, last.Deadline, "3 × 1 s")
	tb.advance(3 * time.Second)
	require.Len(t, texts(t, tb.flush(t, "fast", "w1")), 4)

	// The next burst starts on what was learnt.
	tb.advance(time.Minute)
	require.Equal(t, tb.clock.Load()+3000, tb.add(t, "fast", "e").Deadline)

	// Very fast gaps never go below the minimum; slow ones never above the window.
	tb.add(t, "slow", "a")
	tb.advance(8 * time.Second)
	require.Equal(t, tb.clock.Load()+10000, tb.add(t, "slow", "b").Deadline, "3 × 8 s, capped at QUIET_WINDOW")
	tb.add(t, "quick", "a")
	tb.advance(100 * time.Millisecond)
	require.Equal(t, tb.clock.Load()+2000, tb.add(t, "quick", "b").Deadline, "3 × 0.1 s, raised to the minimum")
	require.True(t, strings.HasPrefix(tb.hget(t, tb.buf.Keys().Conversation("quick").Meta, "gap"), "100"))
}
