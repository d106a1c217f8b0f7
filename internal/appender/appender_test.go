package appender_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// settled records how a message was settled (it stands for a RabbitMQ
// message; the broker itself is exercised in internal/queue and e2e).
type settled struct {
	mu  sync.Mutex
	how []queue.Outcome
}

func (s *settled) Settle(o queue.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.how = append(s.how, o)
	return nil
}

func (s *settled) get() []queue.Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]queue.Outcome(nil), s.how...)
}

// newStore is a store whose conversations stay buffered during a test.
func newStore(client rueidis.Client, ns string) *store.Store {
	opts := testenv.StoreOptions()
	opts.QuietWindow, opts.MaxWait = time.Hour, 2*time.Hour
	return store.New(client, ns, opts)
}

// start starts an Appender with lanes lanes, stopped at the end of the test.
func start(t *testing.T, buf *store.Store, lanes int) *appender.Appender {
	t.Helper()
	return startWith(t, buf, appender.Options{Lanes: lanes})
}

// startWith is start with opts.
func startWith(t *testing.T, buf *store.Store, opts appender.Options) *appender.Appender {
	t.Helper()
	a := appender.New(buf, opts)
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(a.Stop)
	select {
	case <-a.Started():
	case <-time.After(5 * time.Second):
		t.Fatal("appender did not start")
	}
	return a
}

func envelope(t *testing.T, key, id, text string) []byte {
	e, err := ingest.ParseGeneric([]byte(`{"unique_id":"`+key+`","message":"`+text+`","message_id":"`+id+`"}`), time.Now(), nil)
	require.NoError(t, err)
	body, err := e.Encode()
	require.NoError(t, err)
	return body
}

// buffered is the ids of the messages conversation key holds, in order.
func buffered(t *testing.T, client rueidis.Client, ns, key string) []string {
	t.Helper()
	raw, err := client.Do(context.Background(), client.B().Lrange().Key(keys.New(ns).Conversation(key).Buf).Start(0).Stop(-1).Build()).AsStrSlice()
	require.NoError(t, err)
	ids := make([]string, 0, len(raw))
	for _, r := range raw {
		var m batch.Message
		require.NoError(t, json.Unmarshal([]byte(r), &m), r)
		ids = append(ids, m.ID)
	}
	return ids
}

func TestHandle_SettlesEveryMessageOnce(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "appender")
	client := testenv.Redis(t, ns)
	a := start(t, newStore(client, ns), 4)
	poison, msg, dup, typing := &settled{}, &settled{}, &settled{}, &settled{}
	a.Handle([]byte(`{not json`), poison)
	a.Handle(envelope(t, "u1", "m1", "oi"), msg)
	a.Handle(envelope(t, "u1", "m1", "oi"), dup)
	a.Handle([]byte(`{"key":"u1","kind":"typing","message":{}}`), typing)
	require.Eventually(t, func() bool {
		return len(msg.get()) == 1 && len(dup.get()) == 1 && len(typing.get()) == 1
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []queue.Outcome{queue.Reject}, poison.get(), "a poison message is rejected, never requeued")
	require.Equal(t, []queue.Outcome{queue.Ack}, msg.get())
	require.Equal(t, []queue.Outcome{queue.Ack}, dup.get(), "a duplicate is acked: it is stored already")
	require.Equal(t, []queue.Outcome{queue.Ack}, typing.get())
	require.Equal(t, []string{"m1"}, buffered(t, client, ns, "u1"), "stored once")
}

func TestHandle_KeepsEachConversationsOrder(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "appender")
	client := testenv.Redis(t, ns)
	a := start(t, newStore(client, ns), 4)
	const n = 60
	var want = map[string][]string{}
	var all []*settled
	for i := range n {
		key := "u" + strconv.Itoa(i%3)
		id := "m" + strconv.Itoa(i)
		want[key] = append(want[key], id)
		s := &settled{}
		all = append(all, s)
		a.Handle(envelope(t, key, id, "x"), s)
	}
	waitSettled(t, all)
	for _, s := range all {
		require.Equal(t, []queue.Outcome{queue.Ack}, s.get())
	}
	for key, ids := range want {
		require.Equal(t, ids, buffered(t, client, ns, key), key)
	}
}

func TestHandle_RetriesUntilRedisTakesTheAppend(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "appender")
	a := start(t, newStore(redis.Client, ns), 1)
	redis.RefuseWrites(t)
	s := &settled{}
	a.Handle(envelope(t, "u1", "m1", "oi"), s)
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, s.get(), "not settled while Redis refuses the append")
	redis.AcceptWrites(t)
	require.Eventually(t, func() bool { return len(s.get()) == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []queue.Outcome{queue.Ack}, s.get())
	require.Equal(t, []string{"m1"}, buffered(t, redis.Client, ns, "u1"))
}

// With Redis refusing writes, one lane's first message is being retried and
// the lane fills up until Handle blocks. Stop requeues all of them: the one
// in process, those the lane holds, the one Handle was blocked on, and
// those handed in after.
func TestStop_ReleasesWhatTheLanesHold(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "appender")
	a := appender.New(newStore(redis.Client, ns), appender.Options{Lanes: 1})

	before := &settled{}
	a.Handle(envelope(t, "u1", "early", "oi"), before)
	require.Equal(t, []queue.Outcome{queue.Requeue}, before.get(), "before Start: requeued")

	require.NoError(t, a.Start(context.Background()))
	redis.RefuseWrites(t)
	const n = 100
	all := make([]*settled, n)
	bodies := make([][]byte, n)
	for i := range all {
		all[i], bodies[i] = &settled{}, envelope(t, "u1", "m"+strconv.Itoa(i), "oi")
	}
	var handled atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range all {
			a.Handle(bodies[i], all[i])
			handled.Add(1)
		}
	}()
	// Handle blocks once the lane is full.
	deadline := time.Now().Add(10 * time.Second)
	for last := int32(-1); ; {
		h := handled.Load()
		if h == last && h > 0 {
			break
		}
		last = h
		require.True(t, time.Now().Before(deadline), "Handle never blocked")
		time.Sleep(200 * time.Millisecond)
	}
	blocked := handled.Load()
	require.Less(t, blocked, int32(n), "Handle blocks while the lane is full")
	for i := range blocked {
		require.Empty(t, all[i].get(), "message %d settled before Stop", i)
	}

	a.Stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Handle still blocked after Stop")
	}
	for i, s := range all {
		require.Equal(t, []queue.Outcome{queue.Release}, s.get(), "message %d", i)
	}

	after := &settled{}
	a.Handle(envelope(t, "u1", "late", "oi"), after)
	require.Equal(t, []queue.Outcome{queue.Release}, after.get(), "after Stop: released")
	redis.AcceptWrites(t)
	require.Empty(t, buffered(t, redis.Client, ns, "u1"))
}

func TestStop_LetsTheLaneFinishItsMessage(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "appender")
	client := testenv.Redis(t, ns)
	a := start(t, newStore(client, ns), 2)
	var all []*settled
	for i := range 20 {
		s := &settled{}
		all = append(all, s)
		a.Handle(envelope(t, "u"+strconv.Itoa(i%2), "m"+strconv.Itoa(i), "x"), s)
	}
	a.Stop()
	acked := 0
	for i, s := range all {
		got := s.get()
		require.Len(t, got, 1, "message %d settled once", i)
		require.Contains(t, []queue.Outcome{queue.Ack, queue.Release}, got[0])
		if got[0] == queue.Ack {
			acked++
		}
	}
	require.LessOrEqual(t, acked, len(buffered(t, client, ns, "u0"))+len(buffered(t, client, ns, "u1")),
		"what was acked is stored")

	// It starts again.
	require.NoError(t, a.Start(context.Background()))
	s := &settled{}
	a.Handle(envelope(t, "u0", "again", "x"), s)
	require.Eventually(t, func() bool { return len(s.get()) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []queue.Outcome{queue.Ack}, s.get())
}
