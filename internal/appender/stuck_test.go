package appender_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// Stuck tells since when appends fail because Redis does not answer
// (what the worker's intake handover watches), and only then: a Redis that
// answers with an error (out of memory) is not "stuck", since another
// worker would get the same answer. It also tells how often the queue gave
// the stuck messages back.
func TestStuck_OnlyWhileRedisDoesNotAnswer(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "appender")
	opts := testenv.StoreOptions()
	opts.RedisTimeout = 200 * time.Millisecond
	a := startWith(t, store.New(redis.Client, ns, opts), appender.Options{Lanes: 2})
	stuckSince := func() time.Time { since, _ := a.Stuck(); return since }
	require.True(t, stuckSince().IsZero())

	handle := func(ids ...string) []*settled {
		var all []*settled
		for i, id := range ids {
			s := &settled{}
			all = append(all, s)
			a.Handle(envelope(t, "u"+id, id, "oi"), counted{s, i + 2})
		}
		return all
	}
	waitSettled(t, handle("1", "2"))

	// Refused with an error reply: failing, not stuck.
	redis.RefuseWrites(t)
	oom := handle("3")
	time.Sleep(500 * time.Millisecond)
	require.Empty(t, oom[0].get())
	require.True(t, stuckSince().IsZero(), "an error reply is not Redis unreachable")
	redis.AcceptWrites(t)
	waitSettled(t, oom)

	// No answer: stuck since the first timeout.
	before := time.Now()
	redis.Freeze(t)
	frozen := handle("4", "5")
	require.Eventually(t, func() bool { _, d := a.Stuck(); return d == 3 }, 5*time.Second, 10*time.Millisecond,
		"both stuck; the most deliveries of the two")
	require.False(t, stuckSince().Before(before))
	redis.Resume()
	waitSettled(t, frozen)
	for i, s := range frozen {
		require.Equal(t, []queue.Outcome{queue.Ack}, s.get(), strconv.Itoa(i))
	}
	require.True(t, stuckSince().IsZero(), "nothing retried any more")
}

// counted is a settler whose message the queue gave back n times before.
type counted struct {
	*settled
	n int
}

func (c counted) DeliveryCount() int { return c.n }
