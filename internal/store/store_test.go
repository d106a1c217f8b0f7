package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

const t0 = int64(1_800_000_000_000) // a fixed Unix ms clock

type testBundle struct {
	buf    *store.Store
	client rueidis.Client
	ns     string
	clock  *atomic.Int64
}

func (tb testBundle) advance(d time.Duration) { tb.clock.Add(d.Milliseconds()) }

func setup(t *testing.T, mutate ...func(*store.Options)) testBundle {
	t.Helper()
	t.Parallel()
	ns := testenv.Namespace(t, "buffer")
	client := testenv.Redis(t, ns)
	clock := &atomic.Int64{}
	clock.Store(t0)
	opts := testenv.StoreOptions() // quiet 10s, max wait 60s, 100 messages, lease 30s, ...
	opts.Now = clock.Load
	for _, m := range mutate {
		m(&opts)
	}
	// slotCheck: every script call of every store test is checked for
	// keys in one Redis Cluster slot.
	return testBundle{buf: store.New(slotCheck{Client: client, t: t}, ns, opts), client: client, ns: ns, clock: clock}
}

// add buffers each text in conversation key, the text its own message id,
// and returns what the last append reported.
func (tb testBundle) add(t *testing.T, key string, texts ...string) store.Appended {
	t.Helper()
	var a store.Appended
	for _, text := range texts {
		a = tb.append(t, key, text, text, false)
	}
	return a
}

// append buffers text as message id in conversation key (flushing at once
// when now) and returns what the append reported.
func (tb testBundle) append(t *testing.T, key, id, text string, now bool) store.Appended {
	t.Helper()
	a, err := tb.buf.Append(context.Background(), key, id, msg(text), now)
	require.NoError(t, err)
	return a
}

// flush claims conversation key for owner and requires that it was claimed.
func (tb testBundle) flush(t *testing.T, key, owner string, msgAndArgs ...any) *store.Claim {
	t.Helper()
	c, why, err := tb.buf.Flush(context.Background(), key, owner)
	require.NoError(t, err)
	require.Empty(t, why, msgAndArgs...)
	return c
}

// notFlushed tries to claim conversation key for owner and returns why it
// was not claimed ("" if it was).
func (tb testBundle) notFlushed(t *testing.T, key, owner string) store.FlushResult {
	t.Helper()
	_, why, err := tb.buf.Flush(context.Background(), key, owner)
	require.NoError(t, err)
	return why
}

// claim buffers texts in conversation key, lets the quiet window pass and
// claims them for w1.
func (tb testBundle) claim(t *testing.T, key string, texts ...string) *store.Claim {
	t.Helper()
	tb.add(t, key, texts...)
	tb.advance(10 * time.Second)
	return tb.flush(t, key, "w1")
}

// commit commits c, which must succeed.
func commit(t *testing.T, c *store.Claim) store.Committed {
	t.Helper()
	res, err := c.Commit(context.Background())
	require.NoError(t, err)
	return res
}

// score is member's score in the sorted set at key.
func (tb testBundle) score(t *testing.T, key, member string) int64 {
	t.Helper()
	n, err := tb.client.Do(context.Background(), tb.client.B().Zscore().Key(key).Member(member).Build()).AsInt64()
	require.NoError(t, err)
	return n
}

// hget is field of the hash at key.
func (tb testBundle) hget(t *testing.T, key, field string) string {
	t.Helper()
	v, err := tb.client.Do(context.Background(), tb.client.B().Hget().Key(key).Field(field).Build()).ToString()
	require.NoError(t, err)
	return v
}

// exists is 1 if key exists, else 0.
func (tb testBundle) exists(t *testing.T, key string) int64 {
	t.Helper()
	n, err := tb.client.Do(context.Background(), tb.client.B().Exists().Key(key).Build()).AsInt64()
	require.NoError(t, err)
	return n
}

func msg(text string) []byte {
	b, _ := json.Marshal(map[string]string{"id": text, "text": text})
	return b
}

func texts(t *testing.T, c *store.Claim) []string {
	t.Helper()
	require.NoError(t, c.Unreadable)
	out := make([]string, len(c.Batch.Messages))
	for i, m := range c.Batch.Messages {
		out[i] = m.Text
	}
	return out
}

func TestAppend_DeadlineArithmetic(t *testing.T) {
	tests := []struct {
		name       string
		maxWait    time.Duration
		maxMsgs    int
		gaps       []time.Duration // before each append after the first
		wantOffset time.Duration   // deadline of the last append, from t0
		wantReason string
	}{
		{"one message: now + quiet", time.Minute, 100, nil, 10 * time.Second, "quiet"},
		{"every message restarts the window", time.Minute, 100, []time.Duration{4 * time.Second, 4 * time.Second}, 18 * time.Second, "quiet"},
		{"capped at first + max wait", 15 * time.Second, 100, []time.Duration{4 * time.Second, 4 * time.Second}, 15 * time.Second, "max_wait"},
		{"no cap when max wait is 0", 0, 100, []time.Duration{9 * time.Second, 9 * time.Second, 9 * time.Second}, 37 * time.Second, "quiet"},
		{"max messages flushes at once", time.Minute, 3, []time.Duration{time.Second, time.Second}, 2 * time.Second, "max_messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := setup(t, func(o *store.Options) { o.MaxWait, o.MaxMessages = tt.maxWait, tt.maxMsgs })
			var a store.Appended
			for i := 0; i <= len(tt.gaps); i++ {
				if i > 0 {
					tb.advance(tt.gaps[i-1])
				}
				a = tb.add(t, "u1", fmt.Sprint("m", i))
				require.True(t, a.Stored)
			}
			require.Equal(t, t0+tt.wantOffset.Milliseconds(), a.Deadline)
			k := tb.buf.Keys().Conversation("u1")
			require.Equal(t, a.Deadline, tb.score(t, k.Due, "u1"))
			require.Equal(t, tt.wantReason, tb.hget(t, k.Meta, "reason"))
		})
	}
}

func TestAppend_DuplicateIDStoredOnce(t *testing.T) {
	tb := setup(t)
	a1 := tb.append(t, "u1", "wamid.1", "oi", false)
	tb.advance(time.Second)
	a2 := tb.append(t, "u1", "wamid.1", "oi", false)
	require.True(t, a1.Stored)
	require.False(t, a2.Stored)
	require.Equal(t, a1.Generation, a2.Generation, "a duplicate does not bump the generation")
	require.Equal(t, a1.Deadline, a2.Deadline, "a duplicate does not move the deadline")
	require.EqualValues(t, 1, a2.Count)

	// Still a duplicate after the batch was flushed and delivered.
	tb.advance(time.Minute)
	commit(t, tb.flush(t, "u1", "w1"))
	a3 := tb.append(t, "u1", "wamid.1", "oi", false)
	require.False(t, a3.Stored)

	// The same id in another conversation is another message.
	a4 := tb.append(t, "u2", "wamid.1", "oi", false)
	require.True(t, a4.Stored)
}

func TestAppend_DedupeWindowExpires(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.DedupeWindow = 5 * time.Second })
	ctx := context.Background()
	tb.add(t, "u1", "old")
	tb.advance(6 * time.Second)
	tb.add(t, "u1", "new") // trims ids older than the window
	n, err := tb.client.Do(ctx, tb.client.B().Zcard().Key(tb.buf.Keys().Conversation("u1").Seen).Build()).AsInt64()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "ids older than the dedupe window are trimmed")
}

func TestAppend_GenerationNeverRepeats(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	a1 := tb.add(t, "u1", "a")
	require.Equal(t, t0+1, a1.Generation, "a new conversation's generation starts at the clock")
	a2 := tb.add(t, "u1", "b")
	require.Equal(t, a1.Generation+1, a2.Generation)

	// The state expired (safety TTL): the generation restarts above every earlier one.
	k := tb.buf.Keys().Conversation("u1")
	tb.client.Do(ctx, tb.client.B().Del().Key(k.Meta, k.Buf).Build())
	tb.advance(time.Second)
	a3 := tb.add(t, "u1", "c")
	require.Greater(t, a3.Generation, a2.Generation)
}

// The claim checks the deadline alone (no generation): a message that
// arrives after the conversation was found due moves the deadline into the
// future, unless the burst has reached its max wait, and then the message
// belongs to the batch.
func TestFlush_ChecksDeadline(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.MaxWait = 15 * time.Second })
	a := tb.add(t, "u1", "a")

	require.Equal(t, store.FlushNotDue, tb.notFlushed(t, "u1", "w1"))

	tb.advance(10 * time.Second)
	c := tb.flush(t, "u1", "w1")
	require.Equal(t, a.Generation, c.Generation)
	require.Equal(t, "quiet", c.Batch.Reason)
	require.Equal(t, batch.FormatMillis(t0+10_000), c.Batch.FlushedAt)
	require.Equal(t, 1, c.Batch.Attempt, "the claim counts the first delivery attempt")
	require.Equal(t, []string{"a"}, texts(t, c))

	require.Equal(t, store.FlushGone, tb.notFlushed(t, "u1", "w2"), "a flushed conversation is not flushed twice")

	k := tb.buf.Keys().Conversation("u1")
	require.Zero(t, tb.exists(t, k.Buf), "the buffer moved into the batch")
	require.Equal(t, t0+10_000+30_000, tb.score(t, k.Inflight, "u1"))

	// Due, then a message within the quiet window: not due any more.
	tb.add(t, "u2", "b1") // due at t0+20s
	tb.advance(10 * time.Second)
	tb.add(t, "u2", "b2") // found due; now due at t0+30s
	require.Equal(t, store.FlushNotDue, tb.notFlushed(t, "u2", "w1"), "a message after the conversation was found due, within the quiet window, defers it")
	tb.advance(10 * time.Second)
	c2 := tb.flush(t, "u2", "w1")
	require.Equal(t, []string{"b1", "b2"}, texts(t, c2))

	// Due at max wait, then a message: still due, and it joins the batch.
	tb.add(t, "u3", "c1")
	tb.advance(8 * time.Second)
	tb.add(t, "u3", "c2") // capped: due 15s after c1
	tb.advance(7 * time.Second)
	late := tb.add(t, "u3", "c3") // found due; max wait has passed
	require.LessOrEqual(t, late.Deadline, late.Now, "past max wait the deadline stays past")
	c3 := tb.flush(t, "u3", "w1", "a message after max wait passed does not defer the batch")
	require.Equal(t, "max_wait", c3.Batch.Reason)
	require.Equal(t, late.Generation, c3.Generation)
	require.Equal(t, []string{"c1", "c2", "c3"}, texts(t, c3), "it is claimed with the batch")
}

func TestFlush_ClaimRaceHasOneWinner(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	for i := range 20 {
		tb.add(t, "u1", fmt.Sprint(i))
	}
	tb.advance(time.Minute)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, why, err := tb.buf.Flush(ctx, "u1", fmt.Sprint("w", w))
			if err == nil && why == "" {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 1, wins.Load())
}

func TestFlush_SerializesBatchesOfAConversation(t *testing.T) {
	tb := setup(t)
	first := tb.claim(t, "u1", "a")

	// Messages arriving while batch 1 is in flight wait for it.
	tb.add(t, "u1", "b")
	tb.advance(10 * time.Second)
	require.Equal(t, store.FlushBusy, tb.notFlushed(t, "u1", "w1"))
	k := tb.buf.Keys().Conversation("u1")
	require.Equal(t, t0+10_000+30_000, tb.score(t, k.Due, "u1"), "rescheduled at batch 1's lease end")

	done := commit(t, first)
	require.Equal(t, t0+20_000, done.Next, "committing restores the waiting buffer's own deadline")

	second := tb.flush(t, "u1", "w1")
	require.Equal(t, []string{"b"}, texts(t, second), "batch 2 holds only what came after batch 1")
	require.Greater(t, second.Generation, first.Generation)
}

func TestCommit_OnlyTheBatchInFlight(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a")
	done := commit(t, c)
	require.EqualValues(t, -1, done.Next)
	again := commit(t, c)
	require.True(t, again.Already, "a second commit of the same batch changes nothing")
	require.Empty(t, testenv.Keys(ctx, tb.client, tb.ns+":{s"+fmt.Sprintf("%02d", keys.Shard("u1"))+"}:batch:*"))
}

func TestReclaim_ExpiredLeaseRedrivesSameBatch(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c1 := tb.claim(t, "u1", "a", "b")
	require.Equal(t, 1, c1.Batch.Attempt, "the claim counted attempt 1")

	_, ok, err := tb.buf.Reclaim(ctx, "u1", "w2")
	require.NoError(t, err)
	require.False(t, ok, "a held lease is not reclaimed")

	tb.advance(31 * time.Second) // w1 died
	exp, err := tb.buf.Expired(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []store.Scheduled{{Key: "u1", At: t0 + 40_000}}, exp[keys.Shard("u1")].Due)

	c2, ok, err := tb.buf.Reclaim(ctx, "u1", "w2")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, c1.Generation, c2.Generation, "the same batch")
	require.Equal(t, c1.ID(), c2.ID())
	require.Equal(t, texts(t, c1), texts(t, c2))
	require.Equal(t, 1, c2.Batch.Attempt, "the take-over counts nothing by itself")
	require.Equal(t, "w2", c2.Owner)
	_, ok, err = tb.buf.Reclaim(ctx, "u1", "w3")
	require.NoError(t, err)
	require.False(t, ok, "one reclaimer wins")

	_, err = c1.NextAttempt(ctx)
	require.ErrorIs(t, err, store.ErrLost, "the old owner learns it lost the batch")
	require.ErrorIs(t, c1.Renew(ctx), store.ErrLost)
	require.NoError(t, c2.Begin(ctx))
	require.Equal(t, 2, c2.Batch.Attempt, "its delivery counts the next attempt when it begins")
	n, err := c2.NextAttempt(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, 3, c2.Batch.Attempt)
}

// Begin costs nothing for a fresh claim, renews one that waited for more
// than a third of its lease, and finds a claim taken over meanwhile.
func TestBegin_ConfirmsAClaimThatWaited(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	c := tb.claim(t, "u1", "a")
	require.NoError(t, c.Begin(ctx))
	require.Equal(t, 1, c.Batch.Attempt, "a fresh claim counts nothing more")

	stale := tb.claim(t, "u2", "b")
	tb.advance(31 * time.Second) // on the Redis clock its lease ran out
	other, ok, err := tb.buf.Reclaim(ctx, "u2", "w2")
	require.NoError(t, err)
	require.True(t, ok)
	// The claim's own view (local time) says fresh; make it old, as after
	// a long wait for a delivery slot.
	stale.Age(30 * time.Second)
	require.ErrorIs(t, stale.Begin(ctx), store.ErrLost, "a claim taken over while it waited is not delivered")
	require.NoError(t, other.Begin(ctx))
}

func TestDue_ReportsDueAndNext(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	tb.add(t, "early", "a")
	tb.advance(5 * time.Second)
	tb.add(t, "late", "b")
	tb.advance(6 * time.Second) // early is due (t0+10s), late at t0+15s

	sched, err := tb.buf.Due(ctx, 100)
	require.NoError(t, err)
	require.Len(t, sched, keys.Shards)
	var due []string
	next := int64(-1)
	for _, s := range sched {
		require.Equal(t, t0+11_000, s.Now)
		for _, d := range s.Due {
			due = append(due, d.Key)
		}
		if s.Next > 0 && (next < 0 || s.Next < next) {
			next = s.Next
		}
	}
	require.Equal(t, []string{"early"}, due)
	require.Equal(t, t0+15_000, next)
}

func TestKeys_HostileConversationKeys(t *testing.T) {
	tb := setup(t)
	ctx := context.Background()
	for _, key := range []string{"a{b}c", "}{", "x:y:z", "with space", "ünïcødé 🎉", string(make([]byte, 10_000))} {
		a, err := tb.buf.Append(ctx, key, "id", msg(key), false)
		require.NoError(t, err, "%q", key)
		require.True(t, a.Stored)
		tb.advance(time.Minute)
		c := tb.flush(t, key, "w")
		require.Equal(t, key, c.Key)
		require.Equal(t, []string{key}, texts(t, c))
		commit(t, c)
	}
}

func TestFlush_FloodIsClaimedInSlicesOfMaxMessages(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.MaxMessages = 3 })
	first := tb.claim(t, "u1", "m0")

	// A flood while batch 1 is in flight.
	var want []string
	for i := 1; i <= 7; i++ {
		m := fmt.Sprint("m", i)
		want = append(want, m)
		tb.add(t, "u1", m)
	}
	commit(t, first)

	var got []string
	gens := map[int64]bool{first.Generation: true}
	for range 3 {
		c := tb.flush(t, "u1", "w1")
		require.LessOrEqual(t, len(c.Batch.Messages), 3, "a batch never exceeds MAX_BATCH_MESSAGES")
		require.False(t, gens[c.Generation], "every slice has a batch id of its own")
		gens[c.Generation] = true
		got = append(got, texts(t, c)...)
		commit(t, c)
	}
	require.Equal(t, want, got, "every message once, in arrival order")
	require.Equal(t, store.FlushGone, tb.notFlushed(t, "u1", "w1"))
}

func TestAppend_FlushNowIsDueAtOnce(t *testing.T) {
	tb := setup(t)
	tb.append(t, "u1", "a", "hi", false)
	tb.advance(time.Second)
	a := tb.append(t, "u1", "b", "/start", true)
	require.Equal(t, t0+1_000, a.Deadline)
	tb.advance(time.Millisecond)
	c := tb.flush(t, "u1", "w1")
	require.Equal(t, "immediate", c.Batch.Reason)
	require.Equal(t, []string{"hi", "/start"}, texts(t, c), "with what was buffered before it")
}

// A buffer due at once (a flush word, a manual flush, the rest of a full
// buffer) stays due at once when another message comes before its claim:
// the message joins that batch instead of restarting the quiet window.
func TestAppend_DueAtOnceStaysDue(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.MaxMessages = 3 })
	tb.append(t, "word", "a", "/start", true)
	tb.advance(time.Millisecond)
	a := tb.append(t, "word", "b", "and then", false)
	require.Equal(t, t0, a.Deadline, "still due at once")
	c := tb.flush(t, "word", "w1")
	require.Equal(t, "immediate", c.Batch.Reason)
	require.Equal(t, []string{"/start", "and then"}, texts(t, c))

	tb.add(t, "manual", "hi")
	_, err := tb.buf.FlushNow(context.Background(), "manual")
	require.NoError(t, err)
	flushed := tb.clock.Load()
	tb.advance(time.Millisecond)
	a = tb.add(t, "manual", "more")
	require.Equal(t, flushed, a.Deadline)
	c = tb.flush(t, "manual", "w1")
	require.Equal(t, "manual", c.Batch.Reason)
	require.Equal(t, []string{"hi", "more"}, texts(t, c))

	// Four in a buffer of at most three: a slice of three, its rest due at
	// once, and a message after that joins the rest.
	tb.add(t, "full", "1", "2", "3", "4")
	c = tb.flush(t, "full", "w1")
	require.Equal(t, []string{"1", "2", "3"}, texts(t, c))
	commit(t, c)
	tb.advance(time.Millisecond)
	a = tb.add(t, "full", "5")
	require.LessOrEqual(t, a.Deadline, tb.clock.Load(), "the rest stays due")
	c = tb.flush(t, "full", "w1")
	require.Equal(t, "max_messages", c.Batch.Reason)
	require.Equal(t, []string{"4", "5"}, texts(t, c))

	// What a resume made due at once.
	tb.add(t, "resumed", "p")
	_, err = tb.buf.Pause(context.Background(), "resumed", 0)
	require.NoError(t, err)
	_, err = tb.buf.Resume(context.Background(), "resumed")
	require.NoError(t, err)
	tb.advance(time.Millisecond)
	a = tb.add(t, "resumed", "q")
	require.LessOrEqual(t, a.Deadline, tb.clock.Load(), "a resume's batch stays due")
	c = tb.flush(t, "resumed", "w1")
	require.Equal(t, "resumed", c.Batch.Reason)
	require.Equal(t, []string{"p", "q"}, texts(t, c))

	// A buffer whose quiet window ran out, still unclaimed, is not kept
	// due: a new message restarts the window (a lagging scheduler does not
	// end a burst that goes on).
	tb.add(t, "quiet", "x")
	tb.advance(11 * time.Second)
	a = tb.add(t, "quiet", "y")
	require.Greater(t, a.Deadline, tb.clock.Load())
}

func TestTyping_ExtendsQuietWindowCappedByMaxWait(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.MaxWait = 25 * time.Second })
	ctx := context.Background()

	r, err := tb.buf.Typing(ctx, "u1")
	require.NoError(t, err)
	require.False(t, r.Moved, "nothing buffered: nothing to extend")
	require.EqualValues(t, -1, r.Deadline)

	tb.add(t, "u1", "a") // deadline t0+10s
	tb.advance(8 * time.Second)
	r, err = tb.buf.Typing(ctx, "u1")
	require.NoError(t, err)
	require.True(t, r.Moved)
	require.Equal(t, t0+18_000, r.Deadline, "typing restarts the quiet window")

	tb.advance(12 * time.Second)
	r, err = tb.buf.Typing(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, t0+25_000, r.Deadline, "but never past first + MAX_WAIT")
	require.Equal(t, "max_wait", tb.hget(t, tb.buf.Keys().Conversation("u1").Meta, "reason"))

	r, err = tb.buf.FlushNow(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, t0+20_000, r.Deadline, "a manual flush is due at once")
	c := tb.flush(t, "u1", "w1")
	require.Equal(t, "manual", c.Batch.Reason)
}
