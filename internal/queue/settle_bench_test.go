package queue_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// benchMessages is how many messages each iteration of
// BenchmarkConsumeSettle consumes.
const benchMessages = 20_000

// fill publishes n messages straight to the inbound queue of ns (declaring
// the topology first), waiting for every confirm.
func fill(b *testing.B, url, ns string, n int) {
	b.Helper()
	conn, err := amqp.Dial(url)
	require.NoError(b, err)
	defer conn.Close()
	require.NoError(b, queue.InboundTopology(ns, testenv.Topology())(conn))
	ch, err := conn.Channel()
	require.NoError(b, err)
	defer ch.Close()
	require.NoError(b, ch.Confirm(false))
	body := []byte(`{"kind":"message","n":1}`)
	const window = 1000
	var dcs []*amqp.DeferredConfirmation
	for i := range n {
		dc, err := ch.PublishWithDeferredConfirm("", queue.InboundQueue(ns), false, false,
			amqp.Publishing{MessageId: "b-" + strconv.Itoa(i), Body: body, DeliveryMode: amqp.Persistent})
		require.NoError(b, err)
		dcs = append(dcs, dc)
		if len(dcs) == window || i == n-1 {
			for _, dc := range dcs {
				ok, err := dc.WaitContext(context.Background())
				require.NoError(b, err)
				require.True(b, ok, "nacked publish")
			}
			dcs = dcs[:0]
		}
	}
}

// BenchmarkConsumeSettle measures consume+settle throughput of one
// Consumer (Prefetch 200, the configuration's default): the handler hands
// each message to one of several lanes at random, as the appender does, and
// each lane acks what it gets, so messages settle out of delivery order.
// "inline" settles in the handler (in order); "lanes16-work" sleeps up to
// 200µs per message in the lane, like a Redis round trip.
//
//	go test -run '^$' -bench ConsumeSettle -benchtime 1x -count 5 ./internal/queue/
func BenchmarkConsumeSettle(b *testing.B) {
	for _, mode := range []struct {
		name  string
		lanes int
		work  time.Duration
	}{
		{"inline", 0, 0},
		{"lanes16", 16, 0},
		{"lanes16-work", 16, 200 * time.Microsecond},
	} {
		b.Run(mode.name, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				total += consumeSettle(b, benchMessages, mode.lanes, mode.work)
			}
			b.ReportMetric(float64(benchMessages*b.N)/total.Seconds(), "msgs/s")
		})
	}
}

// consumeSettle fills a fresh namespace with n messages and returns how
// long one consumer took from the first delivery to the last settle.
func consumeSettle(b *testing.B, n, lanes int, work time.Duration) time.Duration {
	url := amqpURL()
	rb := make([]byte, 6)
	_, _ = rand.Read(rb)
	ns := "bench-queue-" + hex.EncodeToString(rb)
	testenv.CleanupBroker(b, url, ns)
	fill(b, url, ns, n)

	var (
		settled atomic.Int64
		done    = make(chan struct{})
		first   time.Time
		once    sync.Once
		wg      sync.WaitGroup
	)
	settle := func(m queue.Message) {
		if work > 0 {
			time.Sleep(mrand.N(work))
		}
		if err := m.Settle(queue.Ack); err != nil {
			b.Error(err)
		}
		if settled.Add(1) == int64(n) {
			close(done)
		}
	}
	chans := make([]chan queue.Message, lanes)
	for i := range chans {
		chans[i] = make(chan queue.Message, 16)
		wg.Go(func() {
			for m := range chans[i] {
				settle(m)
			}
		})
	}
	handle := func(m queue.Message) {
		once.Do(func() { first = time.Now() })
		if lanes == 0 {
			settle(m)
			return
		}
		chans[mrand.IntN(lanes)] <- m
	}
	c, err := queue.NewConsumer(url, ns, handle, queue.ConsumerOptions{Prefetch: 200, Inbound: testenv.Topology(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	require.NoError(b, c.Start(context.Background()))
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("settled %d of %d", settled.Load(), n)
	}
	elapsed := time.Since(first)
	c.Stop()
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	return elapsed
}
