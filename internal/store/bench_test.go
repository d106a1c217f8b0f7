package store_test

import (
	"context"
	"fmt"
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
