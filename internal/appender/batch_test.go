package appender_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// roundTrips counts the pipelines of append.lua calls a store sends, and
// the calls in them.
type roundTrips struct {
	rueidis.Client
	pipelines, appends atomic.Int64
}

func (r *roundTrips) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	n := 0
	for i := range cmds {
		if strings.EqualFold(cmds[i].Commands()[0], "EVALSHA") {
			n++
		}
	}
	if n > 0 {
		r.pipelines.Add(1)
		r.appends.Add(int64(n))
	}
	return r.Client.DoMulti(ctx, cmds...)
}

func waitSettled(t *testing.T, all []*settled) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, s := range all {
			if len(s.get()) == 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}

// Messages waiting in a lane go to Redis together, each conversation's in
// order, a typing event in its place, each settled once.
func TestLane_AppendsWhatWaitsInOneRoundTrip(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "appender")
	spy := &roundTrips{Client: redis.Client}
	a := start(t, newStore(spy, ns), 1)

	// While Redis refuses writes, the first message is retried and the
	// rest pile up in the lane.
	redis.RefuseWrites(t)
	const n = 60
	want := map[string][]string{}
	var all []*settled
	for i := range n {
		key := "u" + strconv.Itoa(i%3)
		s := &settled{}
		all = append(all, s)
		if i == 31 {
			a.Handle([]byte(`{"key":"`+key+`","kind":"typing","message":{}}`), s)
			continue
		}
		id := "m" + strconv.Itoa(i)
		want[key] = append(want[key], id)
		a.Handle(envelope(t, key, id, "x"), s)
	}
	time.Sleep(300 * time.Millisecond)
	for i, s := range all {
		require.Empty(t, s.get(), "message %d settled while Redis refuses writes", i)
	}
	failing := spy.pipelines.Load()
	redis.AcceptWrites(t)
	waitSettled(t, all)
	for i, s := range all {
		require.Equal(t, []queue.Outcome{queue.Ack}, s.get(), "message %d", i)
	}
	for key, ids := range want {
		require.Equal(t, ids, buffered(t, redis.Client, ns, key), key)
	}
	// One message per conversation per round trip: 3 conversations, 20
	// messages each, is about 20 round trips instead of 59.
	trips := spy.pipelines.Load() - failing
	t.Logf("%d messages in %d round trips", n-1, trips)
	require.LessOrEqual(t, trips, int64(25))
}

// A conversation whose append keeps failing holds back its later messages
// (they are not stored before it), while other conversations go on.
func TestLane_FailedAppendHoldsItsConversationBack(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "appender")
	client := testenv.Redis(t, ns)
	spy := &roundTrips{Client: client}
	a := start(t, newStore(spy, ns), 1)
	ctx := context.Background()
	bad := keys.New(ns).Conversation("b").Seen
	// b's dedupe set is not a sorted set: its appends fail (WRONGTYPE) at
	// append.lua's first call, before it changes anything.
	require.NoError(t, client.Do(ctx, client.B().Set().Key(bad).Value("x").Build()).Error())

	order := []string{"b1", "a1", "b2", "a2", "b3", "a3"}
	got := map[string]*settled{}
	for _, id := range order {
		got[id] = &settled{}
		a.Handle(envelope(t, id[:1], id, "x"), got[id])
	}
	require.Eventually(t, func() bool {
		return len(got["a1"].get()) == 1 && len(got["a2"].get()) == 1 && len(got["a3"].get()) == 1
	}, 10*time.Second, 5*time.Millisecond, "a's messages are not held back by b's")
	require.Equal(t, []string{"a1", "a2", "a3"}, buffered(t, client, ns, "a"))
	time.Sleep(200 * time.Millisecond)
	for _, id := range []string{"b1", "b2", "b3"} {
		require.Empty(t, got[id].get(), "%s settled while b1 fails", id)
	}

	require.NoError(t, client.Do(ctx, client.B().Del().Key(bad).Build()).Error())
	waitSettled(t, []*settled{got["b1"], got["b2"], got["b3"]})
	for _, id := range order {
		require.Equal(t, []queue.Outcome{queue.Ack}, got[id].get(), id)
	}
	require.Equal(t, []string{"b1", "b2", "b3"}, buffered(t, client, ns, "b"))
}
