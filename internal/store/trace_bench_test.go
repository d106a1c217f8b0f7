package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// typist is a kind of user in the synthetic typing trace: the gaps between
// the messages of one burst are log-normal around median.
type typist struct {
	name   string
	median time.Duration
	sigma  float64
}

var typists = []typist{
	{"fast", 800 * time.Millisecond, 0.5},
	{"medium", 2500 * time.Millisecond, 0.5},
	{"slow", 5 * time.Second, 0.4},
}

// BenchmarkTypingTrace replays a synthetic typing trace through the real
// append and flush scripts on a simulated clock (the scheduler claims each
// conversation exactly at its deadline), with the fixed window (QUIET_WINDOW
// 12s) and the adaptive one (QUIET_WINDOW_MIN 2s, k 3 and 4), for each kind of
// typist: 40 users × 15 bursts of 2-6 messages, a minute apart. It reports
// the median wait from a burst's last message to its batch and the share of
// bursts split over more than one batch. Run: task bench:go BENCH=TypingTrace.
func BenchmarkTypingTrace(b *testing.B) {
	for _, k := range []float64{0, 3, 4} {
		mode := "fixed"
		if k > 0 {
			mode = fmt.Sprintf("adaptive-k%g", k)
		}
		for _, ty := range typists {
			b.Run(mode+"/"+ty.name, func(b *testing.B) {
				var wait time.Duration
				var split float64
				for range b.N {
					wait, split = replayTrace(b, k, ty)
				}
				b.ReportMetric(wait.Seconds(), "median-wait-s")
				b.ReportMetric(100*split, "split-%")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// replayTrace replays the trace of ty with the fixed window (k = 0) or the
// adaptive one with k.
func replayTrace(b *testing.B, k float64, ty typist) (medianWait time.Duration, splitShare float64) {
	ns := testenv.Namespace(b, "trace")
	clock := &atomic.Int64{}
	opts := testenv.StoreOptions()
	opts.QuietWindow, opts.MaxWait, opts.Now = 12*time.Second, 60*time.Second, clock.Load
	if k > 0 {
		opts.Adaptive = &store.Adaptive{Min: 2 * time.Second, K: k}
	}
	st := store.New(testenv.Redis(b, ns), ns, opts)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, uint64(len(ty.name)))) // the same trace for both modes
	var waits []time.Duration
	bursts, splits := 0, 0
	for u := range 40 {
		key := fmt.Sprintf("%s-%d", ty.name, u)
		t := int64(1_800_000_000_000)
		var deadline int64 = -1
		batchOf := map[string]int{} // message id -> batch number
		batches := 0
		// flushUntil claims the conversation while its deadline is before until.
		flushUntil := func(until int64) {
			for deadline >= 0 && deadline <= until {
				clock.Store(deadline)
				c, why, err := st.Flush(ctx, key, "trace")
				if err != nil || why != "" {
					b.Fatalf("flush %s at %d: %v %s", key, deadline, err, why)
				}
				batches++
				for _, m := range c.Batch.Messages {
					batchOf[m.ID] = batches
				}
				if _, err := c.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				deadline = -1
			}
		}
		for burst := range 15 {
			n := 2 + rng.IntN(5)
			var ids []string
			for i := range n {
				if i > 0 {
					gap := float64(ty.median) * math.Exp(ty.sigma*rng.NormFloat64())
					t += int64(min(gap, float64(11500*time.Millisecond)) / float64(time.Millisecond))
				}
				flushUntil(t)
				clock.Store(t)
				id := fmt.Sprintf("%d-%d", burst, i)
				a, err := st.Append(ctx, key, id, []byte(`{"id":"`+id+`","text":"x"}`), false)
				if err != nil {
					b.Fatal(err)
				}
				deadline = a.Deadline
				ids = append(ids, id)
			}
			last := t
			flushed := deadline
			flushUntil(math.MaxInt64)
			waits = append(waits, time.Duration(flushed-last)*time.Millisecond)
			bursts++
			if batchOf[ids[0]] != batchOf[ids[len(ids)-1]] {
				splits++
			}
			t += 60_000
		}
	}
	slices.Sort(waits)
	return waits[len(waits)/2], float64(splits) / float64(bursts)
}
