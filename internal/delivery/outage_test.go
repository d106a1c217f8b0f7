package delivery_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/delivery"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// gated is a sink that holds every delivery until open is closed, and
// counts how many deliveries of one batch run at the same time.
type gated struct {
	open    chan struct{}
	entered atomic.Int32
	running atomic.Int32
	peak    atomic.Int32
}

func (g *gated) Name() string { return "gated" }

func (g *gated) Deliver(ctx context.Context, _ batch.Batch, _ []byte) error {
	g.entered.Add(1)
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A Redis that refuses writes for a while must not park deliveries: the
// Redis call that failed is retried by the claim, quickly, and counts no
// attempt. Once Redis accepts writes again, the batch whose retry could not
// be counted and the one a scheduler was waiting to hand over (it needs the
// slot the first holds) are both delivered and committed within seconds,
// neither with an extra attempt.
//
// The claim counts attempt 1, so the first attempt needs no Redis call; the
// call a refusing Redis stops is the one that counts attempt 2 (renew.lua;
// commit.lua and flush.lua run to the end under maxmemory, as their first
// write, a DEL, is one Redis allows then).
func TestDeliver_RedisOOMThenRecoveryDeliversWithinSeconds(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "delivery")
	opts := storeOptions(10 * time.Second)
	opts.RedisTimeout = time.Second
	buf := store.New(r.Client, ns, opts)
	var failed atomic.Bool
	tb := testBundle{buf: buf, client: r.Client, keys: keys.New(ns), sink: &scripted{fail: func(int) error {
		if failed.CompareAndSwap(false, true) {
			return errors.New("receiver down") // once: u1's attempt 1
		}
		return nil
	}}}
	first := tb.claim(t, "u1")
	_, err := buf.Append(context.Background(), "u2", "m1", []byte(message), false)
	require.NoError(t, err)

	r.RefuseWrites(t)
	d := tb.deliverer(10, func(o *delivery.Options) {
		o.Concurrency = 1 // the scheduler needs the slot the failing delivery holds
		o.Retry = backoff.Policy{Min: 50 * time.Millisecond, Max: 100 * time.Millisecond}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.True(t, d.Deliver(ctx, first))
	// What a scheduler does: claim u2 as soon as it can, and hand it over.
	scheduled := make(chan struct{})
	go func() {
		defer close(scheduled)
		for ctx.Err() == nil {
			if f := buf.FlushDue(ctx, []string{"u2"}, "w1")[0]; f.Claim != nil {
				d.Deliver(ctx, f.Claim)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	require.Eventually(t, func() bool { return len(tb.sink.got()) == 1 }, 2*time.Second, 10*time.Millisecond,
		"attempt 1, counted by the claim, needs no Redis call")
	require.Never(t, func() bool { return len(tb.sink.got()) > 1 }, 2500*time.Millisecond, 50*time.Millisecond,
		"nothing more is delivered while Redis refuses writes")
	r.AcceptWrites(t)
	recovered := time.Now()
	committed := func(key string) bool {
		n, err := r.Client.Do(ctx, r.Client.B().Exists().Key(tb.keys.Conversation(key).Batch).Build()).AsInt64()
		return err == nil && n == 0
	}
	require.Eventually(t, func() bool { return len(tb.sink.got()) == 3 && committed("u1") && committed("u2") }, 2*time.Second, 10*time.Millisecond,
		"both batches delivered and committed within 2s of Redis accepting writes again")
	t.Logf("delivered %v after recovery", time.Since(recovered).Round(time.Millisecond))
	cancel()
	<-scheduled
	wait(t, d)
	attempts := map[string][]int{}
	for _, b := range tb.sink.got() {
		attempts[b.Key] = append(attempts[b.Key], b.Attempt)
	}
	require.Equal(t, map[string][]int{"u1": {1, 2}, "u2": {1}}, attempts, "a Redis error is not a delivery attempt")
}

// One worker never runs two deliveries of one batch at once: not when
// Deliver is called twice, and not when its own reclaimer takes the batch
// over because the lease ran out while the delivery was still under way.
func TestDeliver_SameBatchNeverRunsTwiceAtOnce(t *testing.T) {
	tb := setup(t, nil)
	c := tb.claim(t, "u1")
	g := &gated{open: make(chan struct{})}
	rec := &logs{}
	d := newDeliverer(g, 10, logTo(rec))
	ctx := context.Background()
	require.True(t, d.Deliver(ctx, c))
	require.Eventually(t, func() bool { return g.entered.Load() == 1 }, 2*time.Second, 5*time.Millisecond)
	require.False(t, d.Deliver(ctx, c), "a second Deliver of a batch under way starts nothing")
	require.Never(t, func() bool { return g.peak.Load() > 1 }, 200*time.Millisecond, 5*time.Millisecond,
		"never two deliveries of the batch at once")

	// The lease runs out under the running delivery (as when Redis failed
	// for a while); this worker's own reclaimer takes the batch over.
	k := tb.keys.Conversation("u1")
	require.NoError(t, tb.client.Do(ctx, tb.client.B().Zadd().Key(k.Inflight).ScoreMember().ScoreMember(0, "u1").Build()).Error())
	again, ok, err := tb.buf.Reclaim(ctx, "u1", "w1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, c.ID(), again.ID())
	require.False(t, d.Deliver(ctx, again), "the reclaimed batch is not started while its delivery runs")
	require.Equal(t, 2, rec.count(slog.LevelInfo, "already being delivered"),
		"the reclaimed batch is refused: %v", rec.messages(slog.LevelInfo))
	require.Never(t, func() bool { return g.peak.Load() > 1 }, 100*time.Millisecond, 5*time.Millisecond,
		"never two deliveries of the batch at once")

	close(g.open)
	wait(t, d)
	require.EqualValues(t, 1, g.entered.Load(), "delivered once")
	require.EqualValues(t, 1, g.peak.Load(), "never two deliveries of the batch at once")
	res, err := c.Commit(ctx)
	require.NoError(t, err)
	require.True(t, res.Already, "the one delivery committed the batch")
}

// A commit applied by Redis whose reply was lost is retried; the retry
// finds the batch already committed, and that is a success, not a batch
// "taken over" or "not committed".
func TestDeliver_CommitRetryAfterLostReplyIsSuccess(t *testing.T) {
	tb := setup(t, nil)
	c := tb.claim(t, "u1")
	// The sink commits the batch itself: to the deliverer's commit that
	// follows, this is exactly a first commit whose reply never came.
	tb.sink.fail = func(int) error {
		_, err := c.Commit(context.Background())
		return err
	}
	rec := &logs{}
	d := tb.deliverer(10, logTo(rec))
	require.True(t, d.Deliver(context.Background(), c))
	wait(t, d)
	require.Len(t, tb.sink.got(), 1, "delivered once, not retried")
	require.Empty(t, rec.messages(slog.LevelWarn), "nothing to warn about")
	require.Equal(t, 1, rec.count(slog.LevelDebug, "already committed"))
}

// A Redis that stops answering (connections open, no replies) does not hang
// a delivery: every call is bounded, and once the lease has run out without
// a renewal the delivery ends and frees its slot. Both Redis calls a
// delivery makes are covered: counting a retry's attempt (attempt 1 was
// counted by the claim, before Redis froze) and the commit.
func TestDeliver_FrozenRedisEndsTheDeliveryAfterTheLease(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		fail func(attempt int) error
	}{
		{"retry", func(int) error { return errors.New("receiver down") }},
		{"commit", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := testenv.StartRedisServer(t)
			ns := testenv.Namespace(t, "delivery")
			const lease = 2 * time.Second
			opts := storeOptions(lease)
			opts.RedisTimeout = 300 * time.Millisecond
			buf := store.New(r.Client, ns, opts)
			tb := testBundle{buf: buf, sink: &scripted{fail: tt.fail}, client: r.Client, keys: keys.New(ns)}
			c := tb.claim(t, "u1")
			rec := &logs{}
			d := tb.deliverer(10, logTo(rec))
			r.Freeze(t)
			start := time.Now()
			require.True(t, d.Deliver(context.Background(), c))
			ended := make(chan struct{})
			go func() { _ = d.Wait(context.Background()); close(ended) }()
			select {
			case <-ended:
			case <-time.After(lease + 3*time.Second):
				r.Resume() // lets the hung delivery end before the test does
				t.Fatalf("delivery still hung %v after Redis froze: %v", time.Since(start).Round(time.Millisecond), rec.messages(slog.LevelDebug))
			}
			t.Logf("delivery ended %v after Redis froze", time.Since(start).Round(time.Millisecond))
			got := tb.sink.got()
			require.Len(t, got, 1, "attempt 1, counted by the claim, was made; no later attempt could be counted, so none was made")
			require.Equal(t, 1, got[0].Attempt)
			require.Equal(t, 1, rec.count(slog.LevelWarn, "redis unreachable for longer than the lease"), "%v", rec.messages(slog.LevelWarn))
		})
	}
}
