package delivery_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/delivery"
	"github.com/lullhq/lull/internal/poller"
	"github.com/lullhq/lull/internal/sink"
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

// A Redis that refuses writes for a while must not park deliveries in the
// sink backoff (a minute here): once it accepts writes again, the batch
// whose lease renewal failed and the one the poller was waiting to hand
// over are both delivered within seconds, neither with an extra attempt.
func TestDeliver_RedisOOMThenRecoveryDeliversWithinSeconds(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "delivery")
	buf := store.New(r.Client, ns, store.Options{
		QuietWindow: time.Millisecond, MaxWait: time.Minute, MaxMessages: 100,
		DedupeWindow: time.Hour, TTL: time.Hour, Lease: 10 * time.Second,
	})
	tb := testBundle{buf: buf, sink: &scripted{}}
	first := tb.claim(t, "u1")
	_, err := buf.Append(context.Background(), "u2", "m1", []byte(`{"id":"m1","text":"oi","received_at":"2026-11-25T20:00:00.000Z"}`), false)
	require.NoError(t, err)

	r.RefuseWrites(t)
	d := delivery.New(buf, delivery.Options{
		Sinks:        []sink.Sink{tb.sink},
		Concurrency:  1, // the poller needs the slot the failing delivery holds
		Retry:        backoff.Policy{Min: time.Minute, Max: time.Minute},
		MaxAttempts:  10,
		RedisTimeout: time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.True(t, d.Deliver(ctx, first))
	pl := poller.New(buf, d.Deliver, poller.Options{Owner: "w1", Interval: 100 * time.Millisecond, RedisTimeout: time.Second})
	polled := make(chan struct{})
	go func() { _ = pl.Run(ctx); close(polled) }()

	require.Never(t, func() bool { return len(tb.sink.got()) > 0 }, 2500*time.Millisecond, 50*time.Millisecond,
		"nothing is delivered while Redis refuses writes")
	r.AcceptWrites(t)
	recovered := time.Now()
	require.Eventually(t, func() bool { return len(tb.sink.got()) == 2 }, 2*time.Second, 10*time.Millisecond,
		"both batches delivered within 2s of Redis accepting writes again")
	t.Logf("delivered %v after recovery", time.Since(recovered).Round(time.Millisecond))
	cancel()
	<-polled
	d.Wait()
	for _, b := range tb.sink.got() {
		require.Equal(t, 1, b.Attempt, "%s: a Redis error is not a delivery attempt", b.BatchID)
	}
}

// One worker never runs two deliveries of one batch at once: not when
// Deliver is called twice, and not when its own poller reclaims the batch
// because the lease ran out while the delivery was still under way.
func TestDeliver_SameBatchNeverRunsTwiceAtOnce(t *testing.T) {
	tb := setup(t, nil)
	c := tb.claim(t, "u1")
	g := &gated{open: make(chan struct{})}
	rec := &logs{}
	d := delivery.New(tb.buf, delivery.Options{
		Sinks:  []sink.Sink{g},
		Retry:  backoff.Policy{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond},
		Logger: slog.New(rec),
	})
	ctx := context.Background()
	require.True(t, d.Deliver(ctx, c))
	require.Eventually(t, func() bool { return g.entered.Load() == 1 }, 2*time.Second, 5*time.Millisecond)
	require.False(t, d.Deliver(ctx, c), "a second Deliver of a batch under way starts nothing")
	require.Never(t, func() bool { return g.peak.Load() > 1 }, 200*time.Millisecond, 5*time.Millisecond,
		"never two deliveries of the batch at once")

	// The lease runs out under the running delivery (as when Redis failed
	// for a while); this worker's own poller reclaims it.
	k := tb.buf.Keys().Conversation("u1")
	require.NoError(t, tb.client.Do(ctx, tb.client.B().Zadd().Key(k.Inflight).ScoreMember().ScoreMember(0, "u1").Build()).Error())
	pctx, stop := context.WithCancel(ctx)
	pl := poller.New(tb.buf, d.Deliver, poller.Options{Owner: "w1", Interval: 20 * time.Millisecond})
	polled := make(chan struct{})
	go func() { _ = pl.Run(pctx); close(polled) }()
	require.Eventually(t, func() bool { return rec.count(slog.LevelInfo, "already being delivered") >= 2 }, 3*time.Second, 5*time.Millisecond,
		"the reclaimed batch is refused: %v", rec.messages(slog.LevelInfo))
	stop()
	<-polled

	close(g.open)
	d.Wait()
	require.EqualValues(t, 1, g.entered.Load(), "delivered once")
	require.EqualValues(t, 1, g.peak.Load(), "never two deliveries of the batch at once")
	res, err := tb.buf.Commit(ctx, c)
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
		_, err := tb.buf.Commit(context.Background(), c)
		return err
	}
	rec := &logs{}
	d := delivery.New(tb.buf, delivery.Options{
		Sinks:  []sink.Sink{tb.sink},
		Retry:  backoff.Policy{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond},
		Logger: slog.New(rec),
	})
	require.True(t, d.Deliver(context.Background(), c))
	d.Wait()
	require.Len(t, tb.sink.got(), 1, "delivered once, not retried")
	require.Empty(t, rec.messages(slog.LevelWarn), "nothing to warn about")
	require.Equal(t, 1, rec.count(slog.LevelDebug, "already committed"))
}

// A Redis that stops answering (connections open, no replies) does not hang
// a delivery: every call is bounded, and once the lease has run out without
// a renewal the delivery ends and frees its slot.
func TestDeliver_FrozenRedisEndsTheDeliveryAfterTheLease(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "delivery")
	const lease = 2 * time.Second
	buf := store.New(r.Client, ns, store.Options{
		QuietWindow: time.Millisecond, MaxWait: time.Minute, MaxMessages: 100,
		DedupeWindow: time.Hour, TTL: time.Hour, Lease: lease,
	})
	tb := testBundle{buf: buf, sink: &scripted{}}
	c := tb.claim(t, "u1")
	rec := &logs{}
	d := delivery.New(buf, delivery.Options{
		Sinks:        []sink.Sink{tb.sink},
		Retry:        backoff.Policy{Min: time.Minute, Max: time.Minute},
		RedisTimeout: 300 * time.Millisecond,
		Logger:       slog.New(rec),
	})
	r.Freeze(t)
	start := time.Now()
	require.True(t, d.Deliver(context.Background(), c))
	ended := make(chan struct{})
	go func() { d.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(lease + 3*time.Second):
		r.Resume() // lets the hung delivery end before the test does
		t.Fatalf("delivery still hung %v after Redis froze: %v", time.Since(start).Round(time.Millisecond), rec.messages(slog.LevelDebug))
	}
	t.Logf("delivery ended %v after Redis froze", time.Since(start).Round(time.Millisecond))
	require.Empty(t, tb.sink.got(), "no attempt could be counted, so none was made")
	require.Equal(t, 1, rec.count(slog.LevelWarn, "redis unreachable for longer than the lease"))
}
