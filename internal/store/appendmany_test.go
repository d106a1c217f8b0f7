package store_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// spyClient records the commands a store sends, and can answer chosen
// EVALSHA calls with a real NOSCRIPT error instead of sending them, as
// after a Redis restart or SCRIPT FLUSH (without flushing the shared
// Redis).
type spyClient struct {
	rueidis.Client
	mu       sync.Mutex
	multis   [][]string // each DoMulti's command names
	noScript func(call, i int) bool
	calls    int
}

func (s *spyClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	s.mu.Lock()
	call := s.calls
	s.calls++
	names := make([]string, len(cmds))
	for i := range cmds {
		names[i] = strings.ToUpper(cmds[i].Commands()[0])
	}
	s.multis = append(s.multis, names)
	s.mu.Unlock()

	out := make([]rueidis.RedisResult, len(cmds))
	var send []rueidis.Completed
	var at []int
	for i, c := range cmds {
		if names[i] == "EVALSHA" && s.noScript != nil && s.noScript(call, i) {
			// A real NOSCRIPT reply, from an unknown SHA1.
			out[i] = s.Client.Do(ctx, s.Client.B().Evalsha().Sha1(strings.Repeat("0", 40)).Numkeys(0).Build())
			continue
		}
		send = append(send, c)
		at = append(at, i)
	}
	for n, r := range s.Client.DoMulti(ctx, send...) {
		out[at[n]] = r
	}
	return out
}

func (s *spyClient) sent() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.multis...)
}

func spyStore(t *testing.T) (*store.Store, *spyClient, rueidis.Client) {
	t.Helper()
	ns := testenv.Namespace(t, "appendmany")
	client := testenv.Redis(t, ns)
	spy := &spyClient{Client: client}
	return store.New(spy, ns, testenv.StoreOptions()), spy, client
}

func jobMsg(id string) []byte { return []byte(`{"id":"` + id + `"}`) }

func TestAppendMany_OneRoundTripLikeAppend(t *testing.T) {
	t.Parallel()
	st, spy, client := spyStore(t)
	ctx := context.Background()

	jobs := []store.AppendJob{
		{Key: "a", ID: "a1", Message: jobMsg("a1")},
		{Key: "b", ID: "b1", Message: jobMsg("b1")},
		{Key: "a", ID: "a2", Message: jobMsg("a2")},
		{Key: "a", ID: "a1", Message: jobMsg("a1")}, // duplicate
		{Key: "c", ID: "c1", Message: jobMsg("c1"), FlushNow: true},
	}
	got, errs := st.AppendMany(ctx, jobs)
	require.Len(t, got, len(jobs))
	require.Len(t, errs, len(jobs))
	for i, err := range errs {
		require.NoError(t, err, "job %d", i)
	}
	require.Equal(t, []bool{true, true, true, false, true}, []bool{got[0].Stored, got[1].Stored, got[2].Stored, got[3].Stored, got[4].Stored})
	require.Equal(t, []int64{1, 1, 2, 2, 1}, []int64{got[0].Count, got[1].Count, got[2].Count, got[3].Count, got[4].Count})
	require.Equal(t, got[4].Now, got[4].Deadline, "FlushNow makes it due at once")
	require.Greater(t, got[0].Deadline, got[0].Now)

	// One pipeline of EVALSHA, no SCRIPT LOAD.
	require.Equal(t, [][]string{{"EVALSHA", "EVALSHA", "EVALSHA", "EVALSHA", "EVALSHA"}}, spy.sent())

	// Stored in order, as Append would have.
	buf, err := client.Do(ctx, client.B().Lrange().Key(st.Keys().Conversation("a").Buf).Start(0).Stop(-1).Build()).AsStrSlice()
	require.NoError(t, err)
	require.Equal(t, []string{string(jobMsg("a1")), string(jobMsg("a2"))}, buf)

	// The alarm heard of the earliest deadline.
	require.False(t, st.Alarm().Earliest().IsZero())

	// And Append agrees with what AppendMany stored.
	a, err := st.Append(ctx, "a", "a2", jobMsg("a2"), false)
	require.NoError(t, err)
	require.False(t, a.Stored)
	require.Equal(t, int64(2), a.Count)

	none, noErrs := st.AppendMany(ctx, nil)
	require.Empty(t, none)
	require.Empty(t, noErrs)
}

// NOSCRIPT (Redis lost its script cache) on some of the calls: those ran
// nothing, and are run again with EVAL (which caches the script again).
func TestAppendMany_NoScriptFallsBack(t *testing.T) {
	t.Parallel()
	st, spy, client := spyStore(t)
	ctx := context.Background()
	spy.noScript = func(call, i int) bool { return call == 0 && i != 1 }

	jobs := []store.AppendJob{
		{Key: "a", ID: "a1", Message: jobMsg("a1")},
		{Key: "b", ID: "b1", Message: jobMsg("b1")},
		{Key: "c", ID: "c1", Message: jobMsg("c1")},
	}
	got, errs := st.AppendMany(ctx, jobs)
	for i, err := range errs {
		require.NoError(t, err, "job %d", i)
		require.True(t, got[i].Stored, "job %d", i)
		require.Equal(t, int64(1), got[i].Count, "job %d", i)
	}
	sent := spy.sent()
	require.Len(t, sent, 2)
	require.Equal(t, []string{"EVALSHA", "EVALSHA", "EVALSHA"}, sent[0])
	require.Equal(t, []string{"EVAL", "EVAL"}, sent[1], "the NOSCRIPT calls again, with the script's source")
	for _, key := range []string{"a", "b", "c"} {
		n, err := client.Do(ctx, client.B().Llen().Key(st.Keys().Conversation(key).Buf).Build()).AsInt64()
		require.NoError(t, err)
		require.Equal(t, int64(1), n, key)
	}
}

func TestAppendMany_ErrorsPerJob(t *testing.T) {
	t.Parallel()
	st, _, client := spyStore(t)
	ctx := context.Background()
	// b's buffer key holds a string: its append.lua call fails (WRONGTYPE),
	// the others are stored.
	require.NoError(t, client.Do(ctx, client.B().Set().Key(st.Keys().Conversation("b").Buf).Value("x").Build()).Error())
	got, errs := st.AppendMany(ctx, []store.AppendJob{
		{Key: "a", ID: "a1", Message: jobMsg("a1")},
		{Key: "b", ID: "b1", Message: jobMsg("b1")},
		{Key: "c", ID: "c1", Message: jobMsg("c1")},
	})
	require.NoError(t, errs[0])
	require.Error(t, errs[1])
	require.Contains(t, errs[1].Error(), "append "+st.Keys().Conversation("b").Buf)
	require.NoError(t, errs[2])
	require.True(t, got[0].Stored)
	require.True(t, got[2].Stored)
}

// BenchmarkAppendMany compares one append.lua round trip per message with
// pipelines of n over 1000 conversations, each pipeline of distinct
// conversations: from one caller (one lane), and from 16 at once (the
// appender's lanes; rueidis already pipelines their concurrent calls on a
// shared connection).
func BenchmarkAppendMany(b *testing.B) {
	for _, c := range []struct{ callers, n int }{{1, 1}, {1, 16}, {1, 64}, {16, 1}, {16, 16}, {16, 64}} {
		n := c.n
		name := fmt.Sprintf("callers=%d/batch=%d", c.callers, n)
		if n == 1 {
			name = fmt.Sprintf("callers=%d/one-by-one", c.callers)
		}
		b.Run(name, func(b *testing.B) {
			buf := benchBuffer(b)
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism(max(c.callers/runtime.GOMAXPROCS(0), 1))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					first := next.Add(int64(n)) - int64(n)
					if n == 1 {
						if _, err := buf.Append(ctx, fmt.Sprint("user-", first%1000), fmt.Sprint("m", first), benchMsg, false); err != nil {
							b.Fatal(err)
						}
						continue
					}
					jobs := make([]store.AppendJob, n)
					for k := range jobs {
						i := first + int64(k)
						jobs[k] = store.AppendJob{Key: fmt.Sprint("user-", i%1000), ID: fmt.Sprint("m", i), Message: benchMsg}
					}
					_, errs := buf.AppendMany(ctx, jobs)
					for _, err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
			})
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// A key of the conversation that holds another type, or a counter that is
// not an integer (written by something else), makes the append fail before
// it writes anything: once the key is fixed, the retry stores the message
// instead of dropping it as a duplicate of the failed attempt.
func TestAppend_WrongTypeKeyWritesNothing(t *testing.T) {
	t.Parallel()
	st, _, client := spyStore(t)
	ctx := context.Background()
	conv := st.Keys().Conversation("w")
	for _, bad := range []string{conv.Buf, conv.Meta} {
		require.NoError(t, client.Do(ctx, client.B().Set().Key(bad).Value("x").Build()).Error())
		_, errs := st.AppendMany(ctx, []store.AppendJob{{Key: "w", ID: "w1", Message: jobMsg("w1")}})
		require.ErrorContains(t, errs[0], "WRONGTYPE")
		require.ErrorContains(t, errs[0], bad)
		require.NoError(t, client.Do(ctx, client.B().Del().Key(bad).Build()).Error())
	}
	// A counter of meta that is not an integer: refused the same way.
	require.NoError(t, client.Do(ctx, client.B().Hset().Key(conv.Meta).FieldValue().FieldValue("seq", "x").Build()).Error())
	_, errs := st.AppendMany(ctx, []store.AppendJob{{Key: "w", ID: "w1", Message: jobMsg("w1")}})
	require.ErrorContains(t, errs[0], "field seq is not an integer")
	require.NoError(t, client.Do(ctx, client.B().Del().Key(conv.Meta).Build()).Error())

	got, errs := st.AppendMany(ctx, []store.AppendJob{{Key: "w", ID: "w1", Message: jobMsg("w1")}})
	require.NoError(t, errs[0])
	require.True(t, got[0].Stored, "the retry stores it")
	n, err := client.Do(ctx, client.B().Llen().Key(conv.Buf).Build()).AsInt64()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
}

// Unreachable tells Redis not answering from an error reply of Redis.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	st, _, client := spyStore(t)
	ctx := context.Background()
	require.NoError(t, client.Do(ctx, client.B().Set().Key(st.Keys().Conversation("r").Buf).Value("x").Build()).Error())
	_, errs := st.AppendMany(ctx, []store.AppendJob{{Key: "r", ID: "r1", Message: jobMsg("r1")}})
	require.Error(t, errs[0])
	require.False(t, store.Unreachable(errs[0]), "an error reply: %v", errs[0])

	timedOut, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-timedOut.Done()
	_, errs = st.AppendMany(timedOut, []store.AppendJob{{Key: "s", ID: "s1", Message: jobMsg("s1")}})
	require.Error(t, errs[0])
	require.True(t, store.Unreachable(errs[0]), "no answer in time: %v", errs[0])
	require.False(t, store.Unreachable(nil))
}
