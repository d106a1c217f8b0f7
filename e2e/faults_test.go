//go:build faults

// The fault-injection suite: every scenario runs steady traffic (thousands
// of messages across hundreds of conversations) against a receiver that
// fails 10% of deliveries, injects one fault mid-stream, and ends with the
// same accounting (faultRun.finish): accepted = delivered, nothing lost,
// nothing in two batches, redeliveries only with their own batch_id and
// content, order kept. Run it with `task e2e:faults` (all but the broker
// restart, which stops the shared RabbitMQ and runs alone with
// `task e2e:faults:rabbitmq`).

package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/keys"
)

// The faults, in table order.
const (
	faultWorkerKill     = "worker kill -9 + restart"
	faultOneOfTwoKilled = "2 workers, one kill -9, not restarted"
	faultAPIKill        = "api kill -9 + restart"
	faultRabbitMQ       = "rabbitmq stop_app + start_app"
	faultRedisKill      = "redis (AOF) kill -9 + restart"
	faultWorkerSIGTERM  = "worker SIGTERM mid-delivery"
	faultReceiverDown   = "receiver down 3s"
	faultDeadLetter     = "receiver 400 -> dead letter -> replay"
)

var faultOrder = []string{faultWorkerKill, faultOneOfTwoKilled, faultAPIKill, faultRabbitMQ,
	faultRedisKill, faultWorkerSIGTERM, faultReceiverDown, faultDeadLetter}

// TestFaults runs every fault but the broker restart, one subtest each
// (they run in parallel up to -parallel; the Taskfile runs them one at a
// time), and prints the table when all are done.
func TestFaults(t *testing.T) {
	reportTable(t)
	t.Run("WorkerKill9Restart", testFaultWorkerKill)
	t.Run("TwoWorkersOneKilled", testFaultOneOfTwoKilled)
	t.Run("APIKill9Restart", testFaultAPIKill)
	t.Run("RedisKill9Restart", testFaultRedisKill)
	t.Run("WorkerSIGTERMMidDelivery", testFaultWorkerSIGTERM)
	t.Run("ReceiverDown", testFaultReceiverDown)
	t.Run("DeadLetterReplay", testFaultDeadLetter)
}

// waitInflight waits (briefly) until at least n batches are in flight, so
// the fault that follows hits deliveries under way, and returns how many.
func (f *faultRun) waitInflight(n int64) int64 {
	got := int64(0)
	waitUntil(f.t, 10*time.Second, fmt.Sprintf("%d batches in flight", n), func() bool {
		got = f.inflight()
		return got >= n
	})
	return got
}

// inflight counts the namespace's batches in flight.
func (f *faultRun) inflight() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n := int64(0)
	for s := range keys.Shards {
		c, err := f.redis.Do(ctx, f.redis.B().Zcard().Key(keys.New(f.b.ns).Inflight(s)).Build()).AsInt64()
		if err == nil {
			n += c
		}
	}
	return n
}

func testFaultWorkerKill(t *testing.T) {
	f := newFaultRun(t, faultWorkerKill, faultOptions())
	f.load = f.b.startLoad(loadSpec{})
	f.b.waitAccepted(f.load, 0.35)
	inflight := f.waitInflight(3)
	f.b.workers[0].kill()
	t.Logf("worker killed with %d batches in flight, %d messages accepted", inflight, len(f.b.sentSoFar()))
	time.Sleep(time.Second) // stays dead a while: messages pile up in RabbitMQ
	f.b.startWorker()
	f.finish()
}

func testFaultOneOfTwoKilled(t *testing.T) {
	opts := faultOptions()
	opts.Workers = 2
	f := newFaultRun(t, faultOneOfTwoKilled, opts)
	f.load = f.b.startLoad(loadSpec{})
	f.b.waitAccepted(f.load, 0.35)
	inflight := f.waitInflight(3)
	f.b.workers[0].kill()
	t.Logf("worker1 killed with %d batches in flight (both workers), %d messages accepted", inflight, len(f.b.sentSoFar()))
	f.finish()
}

func testFaultAPIKill(t *testing.T) {
	f := newFaultRun(t, faultAPIKill, faultOptions())
	f.load = f.b.startLoad(loadSpec{})
	f.b.waitAccepted(f.load, 0.35)
	f.b.api.kill()
	t.Logf("api killed, %d messages accepted", len(f.b.sentSoFar()))
	time.Sleep(time.Second) // stays dead a while: senders get connection refused
	f.b.api = f.b.start("api2", bins.api)
	f.b.waitReady()
	f.finish()
	assert.Positive(t, f.load.refusals(0), "no POST went unanswered while the api was down")
}

func testFaultWorkerSIGTERM(t *testing.T) {
	f := newFaultRun(t, faultWorkerSIGTERM, faultOptions())
	f.load = f.b.startLoad(loadSpec{})
	f.b.waitAccepted(f.load, 0.35)
	select {
	case <-f.b.recv.holdOne():
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery reached the receiver to hold")
	}
	code, took, err := f.b.workers[0].terminate(stopTimeout)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "worker exit status after SIGTERM")
	t.Logf("worker exited %d, %s after SIGTERM with a delivery held", code, took.Round(time.Millisecond))
	f.b.startWorker()
	f.finish()

	// The held batch came again, whole, under its own batch_id.
	all := f.b.recv.all()
	i := slices.IndexFunc(all, func(d delivery) bool { return d.Status == 0 })
	require.GreaterOrEqual(t, i, 0, "no held delivery")
	held := all[i]
	j := slices.IndexFunc(all[i+1:], func(d delivery) bool { return d.ok() && d.Batch.BatchID == held.Batch.BatchID })
	if assert.GreaterOrEqual(t, j, 0, "held batch %s never delivered again", held.Batch.BatchID) {
		assert.True(t, sameBatch(held.Batch, all[i+1+j].Batch), "batch %s redelivered with other contents", held.Batch.BatchID)
	}
}

func testFaultReceiverDown(t *testing.T) {
	f := newFaultRun(t, faultReceiverDown, faultOptions())
	f.load = f.b.startLoad(loadSpec{})
	f.b.waitAccepted(f.load, 0.35)
	before := len(f.b.recv.all())
	f.b.recv.setDown(true)
	time.Sleep(3 * time.Second) // the outage
	f.b.recv.setDown(false)
	failed := 0
	for _, d := range f.b.recv.all()[before:] {
		if !d.ok() {
			failed++
		}
	}
	t.Logf("receiver down 3s: %d requests failed (503 or connection closed)", failed)
	assert.Positive(t, failed, "no delivery was attempted while the receiver was down")
	f.finish()
}
