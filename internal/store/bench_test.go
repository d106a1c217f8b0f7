package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

func benchBuffer(b *testing.B) *store.Store {
	ns := testenv.Namespace(b, "bench")
	opts := testenv.StoreOptions()
	opts.QuietWindow, opts.MaxWait, opts.MaxMessages, opts.Lease = time.Hour, 2*time.Hour, 1<<30, time.Minute
	return store.New(testenv.Redis(b, ns), ns, opts)
}

var benchMsg = []byte(`{"id":"x","text":"queria saber do meu pedido","type":"text","received_at":"2026-11-25T20:00:00.000Z","source":"generic","metadata":{}}`)

// BenchmarkAppend is one append.lua round trip per message, from parallel
// callers over 1000 conversations (what the worker's lanes do).
func BenchmarkAppend(b *testing.B) {
	buf := benchBuffer(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := buf.Append(ctx, fmt.Sprint("user-", i%1000), fmt.Sprint("m", i), benchMsg, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkFlushCommit is the claim and commit of one 10-message batch.
func BenchmarkFlushCommit(b *testing.B) {
	buf := benchBuffer(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := range b.N {
		b.StopTimer()
		key := fmt.Sprint("user-", i)
		for m := range 10 {
			if _, err := buf.Append(ctx, key, fmt.Sprint(m), benchMsg, m == 9); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		c, why, err := buf.Flush(ctx, key, "bench")
		if err != nil || why != "" {
			b.Fatalf("flush: %v %s", err, why)
		}
		if _, err := c.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlushCapacity is Redis's side of flushing one-message
// conversations, with no delivery: the scheduler's pipelined claims (16
// shards × 100 per FlushDue) and a commit for each, from 64 goroutines as
// the deliveries commit. batches/s is the flush capacity of one Redis.
func BenchmarkFlushCapacity(b *testing.B) {
	buf := benchBuffer(b)
	ctx := context.Background()
	const round = 1600
	keys := make([]string, b.N)
	jobs := make([]store.AppendJob, 0, round)
	for i := range keys {
		keys[i] = fmt.Sprint("user-", i)
		jobs = append(jobs, store.AppendJob{Key: keys[i], ID: "m", Message: benchMsg, FlushNow: true})
		if len(jobs) == round || i == len(keys)-1 {
			if _, errs := buf.AppendMany(ctx, jobs); errs != nil {
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			jobs = jobs[:0]
		}
	}
	claims := make(chan *store.Claim, 4096)
	var commits sync.WaitGroup
	for range 64 {
		commits.Go(func() {
			for c := range claims {
				if _, err := c.Commit(ctx); err != nil {
					b.Error(err)
				}
			}
		})
	}
	b.ResetTimer()
	for start := 0; start < len(keys); start += round {
		for _, f := range buf.FlushDue(ctx, keys[start:min(start+round, len(keys))], "bench") {
			if f.Err != nil || f.Result != "" {
				b.Fatalf("flush: %v %s", f.Err, f.Result)
			}
			claims <- f.Claim
		}
	}
	close(claims)
	commits.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "batches/s")
}
