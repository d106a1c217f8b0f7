package delivery_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/delivery"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/store"
)

// gate is a sink that holds every delivery until opened, and records them.
type gate struct {
	open chan struct{}
	mu   sync.Mutex
	ids  []string
}

func (g *gate) Name() string { return "gate" }

func (g *gate) Deliver(ctx context.Context, b batch.Batch, _ []byte) error {
	g.mu.Lock()
	g.ids = append(g.ids, b.BatchID)
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (g *gate) got() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.ids...)
}

// A claim that waits for a delivery slot longer than its lease may have
// been taken over by another worker meanwhile: when its slot comes, this
// worker must not deliver it beside the new owner.
func TestDeliver_ClaimTakenOverWhileWaitingForASlotIsNotDelivered(t *testing.T) {
	tb := setup(t, nil)
	const lease = 300 * time.Millisecond
	st := store.New(tb.client, tb.keys.Namespace(), storeOptions(lease))
	g := &gate{open: make(chan struct{})}
	d := delivery.New(delivery.Options{
		Sinks: []sink.Sink{g}, Concurrency: 1, MaxAttempts: 3,
		Retry: backoff.Policy{Min: 10 * time.Millisecond, Max: 10 * time.Millisecond},
	})
	tb.buf = st
	first, waiting := tb.claim(t, "u1"), tb.claim(t, "u2")
	ctx := context.Background()
	require.True(t, d.Deliver(ctx, first))
	require.Eventually(t, func() bool { return len(g.got()) == 1 }, 2*time.Second, 5*time.Millisecond)
	started := make(chan bool, 1)
	go func() { started <- d.Deliver(ctx, waiting) }() // blocks: the only slot is u1's

	// u2's lease runs out while it waits; another worker takes it over and
	// delivers it.
	var other *store.Claim
	require.Eventually(t, func() bool {
		c, ok, err := st.Reclaim(ctx, "u2", "w2")
		require.NoError(t, err)
		other = c
		return ok
	}, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, other.Begin(ctx))
	_, err := other.Commit(ctx)
	require.NoError(t, err)

	close(g.open) // u1 is done; u2 gets the slot
	require.True(t, <-started)
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, d.Wait(waitCtx))
	require.Equal(t, []string{first.ID()}, g.got(), "u2 was delivered by its new owner only")
}

// Once ctx has ended, Deliver starts nothing, even with a slot free, and
// releases the claim so that another worker re-drives it at once.
func TestDeliver_AfterShutdownReleasesInsteadOfStarting(t *testing.T) {
	tb := setup(t, nil)
	d := newDeliverer(tb.sink, 10)
	c := tb.claim(t, "u1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.False(t, d.Deliver(ctx, c))
	require.Empty(t, tb.sink.got(), "no attempt after shutdown began")
	again, ok, err := tb.buf.Reclaim(context.Background(), "u1", "w2")
	require.NoError(t, err)
	require.True(t, ok, "released: re-driven at once, not after the lease")
	require.Equal(t, c.ID(), again.ID())
}
