//go:build cluster

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/queue"
)

// TestCluster runs lull at scale on this machine: 2 api and 3 worker
// processes against a Redis Cluster (3 masters, a replica each) and a
// 3-node RabbitMQ cluster, both from scripts/cluster.sh. First the plain
// scenarios (burst, hammer, rebursts), then the node faults under load
// (kill -9 of a Redis master, kill -9 of a RabbitMQ node, a rolling restart
// of the three RabbitMQ nodes). Each scenario has a namespace of its own
// and ends with the fault suite's accounting: accepted = delivered,
// nothing twice, order kept. The table is printed and written to
// LULL_CLUSTER_TABLE. `task e2e:cluster` runs it.
func TestCluster(t *testing.T) {
	c := startClusters(t)
	t.Cleanup(func() { reportClusterTable(t) })
	for _, sc := range []struct {
		name string
		run  func(*testing.T, *clusters) clusterRow
	}{
		{"burst", testClusterBurst},
		{"hammer", testClusterHammer},
		{"rebursts", testClusterRebursts},
		{"redis master kill -9", testClusterRedisMasterKill},
		{"rabbitmq node kill -9", testClusterRabbitKill},
		{"rabbitmq rolling restart", testClusterRabbitRolling},
	} {
		// The clusters are shared: one scenario at a time.
		if !t.Run(sc.name, func(t *testing.T) {
			row := sc.run(t, c)
			row.scenario = sc.name
			row.passed = !t.Failed()
			clusterTable.add(row)
		}) && !clusterTable.has(sc.name) {
			clusterTable.add(clusterRow{scenario: sc.name}) // it stopped before its accounting
		}
	}
}

// clusterOptions are every scenario's deployment: 2 apis and 3 workers on
// the clusters, the fault suite's short windows and a receiver failing 5%
// of deliveries and taking up to 50ms over the others.
func clusterOptions(c *clusters) harness.Options {
	return harness.Options{
		APIs:        2,
		Workers:     3,
		Serial:      true,
		RedisURL:    c.redisURL,
		AMQPURL:     c.amqpURL,
		QuietWindow: 300 * time.Millisecond,
		MaxWait:     2 * time.Second,
		Receiver:    harness.ReceiverOptions{FailShare: 0.05, Latency: 50 * time.Millisecond},
		Bench:       true, // process output only if the test fails
		Env:         map[string]string{"MAX_ATTEMPTS": "20", "LOG_LEVEL": "debug"},
	}
}

// clusterRun is one scenario under way.
type clusterRun struct {
	t     *testing.T
	c     *clusters
	d     *harness.Deployment
	load  *harness.Load
	begun time.Time
}

func newClusterRun(t *testing.T, c *clusters, spec harness.LoadSpec) *clusterRun {
	d := harness.Setup(t, clusterOptions(c))
	r := &clusterRun{t: t, c: c, d: d, begun: time.Now()}
	r.load = d.StartLoad(spec)
	return r
}

func testClusterBurst(t *testing.T, c *clusters) clusterRow {
	r := newClusterRun(t, c, harness.LoadSpec{Conversations: 100, Bursts: 1, PerBurst: 10, Spread: 2 * time.Second})
	return r.finish()
}

// testClusterHammer: 10 conversations, 100 messages each 2ms apart from 64
// senders: many POSTs of one conversation at once, on both apis.
func testClusterHammer(t *testing.T, c *clusters) clusterRow {
	r := newClusterRun(t, c, harness.LoadSpec{Conversations: 10, Bursts: 1, PerBurst: 100, MessageGap: 2 * time.Millisecond, Senders: 64, Spread: 200 * time.Millisecond})
	return r.finish()
}

func testClusterRebursts(t *testing.T, c *clusters) clusterRow {
	r := newClusterRun(t, c, harness.LoadSpec{Conversations: 100, Bursts: 4, PerBurst: 5})
	return r.finish()
}

// faultSpec is the traffic of the fault scenarios: 120 conversations x 3
// bursts x 5 messages (1,800) over about spread + 4s.
func faultSpec(spread time.Duration) harness.LoadSpec {
	return harness.LoadSpec{Conversations: 120, Spread: spread}
}

// testClusterRedisMasterKill kills -9 the master serving the most shards
// once 35% of the traffic is accepted; its replica takes over after
// cluster-node-timeout (1s). The old master is started again at the end
// and rejoins as a replica.
func testClusterRedisMasterKill(t *testing.T, c *clusters) clusterRow {
	r := newClusterRun(t, c, faultSpec(6*time.Second))
	r.d.WaitAccepted(r.load, 0.35)
	victim := r.c.busiestMaster()
	shard := -1
	for s := range keys.Shards {
		if r.c.masterOf(keys.Slot(keys.New("x").Due(s)), c.ports()...) == victim.addr {
			shard = s
			break
		}
	}
	require.GreaterOrEqual(t, shard, 0)
	probeKey := keys.New(r.d.NS).Stats(shard) + ":probe"
	probe := startWriteProbe(c.redis, probeKey)
	_, port, _ := strings.Cut(victim.addr, ":")
	killed := time.Now()
	r.c.run("kill-redis", port)
	others := slices.DeleteFunc(c.ports(), func(p int) bool { return strconv.Itoa(p) == port })
	harness.WaitUntil(t, 30*time.Second, "a replica promoted", func() bool {
		m := r.c.masterOf(keys.Slot(probeKey), others...)
		return m != "" && m != victim.addr
	})
	promoted := time.Since(killed)
	t.Logf("redis master %s (%d shards) killed; its replica was promoted after %s", victim.addr, victim.shardsOn(), promoted.Round(10*time.Millisecond))
	row := r.finish()
	row.writeStall = probe.stop()
	row.note = fmt.Sprintf("replica promoted after %.1fs", promoted.Seconds())
	r.c.run("start-redis", port)
	harness.WaitUntil(t, 30*time.Second, "the old master back as a replica", func() bool {
		for _, n := range r.c.nodes(others...) {
			if n.addr == victim.addr && !n.failed {
				return true
			}
		}
		return false
	})
	return row
}

// testClusterRabbitKill kills -9 the node leading the inbound queue's
// quorum mid-stream, and starts it again 3s later.
func testClusterRabbitKill(t *testing.T, c *clusters) clusterRow {
	r := newClusterRun(t, c, faultSpec(6*time.Second))
	leader, members := r.c.quorumLeader(queue.InboundQueue(r.d.NS))
	require.Equal(t, 3, members, "the inbound quorum queue has a member on every node")
	r.d.WaitAccepted(r.load, 0.35)
	active := r.c.activeConsumerNode(queue.InboundQueue(r.d.NS))
	r.c.run("kill-rabbit", strconv.Itoa(leader))
	killed := time.Now()
	t.Logf("rabbitmq node %d (the quorum leader) killed; the active consumer's connection was on node %d", leader, active)
	time.Sleep(3 * time.Second)
	r.c.run("start-rabbit", strconv.Itoa(leader))
	t.Logf("rabbitmq node %d back after %s", leader, time.Since(killed).Round(100*time.Millisecond))
	row := r.finish()
	row.note = fmt.Sprintf("leader node %d killed, active consumer was on node %d", leader, active)
	return row
}

// testClusterRabbitRolling stops and starts the three nodes one after the
// other, each once the quorum queues keep a majority without it (the
// script waits for that), under traffic spread over the whole restart.
func testClusterRabbitRolling(t *testing.T, c *clusters) clusterRow {
	r := newClusterRun(t, c, faultSpec(25*time.Second))
	r.d.WaitAccepted(r.load, 0.1)
	start := time.Now()
	for n := 1; n <= 3; n++ {
		r.c.run("stop-rabbit", strconv.Itoa(n))
		r.c.run("start-rabbit", strconv.Itoa(n))
		t.Logf("rabbitmq node %d restarted (%s into the rolling restart)", n, time.Since(start).Round(100*time.Millisecond))
	}
	_, members := r.c.quorumLeader(queue.InboundQueue(r.d.NS))
	require.Equal(t, 3, members)
	row := r.finish()
	row.note = fmt.Sprintf("3 nodes restarted in %.0fs", time.Since(start).Seconds())
	return row
}

// finish waits for the traffic to end and every accepted message to be
// delivered with nothing left in flight, and checks the guarantees.
func (r *clusterRun) finish() clusterRow {
	t, d := r.t, r.d
	t.Helper()
	r.load.Wait()
	sent := d.SentSoFar()
	deadline := time.Now().Add(60 * time.Second)
	done := false
	for !done && time.Now().Before(deadline) {
		if harness.MissingFrom(sent, harness.Distinct(d.Recv.Accepted())) == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			idle, err := idleNamespace(ctx, r.c.redis, d.NS)
			cancel()
			messages, _, qerr := d.QueueState()
			done = err == nil && idle && qerr == nil && messages == 0
		}
		if !done {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !done {
		t.Errorf("not every accepted message delivered with nothing in flight within 60s: %d of %d missing",
			harness.MissingFrom(sent, harness.Distinct(d.Recv.Accepted())), len(sent))
	} else {
		time.Sleep(harness.CallbackTimeout) // a late request would be a delivery nobody holds a lease for
	}
	all := d.Recv.All()
	row := accountCluster(sent, all)
	row.retried = int(r.load.Retries())
	ends := make([]time.Time, len(sent))
	for i, s := range sent {
		ends[i] = s.End
	}
	row.acceptStall = longestGap(ends)
	arrivals := make([]time.Time, len(all))
	for i, d := range all {
		arrivals[i] = d.At
	}
	row.deliveryStall = longestGap(arrivals)
	row.took = time.Since(r.begun)
	if row.accepted != r.load.Total() {
		t.Errorf("%d of %d messages accepted (%d given up)", row.accepted, r.load.Total(), r.load.GaveUp())
	}
	if row.lost != 0 {
		t.Errorf("%d accepted messages lost", row.lost)
	}
	if row.duplicated != 0 {
		t.Errorf("%d messages delivered in more than one batch", row.duplicated)
	}
	order := &orderCount{TB: t}
	harness.AssertExactlyOnce(order, sent, all)
	row.outOfOrder = order.n
	t.Logf("%d accepted, %d delivered, %d lost, %d duplicated, %d batches (%d redelivered), %d receiver failures, %d POSTs retried (refused: %s), longest gap between accepted POSTs %s, %s",
		row.accepted, row.delivered, row.lost, row.duplicated, row.batches, row.redelivered, row.failed, row.retried,
		r.load.RefusedSummary(), row.acceptStall.Round(time.Millisecond), row.took.Round(time.Millisecond))
	return row
}

// orderCount passes AssertExactlyOnce's failures on to the test and
// counts the order inversions among them, for the table.
type orderCount struct {
	testing.TB
	n int
}

func (o *orderCount) Errorf(format string, args ...any) {
	o.TB.Helper()
	if strings.Contains(format, "but was sent after it") || strings.Contains(format, "arrived after batch") {
		o.n++
	}
	o.TB.Errorf(format, args...)
}

// idleNamespace reports whether ns has no conversation waiting and no
// batch in flight; the reads go to each shard's master.
func idleNamespace(ctx context.Context, client rueidis.Client, ns string) (bool, error) {
	space := keys.New(ns)
	cmds := make(rueidis.Commands, 0, 2*keys.Shards)
	for s := range keys.Shards {
		cmds = append(cmds, client.B().Zcard().Key(space.Due(s)).Build(), client.B().Zcard().Key(space.Inflight(s)).Build())
	}
	for _, res := range client.DoMulti(ctx, cmds...) {
		n, err := res.AsInt64()
		if err != nil || n > 0 {
			return false, err
		}
	}
	return true, nil
}

// longestGap is the longest time between two consecutive events: of the
// api's 2xx answers, how long ingest stalled; of the batches reaching the
// receiver, how long delivery did.
func longestGap(at []time.Time) time.Duration {
	at = slices.Clone(at)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	for i := 1; i < len(at); i++ {
		gap = max(gap, at[i].Sub(at[i-1]))
	}
	return gap
}

// writeProbe writes to one key every 10ms with the cluster client lull
// uses, to measure how long writes to its slot fail during a failover.
type writeProbe struct {
	done chan struct{}
	wg   sync.WaitGroup
	gap  time.Duration
}

func startWriteProbe(client rueidis.Client, key string) *writeProbe {
	p := &writeProbe{done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		last := time.Now()
		for {
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := client.Do(ctx, client.B().Incr().Key(key).Build()).Error()
			cancel()
			if err == nil {
				p.gap = max(p.gap, time.Since(last))
				last = time.Now()
			}
		}
	}()
	return p
}

// stop ends the probe and returns the longest time between two successful writes.
func (p *writeProbe) stop() time.Duration {
	close(p.done)
	p.wg.Wait()
	return p.gap
}

// clusterRow is one scenario's line in the table.
type clusterRow struct {
	scenario                                                            string
	accepted, delivered, lost, duplicated, redelivered, batches, failed int
	retried, outOfOrder                                                 int
	acceptStall, deliveryStall, writeStall, took                        time.Duration
	note                                                                string
	passed                                                              bool
}

// accountCluster counts as the fault suite does: distinct accepted
// messages against those in a batch the receiver answered 2xx.
func accountCluster(sent []harness.Sent, ds []harness.Received) clusterRow {
	var row clusterRow
	accepted := map[harness.Ref]bool{}
	for _, s := range sent {
		accepted[s.Ref()] = true
	}
	row.accepted = len(accepted)
	oks := map[string]int{}
	inBatches := map[harness.Ref]map[string]bool{}
	twiceInOne := map[harness.Ref]bool{}
	for _, d := range ds {
		if !d.OK() {
			row.failed++
			continue
		}
		id := d.Batch.BatchID
		oks[id]++
		seen := map[harness.Ref]bool{}
		for _, m := range d.Batch.Messages {
			ref := harness.Ref{Key: d.Batch.Key, ID: m.ID}
			twiceInOne[ref] = twiceInOne[ref] || seen[ref]
			seen[ref] = true
			if inBatches[ref] == nil {
				inBatches[ref] = map[string]bool{}
			}
			inBatches[ref][id] = true
		}
	}
	row.batches = len(oks)
	for _, n := range oks {
		if n > 1 {
			row.redelivered++
		}
	}
	for ref := range accepted {
		if len(inBatches[ref]) > 0 {
			row.delivered++
		}
	}
	row.lost = row.accepted - row.delivered
	for ref, in := range inBatches {
		if len(in) > 1 || twiceInOne[ref] {
			row.duplicated++
		}
	}
	return row
}

// clusterRows collects the table's rows.
type clusterRows struct {
	mu   sync.Mutex
	rows []clusterRow
}

var clusterTable clusterRows

func (tb *clusterRows) has(scenario string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.ContainsFunc(tb.rows, func(r clusterRow) bool { return r.scenario == scenario })
}

func (tb *clusterRows) add(row clusterRow) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.rows = append(tb.rows, row)
}

// formatClusterTable renders the rows as README's "Running at scale" shows them.
func formatClusterTable(rows []clusterRow) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-26s %8s %9s %4s %10s %11s %5s %7s %6s %7s %12s %14s %11s %5s  %-6s %s\n",
		"scenario", "accepted", "delivered", "lost", "duplicated", "redelivered", "order", "batches", "failed", "retried",
		"ingest stall", "delivery stall", "write stall", "took", "result", "note")
	for _, r := range rows {
		result := "ok"
		if !r.passed {
			result = "FAIL"
		}
		ws := "-"
		if r.writeStall > 0 {
			ws = fmt.Sprintf("%.1fs", r.writeStall.Seconds())
		}
		order := "ok"
		if r.outOfOrder > 0 {
			order = strconv.Itoa(r.outOfOrder)
		}
		fmt.Fprintf(&sb, "%-26s %8d %9d %4d %10d %11d %5s %7d %6d %7d %11.1fs %13.1fs %11s %4.0fs  %-6s %s\n",
			r.scenario, r.accepted, r.delivered, r.lost, r.duplicated, r.redelivered, order, r.batches, r.failed, r.retried,
			r.acceptStall.Seconds(), r.deliveryStall.Seconds(), ws, r.took.Seconds(), result, r.note)
	}
	return sb.String()
}

func reportClusterTable(t *testing.T) {
	clusterTable.mu.Lock()
	out := formatClusterTable(clusterTable.rows)
	clusterTable.mu.Unlock()
	t.Log("\n" + out)
	fmt.Print("\n" + out)
	if path := os.Getenv("LULL_CLUSTER_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Errorf("write LULL_CLUSTER_TABLE: %v", err)
		}
	}
}
