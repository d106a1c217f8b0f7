package delivery_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/delivery"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// scripted is a sink that fails as told and records what it was given.
type scripted struct {
	mu       sync.Mutex
	fail     func(attempt int) error
	received []batch.Batch
}

func (s *scripted) Name() string { return "scripted" }

func (s *scripted) Deliver(_ context.Context, b batch.Batch, _ []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received = append(s.received, b)
	if s.fail != nil {
		return s.fail(b.Attempt)
	}
	return nil
}

func (s *scripted) got() []batch.Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]batch.Batch(nil), s.received...)
}

type testBundle struct {
	buf    *store.Store
	sink   *scripted
	client rueidis.Client
	keys   keys.Space
}

// storeOptions are the tests' store options: due 1ms after a message, a
// lease of lease.
func storeOptions(lease time.Duration) store.Options {
	opts := testenv.StoreOptions()
	opts.QuietWindow, opts.TTL, opts.Lease = time.Millisecond, time.Hour, lease
	return opts
}

func setup(t *testing.T, fail func(int) error) testBundle {
	t.Helper()
	t.Parallel()
	ns := testenv.Namespace(t, "delivery")
	client := testenv.Redis(t, ns)
	return testBundle{buf: store.New(client, ns, storeOptions(3*time.Second)), sink: &scripted{fail: fail}, client: client, keys: keys.New(ns)}
}

const message = `{"id":"m1","text":"oi","received_at":"2026-11-25T20:00:00.000Z"}`

// claim buffers one message for key and claims it.
func (tb testBundle) claim(t *testing.T, key string) *store.Claim {
	t.Helper()
	ctx := context.Background()
	_, err := tb.buf.Append(ctx, key, "m1", []byte(message), false)
	require.NoError(t, err)
	var c *store.Claim
	require.Eventually(t, func() bool {
		f := tb.buf.FlushDue(ctx, []string{key}, "w1")[0]
		require.NoError(t, f.Err)
		c = f.Claim
		return f.Result == ""
	}, 2*time.Second, 5*time.Millisecond)
	require.NotNil(t, c)
	return c
}

// newDeliverer is the tests' deliverer to s: 4 at once, retries after
// 10-20ms, up to maxAttempts attempts; mods change these options.
func newDeliverer(s sink.Sink, maxAttempts int, mods ...func(*delivery.Options)) *delivery.Deliverer {
	opts := delivery.Options{
		Sinks:       []sink.Sink{s},
		Concurrency: 4,
		Retry:       backoff.Policy{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond},
		MaxAttempts: maxAttempts,
	}
	for _, m := range mods {
		m(&opts)
	}
	return delivery.New(opts)
}

// logTo has a deliverer log to rec.
func logTo(rec *logs) func(*delivery.Options) {
	return func(o *delivery.Options) { o.Logger = slog.New(rec) }
}

func (tb testBundle) deliverer(maxAttempts int, mods ...func(*delivery.Options)) *delivery.Deliverer {
	return newDeliverer(tb.sink, maxAttempts, mods...)
}

// deliverAll delivers c with a deliverer of up to maxAttempts attempts and
// waits for the delivery to end.
func (tb testBundle) deliverAll(t *testing.T, c *store.Claim, maxAttempts int) {
	t.Helper()
	d := tb.deliverer(maxAttempts)
	d.Deliver(context.Background(), c)
	wait(t, d)
}

// deadLetter is the one dead letter in the store.
func (tb testBundle) deadLetter(t *testing.T) store.Dead {
	t.Helper()
	dead, err := tb.buf.DeadLetters(context.Background())
	require.NoError(t, err)
	require.Len(t, dead, 1)
	return dead[0]
}

// wait waits for every delivery d started to end.
func wait(t *testing.T, d *delivery.Deliverer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, d.Wait(ctx))
}

func TestDeliver_RetriesThenCommits(t *testing.T) {
	tb := setup(t, func(attempt int) error {
		if attempt < 3 {
			return errors.New("receiver down")
		}
		return nil
	})
	c := tb.claim(t, "u1")
	tb.deliverAll(t, c, 10)
	got := tb.sink.got()
	require.Len(t, got, 3)
	for i, b := range got {
		require.Equal(t, batch.ID("u1", c.Generation), b.BatchID, "every attempt is the same batch")
		require.Equal(t, i+1, b.Attempt)
	}
	res, err := c.Commit(context.Background())
	require.NoError(t, err)
	require.True(t, res.Already, "committed after the successful attempt")
}

func TestDeliver_PermanentFailureIsDeadLetteredAtOnce(t *testing.T) {
	tb := setup(t, func(int) error { return sink.Permanent(errors.New("status 400")) })
	tb.deliverAll(t, tb.claim(t, "u1"), 10)
	require.Len(t, tb.sink.got(), 1)
	require.Contains(t, tb.deadLetter(t).Error, "status 400")
}

func TestDeliver_DeadLetteredAfterMaxAttempts(t *testing.T) {
	tb := setup(t, func(int) error { return errors.New("status 503") })
	tb.deliverAll(t, tb.claim(t, "u1"), 4)
	require.Len(t, tb.sink.got(), 4)
	require.Equal(t, 4, tb.deadLetter(t).Batch.Attempt)
}

func TestDeliver_ShutdownReleasesTheBatch(t *testing.T) {
	tb := setup(t, func(int) error { return errors.New("receiver down") })
	c := tb.claim(t, "u1")
	d := tb.deliverer(10, func(o *delivery.Options) {
		o.Retry = backoff.Policy{Min: time.Hour, Max: time.Hour} // parks in backoff
	})
	ctx, cancel := context.WithCancel(context.Background())
	d.Deliver(ctx, c)
	require.Eventually(t, func() bool { return len(tb.sink.got()) == 1 }, 2*time.Second, 5*time.Millisecond)
	cancel()
	wait(t, d)
	again, ok, err := tb.buf.Reclaim(context.Background(), "u1", "w2")
	require.NoError(t, err)
	require.True(t, ok, "released at shutdown: another worker takes it without waiting for the lease")
	require.Equal(t, c.Generation, again.Generation)
}
