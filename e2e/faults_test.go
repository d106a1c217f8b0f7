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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/queue"
)

// The faults, in table order (see scenarios).
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

// scenarios are the faults in table order: the row each records, its
// subtest, and whether TestFaultsNetwork runs it rather than TestFaults.
// The broker restart runs alone, in TestFault_RabbitMQRestart.
var scenarios = []struct {
	row, subtest string
	network      bool
	run          func(*testing.T)
}{
	{faultWorkerKill, "WorkerKill9Restart", false, testFaultWorkerKill},
	{faultOneOfTwoKilled, "TwoWorkersOneKilled", false, testFaultOneOfTwoKilled},
	{faultAPIKill, "APIKill9Restart", false, testFaultAPIKill},
	{faultRabbitMQ, "", false, nil},
	{faultRedisKill, "RedisKill9Restart", false, testFaultRedisKill},
	{faultWorkerSIGTERM, "WorkerSIGTERMMidDelivery", false, testFaultWorkerSIGTERM},
	{faultReceiverDown, "ReceiverDown", false, testFaultReceiverDown},
	{faultDeadLetter, "DeadLetterReplay", false, testFaultDeadLetter},
	{faultRedisLatency, "RedisLatencySpikes", true, testFaultRedisLatency},
	{faultRedisResets, "RedisResets", true, testFaultRedisResets},
	{faultAPIHalfOpen, "APIBrokerHalfOpen", true, testFaultAPIHalfOpen},
	{faultWorkerHalfOpen, "WorkerBrokerHalfOpen", true, testFaultWorkerHalfOpen},
	{faultRedisOOM, "RedisOutOfMemory", true, testFaultRedisOOM},
	{faultMemoryAlarm, "RabbitMQMemoryAlarm", true, testFaultMemoryAlarm},
	{faultWorkerCutOff, "WorkerCutOffFromRedis", true, testFaultWorkerCutOffFromRedis},
}

// faultIndex is the place of row in the table.
func faultIndex(row string) int {
	for i, s := range scenarios {
		if s.row == row {
			return i
		}
	}
	return len(scenarios)
}

// runScenarios runs the scenarios of TestFaults (network false) or of
// TestFaultsNetwork, one subtest each (they run in parallel up to
// -parallel; the Taskfile runs them one at a time), and prints the table
// of every fault run by the binary when all are done.
func runScenarios(t *testing.T, network bool) {
	reportTable(t)
	for _, s := range scenarios {
		if s.run != nil && s.network == network {
			t.Run(s.subtest, s.run)
		}
	}
}

// TestFaults runs every fault but the broker restart and the network and
// resource faults.
func TestFaults(t *testing.T) { runScenarios(t, false) }

// waitInflight waits (briefly) until at least n batches are in flight, so
// the fault that follows hits deliveries under way, and returns how many.
func (f *faultRun) waitInflight(n int64) int64 {
	got := int64(0)
	harness.WaitUntil(f.t, 10*time.Second, fmt.Sprintf("%d batches in flight", n), func() bool {
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
		c, err := f.redis.Do(ctx, f.redis.B().Zcard().Key(keys.New(f.b.NS).Inflight(s)).Build()).AsInt64()
		if err == nil {
			n += c
		}
	}
	return n
}

func testFaultWorkerKill(t *testing.T) {
	f := newFaultRun(t, faultWorkerKill, faultOptions())
	f.midStream(harness.LoadSpec{})
	inflight := f.waitInflight(3)
	f.b.Workers[0].Kill()
	t.Logf("worker killed with %d batches in flight, %d messages accepted", inflight, len(f.b.SentSoFar()))
	time.Sleep(time.Second) // stays dead a while: messages pile up in RabbitMQ
	f.b.StartWorker()
	f.finish()
}

func testFaultOneOfTwoKilled(t *testing.T) {
	opts := faultOptions()
	opts.Workers = 2
	f := newFaultRun(t, faultOneOfTwoKilled, opts)
	f.midStream(harness.LoadSpec{})
	inflight := f.waitInflight(3)
	// The one appending (the inbound queue's active consumer): the other
	// takes the appending over, in queue order, and the accounting shows
	// nothing lost, twice or out of order.
	victim := activeWorker(t, f.b)
	victim.Kill()
	t.Logf("%s (the active consumer) killed with %d batches in flight (both workers), %d messages accepted", victim.Name, inflight, len(f.b.SentSoFar()))
	f.finish()
}

// activeWorker is the worker of d whose consumer is the inbound queue's
// active one, as `rabbitmqctl list_consumers` on the local broker says
// (rabbitmqctlCommand); it fails the test if none is.
func activeWorker(t *testing.T, d *harness.Deployment) *harness.Proc {
	t.Helper()
	var active *harness.Proc
	harness.WaitUntil(t, 20*time.Second, "an active consumer on "+queue.InboundQueue(d.NS), func() bool {
		out, err := rabbitmqctlCommand(context.Background(), "list_consumers", "queue_name", "consumer_tag", "active",
			"--quiet", "--no-table-headers").CombinedOutput()
		if err != nil {
			t.Logf("rabbitmqctl list_consumers: %v: %s", err, out)
			return false
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != queue.InboundQueue(d.NS) || f[2] != "true" {
				continue
			}
			// The tag is lull-<ns>-<host>-<pid>-<session>.
			parts := strings.Split(f[1], "-")
			if len(parts) < 2 {
				continue
			}
			for _, w := range d.Workers {
				if !w.Exited() && strconv.Itoa(w.PID()) == parts[len(parts)-2] {
					active = w
					return true
				}
			}
		}
		return false
	})
	return active
}

func testFaultAPIKill(t *testing.T) {
	f := newFaultRun(t, faultAPIKill, faultOptions())
	f.midStream(harness.LoadSpec{})
	f.b.API.Kill()
	t.Logf("api killed, %d messages accepted", len(f.b.SentSoFar()))
	time.Sleep(time.Second) // stays dead a while: senders get connection refused
	f.b.StartAPI("api2")
	f.b.WaitReady()
	f.finish()
	assert.Positive(t, f.load.Refusals(0), "no POST went unanswered while the api was down")
}

func testFaultWorkerSIGTERM(t *testing.T) {
	f := newFaultRun(t, faultWorkerSIGTERM, faultOptions())
	f.midStream(harness.LoadSpec{})
	select {
	case <-f.b.Recv.HoldOne():
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery reached the receiver to hold")
	}
	code, took, err := f.b.Workers[0].Terminate(harness.StopTimeout)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "worker exit status after SIGTERM")
	t.Logf("worker exited %d, %s after SIGTERM with a delivery held", code, took.Round(time.Millisecond))
	f.b.StartWorker()
	f.finish()

	// The held batch came again, whole, under its own batch_id.
	all := f.b.Recv.All()
	i := slices.IndexFunc(all, func(d harness.Received) bool { return d.Status == 0 })
	require.GreaterOrEqual(t, i, 0, "no held delivery")
	held := all[i]
	j := slices.IndexFunc(all[i+1:], func(d harness.Received) bool { return d.OK() && d.Batch.BatchID == held.Batch.BatchID })
	if assert.GreaterOrEqual(t, j, 0, "held batch %s never delivered again", held.Batch.BatchID) {
		assert.True(t, harness.SameBatch(held.Batch, all[i+1+j].Batch), "batch %s redelivered with other contents", held.Batch.BatchID)
	}
}

func testFaultReceiverDown(t *testing.T) {
	f := newFaultRun(t, faultReceiverDown, faultOptions())
	f.midStream(harness.LoadSpec{})
	before := len(f.b.Recv.All())
	f.b.Recv.SetDown(true)
	time.Sleep(3 * time.Second) // the outage
	f.b.Recv.SetDown(false)
	failed := 0
	for _, d := range f.b.Recv.All()[before:] {
		if !d.OK() {
			failed++
		}
	}
	t.Logf("receiver down 3s: %d requests failed (503 or connection closed)", failed)
	assert.Positive(t, failed, "no delivery was attempted while the receiver was down")
	f.finish()
}
