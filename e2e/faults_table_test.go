//go:build faults

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/keys"
)

// faultRow is one fault's line in the table: the accounting of what the
// api accepted against what the receiver accepted.
type faultRow struct {
	Fault       string
	Accepted    int // distinct messages the api answered 2xx
	Delivered   int // of those, the ones in a batch the receiver answered 2xx
	Lost        int // Accepted - Delivered
	Duplicated  int // messages in more than one batch (or twice in one)
	Redelivered int // batch ids the receiver answered 2xx more than once
	Batches     int // distinct batch ids delivered
	Failed      int // deliveries the receiver failed on purpose (503, 400, dropped, held)
	Retried     int // POSTs the senders repeated (not 2xx'd or no answer)
	Took        time.Duration
	Passed      bool
}

// account computes a row from every message the api accepted and every
// request the receiver got. It counts; assertExactlyOnce judges order and
// content.
func account(fault string, sent []harness.Sent, ds []harness.Received) faultRow {
	row := faultRow{Fault: fault}
	accepted := map[harness.Ref]bool{}
	for _, s := range sent {
		accepted[s.Ref()] = true
	}
	row.Accepted = len(accepted)

	oks := map[string]int{}                        // batch id -> 2xx answers
	inBatches := map[harness.Ref]map[string]bool{} // message -> batch ids it was delivered in
	twiceInOne := map[harness.Ref]bool{}
	for _, d := range ds {
		if !d.OK() {
			row.Failed++
			continue
		}
		id := d.Batch.BatchID
		oks[id]++
		seen := map[harness.Ref]bool{}
		for _, m := range d.Batch.Messages {
			ref := harness.Ref{Key: d.Batch.Key, ID: m.ID}
			if seen[ref] {
				twiceInOne[ref] = true
			}
			seen[ref] = true
			if inBatches[ref] == nil {
				inBatches[ref] = map[string]bool{}
			}
			inBatches[ref][id] = true
		}
	}
	row.Batches = len(oks)
	for _, n := range oks {
		if n > 1 {
			row.Redelivered++
		}
	}
	for ref := range accepted {
		if len(inBatches[ref]) > 0 {
			row.Delivered++
		}
	}
	row.Lost = row.Accepted - row.Delivered
	for ref, in := range inBatches {
		if len(in) > 1 || twiceInOne[ref] {
			row.Duplicated++
		}
	}
	return row
}

// The table of every fault run by this test binary; each top-level fault
// test prints it and writes it to LULL_FAULTS_TABLE when it ends.
var table struct {
	mu   sync.Mutex
	rows []faultRow
}

func recordRow(row faultRow) {
	table.mu.Lock()
	defer table.mu.Unlock()
	table.rows = append(table.rows, row)
}

// formatTable renders rows as the README shows them.
func formatTable(rows []faultRow) string {
	rows = slices.Clone(rows)
	slices.SortStableFunc(rows, func(a, b faultRow) int {
		return faultIndex(a.Fault) - faultIndex(b.Fault)
	})
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-38s %8s %9s %4s %10s %11s %7s %6s %7s %5s  %s\n",
		"fault", "accepted", "delivered", "lost", "duplicated", "redelivered", "batches", "failed", "retried", "took", "result")
	for _, r := range rows {
		result := "ok"
		if !r.Passed {
			result = "FAIL"
		}
		fmt.Fprintf(&sb, "%-38s %8d %9d %4d %10d %11d %7d %6d %7d %4.0fs  %s\n",
			r.Fault, r.Accepted, r.Delivered, r.Lost, r.Duplicated, r.Redelivered, r.Batches, r.Failed, r.Retried, r.Took.Seconds(), result)
	}
	return sb.String()
}

// reportTable registers, for a top-level fault test, printing the table of
// every fault run so far once the test and its subtests are done.
func reportTable(t *testing.T) {
	t.Cleanup(func() {
		table.mu.Lock()
		out := formatTable(table.rows)
		table.mu.Unlock()
		t.Log("\n" + out)
		fmt.Print("\n" + out)
		if path := os.Getenv("LULL_FAULTS_TABLE"); path != "" {
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Errorf("write LULL_FAULTS_TABLE: %v", err)
			}
		}
	})
}

// quiescent reports whether namespace ns has nothing left to do: no
// conversation waiting for its deadline and no batch in flight (dead
// letters may remain).
func quiescent(ctx context.Context, client rueidis.Client, ns string) (bool, error) {
	space := keys.New(ns)
	cmds := make(rueidis.Commands, 0, 2*keys.Shards)
	for s := range keys.Shards {
		cmds = append(cmds, client.B().Zcard().Key(space.Due(s)).Build(), client.B().Zcard().Key(space.Inflight(s)).Build())
	}
	for _, res := range client.DoMulti(ctx, cmds...) {
		n, err := res.AsInt64()
		if err != nil {
			return false, err
		}
		if n > 0 {
			return false, nil
		}
	}
	return true, nil
}

// faultRun is one scenario: a deployment, its traffic, and the Redis its
// processes use.
type faultRun struct {
	t      *testing.T
	name   string
	b      *harness.Deployment
	redis  rueidis.Client // where the processes keep their state
	begun  time.Time
	load   *harness.Load
	ending time.Duration // how long finish waits for delivery; default 45s
}

// faultOptions are the deployment every scenario starts from: short
// windows, a receiver failing 10% of deliveries and taking up to 100ms over
// the others (so batches are in flight when a fault hits), and a
// MAX_ATTEMPTS that a run of bad luck cannot exhaust.
func faultOptions() harness.Options {
	return harness.Options{
		QuietWindow: 300 * time.Millisecond,
		MaxWait:     2 * time.Second,
		Receiver:    harness.ReceiverOptions{FailShare: 0.10, Latency: 100 * time.Millisecond},
		Bench:       true, // process output only if the test fails, at info level
		Env:         map[string]string{"MAX_ATTEMPTS": "20", "LOG_LEVEL": "debug"},
	}
}

// newFaultRun sets up a scenario's deployment with opts.
func newFaultRun(t *testing.T, name string, opts harness.Options) *faultRun {
	b := harness.Setup(t, opts)
	f := &faultRun{t: t, name: name, b: b, redis: b.Redis, begun: time.Now(), ending: 45 * time.Second}
	return f
}

// midStream starts spec's traffic and waits until 35% of it was accepted:
// the moment to inject a fault.
func (f *faultRun) midStream(spec harness.LoadSpec) {
	f.load = f.b.StartLoad(spec)
	f.b.WaitAccepted(f.load, 0.35)
}

// finish waits for the traffic to end and for every accepted message to be
// delivered with nothing left in flight, records the scenario's row and
// fails the test on any loss, duplicate or broken order.
func (f *faultRun) finish() faultRow {
	t, b := f.t, f.b
	t.Helper()
	f.load.Wait()
	sent := b.SentSoFar()
	deadline := time.Now().Add(f.ending)
	done := false
	for !done && time.Now().Before(deadline) {
		if harness.MissingFrom(sent, harness.Distinct(b.Recv.Accepted())) == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			idle, err := quiescent(ctx, f.redis, b.NS)
			cancel()
			messages, _, qerr := b.QueueState()
			done = err == nil && idle && qerr == nil && messages == 0
		}
		if !done {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !done {
		t.Errorf("%s: not every accepted message delivered with nothing in flight within %s: %d of %d missing",
			f.name, f.ending, harness.MissingFrom(sent, harness.Distinct(b.Recv.Accepted())), len(sent))
	} else {
		// Nothing is in flight: a request still coming would be a
		// delivery nobody holds a lease for. Give one the time to show.
		time.Sleep(harness.CallbackTimeout)
	}
	all := b.Recv.All()
	row := account(f.name, sent, all)
	row.Retried = int(f.load.Retries())
	row.Took = time.Since(f.begun)
	if row.Accepted != f.load.Total() {
		t.Errorf("%s: %d of %d messages accepted (%d given up)", f.name, row.Accepted, f.load.Total(), f.load.GaveUp())
	}
	if row.Lost != 0 {
		t.Errorf("%s: %d accepted messages lost", f.name, row.Lost)
	}
	if row.Duplicated != 0 {
		t.Errorf("%s: %d messages delivered in more than one batch", f.name, row.Duplicated)
	}
	harness.AssertExactlyOnce(t, sent, all)
	row.Passed = !t.Failed()
	recordRow(row)
	t.Logf("%s: %d accepted, %d delivered, %d lost, %d duplicated, %d batches (%d redelivered), %d receiver failures, %d POSTs retried (refused: %s), %s",
		f.name, row.Accepted, row.Delivered, row.Lost, row.Duplicated, row.Batches, row.Redelivered, row.Failed, row.Retried,
		f.load.RefusedSummary(), row.Took.Round(time.Millisecond))
	return row
}

// TestFaultAccounting checks the table's arithmetic on made-up traffic, so
// a zero in the table means none rather than not counted.
func TestFaultAccounting(t *testing.T) {
	t.Parallel()
	sent := []harness.Sent{{Key: "k", ID: "a"}, {Key: "k", ID: "b"}, {Key: "k", ID: "c"}, {Key: "k", ID: "d"}, {Key: "k", ID: "a"}}
	deliver := func(gen int64, status int, msgs ...string) harness.Received {
		b := batch.Batch{BatchID: batch.ID("k", gen), Key: "k", Generation: gen}
		for _, m := range msgs {
			b.Messages = append(b.Messages, batch.Message{ID: m})
		}
		return harness.Received{Batch: b, Status: status}
	}
	ds := []harness.Received{
		deliver(1, http.StatusServiceUnavailable, "a", "b"),
		deliver(1, http.StatusOK, "a", "b"),
		deliver(1, http.StatusOK, "a", "b"),    // redelivered, same batch
		deliver(2, http.StatusOK, "b", "c"),    // b again, in another batch
		deliver(3, harness.StatusDropped, "d"), // d never delivered
		deliver(4, http.StatusOK, "e", "e"),    // never accepted, and twice in one batch
	}
	got := account("made up", sent, ds)
	want := faultRow{Fault: "made up", Accepted: 4, Delivered: 3, Lost: 1, Duplicated: 2, Redelivered: 1, Batches: 3, Failed: 2}
	require.Equal(t, want, got)
}
