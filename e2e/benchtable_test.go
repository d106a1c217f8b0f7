//go:build bench

package e2e

// TestBenchTable is `task bench`: one run that measures RabbitMQ alone and
// lull on top of it, and prints every figure in one table, lull's beside
// the broker's as ratios (the issue "performance"). It is behind the bench
// build tag, so `go test ./e2e/` (CI) never runs it:
//
//	go test -tags bench -count=1 -timeout 30m -run '^TestBenchTable$' -v ./e2e/
//
// Environment:
//
//	BENCH_SCALE=0.2     scale every message and conversation count (default 1)
//	BENCH_SKIP_100K=1   leave out the 100,000-open-conversations lateness row
//	BENCH_ROWS=1,5b     run only these rows (ids as printed: 1 2a 2b 3a 3b 5a 5b 6)
//	LULL_BENCH_TABLE    where the table is written too (default bin/bench-table.txt)
//
// Rows (each scenario's function below says exactly what it measures): the
// broker ceiling; lull accepted and delivered, one message and five-message
// bursts per conversation; the worker's drain of a backlog, appends alone
// and with flush+deliver+commit; CPU per message per process; lateness;
// Redis bytes per open conversation; lost and duplicated messages. The test
// fails if any lull row lost or duplicated a message.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// Shape of the load, at BENCH_SCALE=1.
const (
	benchSenders     = 128 // concurrent HTTP senders, and concurrent broker publishers
	benchTextLen     = 40  // bytes of every message's text
	benchBrokerMsgs  = 50000
	benchConvs       = 5000 // row 2
	benchBurst       = 5    // messages per conversation in row 2's burst variant
	benchDrainMsgs   = 20000
	benchSpikeConvs  = 10000
	benchOpenConvs   = 100000
	benchMemoryConvs = 10000
	benchWarmup      = 300 // conversations posted (and delivered) before a lull row's clock starts
	benchShortQuiet  = 50 * time.Millisecond
	benchBurstQuiet  = time.Second // a sender's 5 back-to-back POSTs stay within it
	benchSpikeQuiet  = time.Second
	benchLongQuiet   = 10 * time.Minute // nothing comes due while a row measures buffering
)

func TestBenchTable(t *testing.T) {
	b := newBench(t)
	t.Logf("BENCH_SCALE=%g, %d CPUs, CLK_TCK=%d, envelope %d B, rabbitmq pid %d, redis pid %d",
		b.scale, runtime.NumCPU(), b.clkTck, len(b.envelope("conv-000000", "conv-000000-m0", benchText("conv-000000", 0))), b.rabbitPID, b.redisPID)

	b.run("1", "broker ceiling", b.brokerCeiling)
	b.run("2a", "lull 1 message per conversation", func(t *testing.T) { b.lullIngest(t, "2a", b.n(benchConvs), 1, benchShortQuiet) })
	b.run("2b", "lull 5-message bursts", func(t *testing.T) { b.lullIngest(t, "2b", b.n(benchConvs), benchBurst, benchBurstQuiet) })
	b.run("3a", "worker appends alone", func(t *testing.T) { b.workerDrain(t, false) })
	b.run("3b", "worker drain with delivery", func(t *testing.T) { b.workerDrain(t, true) })
	b.run("5a", "lateness spike", func(t *testing.T) { b.lateness(t, "5a", b.n(benchSpikeConvs), time.Second, benchSpikeQuiet) })
	if os.Getenv("BENCH_SKIP_100K") == "" {
		b.run("5b", "lateness open conversations", func(t *testing.T) {
			// Posted over 12s, or as fast as the api takes them when that
			// is longer (at row 2a's accepted rate; 2,500/s without it);
			// every conversation must be open at once, so the quiet
			// window outlasts the posting.
			n := b.n(benchOpenConvs)
			within := 12 * time.Second
			r := b.accepted1
			if r <= 0 {
				r = 2500
			}
			posting := max(within, time.Duration(float64(n)/r*float64(time.Second)))
			quiet := (time.Duration(1.2*float64(posting)) + 2*time.Second).Round(time.Second)
			b.lateness(t, "5b", n, within, quiet)
		})
	} else {
		b.note("5b (100,000 open conversations) skipped: BENCH_SKIP_100K is set")
	}
	b.run("6", "redis bytes per conversation", b.memory)

	table := b.table()
	fmt.Print("\n" + table)
	path := os.Getenv("LULL_BENCH_TABLE")
	if path == "" {
		root, err := harness.ModuleRoot()
		require.NoError(t, err)
		path = filepath.Join(root, "bin", "bench-table.txt")
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(table), 0o644))
	t.Logf("table written to %s", path)
	for _, r := range b.rows {
		if r.lost > 0 || r.dup > 0 {
			t.Errorf("row %s (%s): %d lost, %d duplicated", r.id, r.name, r.lost, r.dup)
		}
	}
}

// bench is one run: its settings and the rows measured so far.
type bench struct {
	t         *testing.T
	scale     float64
	clkTck    int64
	rabbitPID int // 0: not found (its CPU column stays empty)
	redisPID  int
	started   time.Time

	ceiling   float64 // row 1's messages/s: the ratios' denominator
	accepted1 float64 // row 2a's accepted/s: sizes row 5b's quiet window

	rows  []*row
	notes []string
}

// row is one line (and its continuation lines) of the table.
type row struct {
	id, name string
	msgs     int
	figures  []figure
	cpu      map[string]float64 // µs per message, by process
	acct     bool               // lost and dup apply
	lost     int
	dup      int
	redeliv  int // batches accepted again under the same batch_id (allowed, at-least-once)
	failed   string
}

// figure is one measured value of a row.
type figure struct {
	what, value string
	ratio       float64 // to the broker ceiling; 0 = none
}

func newBench(t *testing.T) *bench {
	b := &bench{t: t, scale: 1, clkTck: 100, started: time.Now()}
	if s := os.Getenv("BENCH_SCALE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err, "BENCH_SCALE")
		require.Greater(t, v, 0.0, "BENCH_SCALE")
		b.scale = v
	}
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && v > 0 {
			b.clkTck = v
		}
	}
	b.rabbitPID = findProc("beam.smp", "rabbitmq", "")
	b.redisPID = findProc("redis-server", "", strings.TrimPrefix(strings.TrimSuffix(testenv.RedisURL(), "/0"), "redis://"))
	return b
}

// n scales a count, to at least 100.
func (b *bench) n(count int) int { return max(int(float64(count)*b.scale+0.5), 100) }

func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

// run runs one scenario as a subtest: its deployment is gone before the
// next starts, so no two compete for the machine. A scenario that fails
// leaves its row marked and the run goes on.
func (b *bench) run(id, name string, f func(t *testing.T)) {
	if only := os.Getenv("BENCH_ROWS"); only != "" && !slices.Contains(strings.Split(only, ","), id) {
		return
	}
	start := time.Now()
	before := len(b.rows)
	ok := b.t.Run(name, f)
	b.t.Logf("%s: %s", name, time.Since(start).Round(100*time.Millisecond))
	if !ok {
		if len(b.rows) == before {
			b.rows = append(b.rows, &row{id: id, name: name})
		}
		b.rows[len(b.rows)-1].failed = "FAILED (see the test log)"
	}
}

func (b *bench) add(r *row) *row {
	b.rows = append(b.rows, r)
	return r
}

// setup is harness.Setup, with the namespace's Redis keys removed in
// pipelined batches when the test ends (before the harness's own cleanup,
// which deletes them one by one: a minute for row 5b's).
func setup(t *testing.T, opts harness.Options) *harness.Deployment {
	var began time.Time
	t.Cleanup(func() { t.Logf("cleanup took %s", time.Since(began).Round(time.Millisecond)) })
	d := harness.Setup(t, opts)
	t.Cleanup(func() {
		began = time.Now()
		n := unlinkNamespace(t, d)
		t.Logf("unlinked %d keys in %s", n, time.Since(began).Round(time.Millisecond))
	})
	return d
}

// unlinkNamespace UNLINKs every key of the deployment's namespace.
func unlinkNamespace(t *testing.T, d *harness.Deployment) (n int) {
	ctx := context.Background()
	var cursor uint64
	for {
		e, err := d.Redis.Do(ctx, d.Redis.B().Scan().Cursor(cursor).Match(d.NS+":*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Logf("scan %s: %v", d.NS, err)
			return n
		}
		if len(e.Elements) > 0 {
			d.Redis.Do(ctx, d.Redis.B().Unlink().Key(e.Elements...).Build())
			n += len(e.Elements)
		}
		if cursor = e.Cursor; cursor == 0 {
			return n
		}
	}
}

// lullOpts is the timing every lull deployment of the table runs with:
// the production defaults (config.Defaults), not the e2e suite's short
// ones, where they shape throughput or lateness.
func lullOpts(quiet time.Duration, noWorkers bool) harness.Options {
	d := config.Defaults()
	return harness.Options{
		QuietWindow: quiet,
		MaxWait:     max(d.MaxWait, 2*quiet),
		NoWorkers:   noWorkers,
		Bench:       true,
		Serial:      true,
		Env: map[string]string{
			"POLL_INTERVAL":     d.PollInterval.String(),
			"LEASE":             d.Lease.String(),
			"CALLBACK_TIMEOUT":  d.CallbackTimeout.String(),
			"RETRY_BACKOFF_MIN": d.RetryMin.String(),
			"RETRY_BACKOFF_MAX": d.RetryMax.String(),
			"SHUTDOWN_TIMEOUT":  "10s",
		},
	}
}

// benchText is message i of key: benchTextLen bytes.
func benchText(key string, i int) string {
	s := fmt.Sprintf("%s says #%d ", key, i)
	if len(s) >= benchTextLen {
		return s[:benchTextLen]
	}
	return s + strings.Repeat(".", benchTextLen-len(s))
}

// envelope is the inbound queue body the api publishes for a generic
// webhook with this key, id and text (its size is the broker row's
// message size).
func (b *bench) envelope(key, id, text string) []byte {
	body, err := ingest.Envelope{Key: key, Message: batch.Message{
		ID: id, Text: text, Type: "text", ReceivedAt: batch.FormatTime(time.Now()),
		Source: "generic", Metadata: json.RawMessage("{}"),
	}}.Encode()
	if err != nil {
		panic(err) // a fixed, valid envelope
	}
	return body
}

// ---- 1. broker ceiling ----

// brokerCeiling publishes benchBrokerMsgs persistent messages, the size of
// the api's envelopes, through lull's own queue.Publisher (what the api
// publishes with: one connection, a pool of confirm channels, mandatory,
// each Publish waiting for its confirm) from benchSenders goroutines into a
// quorum queue of the run's own (declared as lull declares <ns>.inbound),
// while one consumer (prefetch PREFETCH) acks each message. Its figure is
// messages / (last ack - first publish); the confirmed-publish rate is
// shown beside it.
func (b *bench) brokerCeiling(t *testing.T) {
	r := b.add(&row{id: "1", name: "broker alone: quorum queue, persistent, confirms, 128 publishers, consumer acking"})
	n := b.n(benchBrokerMsgs)
	r.msgs = n
	url := testenv.AMQPURL()
	ns := testenv.Namespace(t, "benchbroker")
	testenv.CleanupBroker(t, url, ns)
	defaults := config.Defaults()
	ctx := context.Background()
	pub, err := queue.NewPublisher(ctx, url, ns, queue.PublisherOptions{
		ConfirmTimeout: defaults.PublishTimeout,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Inbound:        queue.TopologyOptions{DeadLetterTTL: defaults.DeadLetterTTL, DeadLetterMax: defaults.DeadLetterMax},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	harness.WaitUntil(t, harness.StartTimeout, "the publisher ready", pub.Ready)

	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Qos(defaults.Prefetch, 0, false))
	deliveries, err := ch.Consume(queue.InboundQueue(ns), "", false, false, false, false, nil)
	require.NoError(t, err)
	var acked atomic.Int64
	allAcked := make(chan time.Time, 1)
	go func() {
		for d := range deliveries {
			if d.Ack(false) == nil && acked.Add(1) == int64(n) {
				allAcked <- time.Now()
			}
		}
	}()

	bodies := make([][]byte, benchSenders)
	for i := range bodies {
		key := fmt.Sprintf("conv-%06d", i)
		bodies[i] = b.envelope(key, key+"-m0", benchText(key, 0))
	}
	var next, failures atomic.Int64
	var wg sync.WaitGroup
	cpu0 := b.cpu(nil)
	start := time.Now()
	for s := range benchSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				id := fmt.Sprintf("broker-%d", i)
				for pub.Publish(ctx, id, bodies[s]) != nil {
					failures.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	published := time.Since(start)
	var end time.Time
	select {
	case end = <-allAcked:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d of %d messages consumed within 60s of the last confirm", acked.Load(), n)
	}
	cpu := b.cpu(nil).minus(cpu0)
	through := float64(n) / end.Sub(start).Seconds()
	b.ceiling = through
	r.figures = append(r.figures,
		figure{what: "published+acked/s", value: rate(through), ratio: 1},
		figure{what: "confirmed publishes/s", value: rate(float64(n) / published.Seconds())})
	if f := failures.Load(); f > 0 {
		r.figures = append(r.figures, figure{what: "failed publishes (retried)", value: strconv.FormatInt(f, 10)})
	}
	r.cpu = b.perMessage(cpu, n)
}

// ---- 2. lull accepted and delivered ----

// lullIngest is rows 2a and 2b: benchSenders keep-alive HTTP senders post
// each of convs conversations perConv messages (back to back, by one
// sender) to the real api's POST /webhook (generic JSON with message_id),
// worker running, http sink to the harness receiver. accepted/s is
// messages / (last 202 - first POST); delivered/s is messages / (last
// arrival at the receiver - first POST). CPU is the api's and worker's
// utime+stime over the same span, per message.
func (b *bench) lullIngest(t *testing.T, id string, convs, perConv int, quiet time.Duration) {
	name := fmt.Sprintf("lull: %d conversations x %d message(s), QUIET_WINDOW %s", convs, perConv, quiet)
	r := b.add(&row{id: id, name: name, msgs: convs * perConv, acct: true})
	d := setup(t, lullOpts(quiet, false))
	warm := postAll(t, d, convList("warm-%05d", benchWarmup, perConv), benchSenders)
	waitDelivered(t, d, len(warm.sent), warm.last.Add(quiet), 0)

	from := d.Recv.Count()
	cpu0 := b.cpu(d)
	res := postAll(t, d, convList("conv-%06d", convs, perConv), benchSenders)
	w := waitDelivered(t, d, len(res.sent), res.last.Add(quiet), from)
	cpu := b.cpu(d).minus(cpu0)
	b.account(t, r, res.sent, w.all)

	acc := float64(len(res.sent)) / res.last.Sub(res.first).Seconds()
	span := w.lastAt.Sub(res.first) - quiet // the quiet window is a wait, not work
	del := float64(w.msgs) / span.Seconds()
	if id == "2a" {
		b.accepted1 = acc
	}
	r.figures = append(r.figures, figure{what: "accepted/s (202)", value: rate(acc), ratio: acc / b.ceiling})
	r.figures = append(r.figures, figure{what: "delivered msgs/s", value: rate(del), ratio: del / b.ceiling})
	r.figures = append(r.figures, figure{what: "batches delivered/s", value: fmt.Sprintf("%.0f /s", float64(len(w.batches))/span.Seconds())})
	if res.refused > 0 {
		r.figures = append(r.figures, figure{what: "POSTs not 202 (retried)", value: strconv.Itoa(res.refused)})
	}
	r.cpu = b.perMessage(cpu, len(res.sent))
}

// ---- 3. worker drain ----

// workerDrain is rows 3a and 3b: with the worker stopped, benchDrainMsgs
// envelopes (one per conversation, as the api would publish them) are
// published straight into <ns>.inbound; then one worker starts. The clock
// starts when its consumer shows on the queue. 3a (deliver false,
// QUIET_WINDOW 10m: nothing comes due) stops it when every conversation is
// in the due sets (Redis, polled every 5ms): appends/s. 3b (QUIET_WINDOW
// 50ms) stops it at the last message's arrival at the receiver: the drain
// with flush, deliver and commit.
func (b *bench) workerDrain(t *testing.T, deliver bool) {
	n := b.n(benchDrainMsgs)
	r := b.add(&row{id: "3a", name: fmt.Sprintf("worker alone: drain a %d-message backlog, appends only (QUIET_WINDOW 10m)", n), msgs: n, acct: true})
	quiet := benchLongQuiet
	if deliver {
		r.id, r.name = "3b", fmt.Sprintf("worker alone: drain a %d-message backlog, append+flush+deliver+commit (QUIET_WINDOW 50ms)", n)
		quiet = benchShortQuiet
	}
	d := setup(t, lullOpts(quiet, true))
	inbound := queue.InboundQueue(d.NS)
	ch := d.Channel()
	require.NoError(t, ch.Confirm(false))
	convKeys := harness.Keys("conv-%06d", n)
	sent := make([]harness.Sent, 0, n)
	var pending []*amqp.DeferredConfirmation
	settle := func() {
		for _, dc := range pending {
			ok, err := dc.WaitContext(context.Background())
			require.NoError(t, err)
			require.True(t, ok, "publish nacked")
		}
		pending = pending[:0]
	}
	for _, key := range convKeys {
		id, text := key+"-m0", benchText(key, 0)
		at := time.Now()
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", inbound, false, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Timestamp: at, Body: b.envelope(key, id, text),
		})
		require.NoError(t, err)
		pending = append(pending, dc)
		sent = append(sent, harness.Sent{Key: key, ID: id, Text: text, Start: at, End: at})
		if len(pending) == 1000 {
			settle()
		}
	}
	settle()
	d.WaitQueue(inbound, fmt.Sprintf("%d messages ready", n), func(q amqp.Queue) bool { return q.Messages == n })

	d.StartWorker()
	harness.WaitUntil(t, harness.StartTimeout, "the worker's consumer", func() bool {
		_, consumers, err := d.QueueState()
		return err == nil && consumers == 1
	})
	cpu0 := b.cpu(d)
	start := time.Now()
	if !deliver {
		harness.WaitUntil(t, 120*time.Second, "every message appended", func() bool {
			time.Sleep(5 * time.Millisecond)
			return dueCount(t, d) >= n
		})
		elapsed := time.Since(start)
		cpu := b.cpu(d).minus(cpu0)
		stored := bufferedMessages(t, d, convKeys)
		r.lost, r.dup = max(n-stored, 0), max(stored-n, 0)
		r.figures = append(r.figures, figure{what: "appends/s", value: rate(float64(n) / elapsed.Seconds()), ratio: float64(n) / elapsed.Seconds() / b.ceiling})
		r.cpu = b.perMessage(cpu, n)
		b.note("3a: lost/dup compare the messages in the conversations' buffers (LLEN) with those published; nothing is delivered")
		return
	}
	wt := waitDelivered(t, d, n, start.Add(quiet), 0)
	cpu := b.cpu(d).minus(cpu0)
	b.account(t, r, sent, wt.all)
	del := float64(wt.msgs) / (wt.lastAt.Sub(start) - quiet).Seconds()
	r.figures = append(r.figures, figure{what: "delivered msgs/s", value: rate(del), ratio: del / b.ceiling})
	r.cpu = b.perMessage(cpu, n)
}

// ---- 5. lateness ----

// lateness is rows 5a and 5b: convs one-message conversations posted as
// fast as row 2's senders post, QUIET_WINDOW quiet; each batch's lateness
// is its arrival at the receiver - (its message's 202 + quiet). It shows
// too the lateness against the deadline Redis held (last_at + quiet; the
// scheduler's and sink's own share), the claim's lag (flushed_at -
// deadline), the span the deadlines fell in, the most conversations open
// at once (in the due sets, sampled every 250ms) and the flush capacity
// (batches claimed per second, from flushed_at: the busiest second and the
// mean over the claims' span).
func (b *bench) lateness(t *testing.T, id string, convs int, within, quiet time.Duration) {
	r := b.add(&row{id: id, msgs: convs, acct: true, name: fmt.Sprintf(
		"lateness: %d one-message conversations posted within %s (at most), QUIET_WINDOW %s", convs, within, quiet)})
	d := setup(t, lullOpts(quiet, false))
	if quiet <= 2*time.Second { // a long wait for the warm-up's batches would be longer than it helps (5b)
		warm := postAll(t, d, convList("warm-%05d", benchWarmup, 1), benchSenders)
		waitDelivered(t, d, len(warm.sent), warm.last.Add(quiet), 0)
	}
	from := d.Recv.Count()

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			if n := int64(dueCount(t, d)); n > peak.Load() {
				peak.Store(n)
			}
		}
	}()
	cpu0 := b.cpu(d)
	res := postPaced(t, d, convList("conv-%06d", convs, 1), benchSenders, within)
	t.Logf("posted %d messages in %s", len(res.sent), res.last.Sub(res.first).Round(time.Millisecond))
	w := waitDelivered(t, d, len(res.sent), res.last.Add(quiet), from)
	cpu := b.cpu(d).minus(cpu0)
	close(stop)
	<-sampled
	t.Logf("delivered %s after the last 202", w.lastAt.Sub(res.last).Round(time.Millisecond))
	accounted := time.Now()
	b.account(t, r, res.sent, w.all)
	t.Logf("accounted in %s", time.Since(accounted).Round(time.Millisecond))
	r.cpu = b.perMessage(cpu, len(res.sent))

	last202 := map[harness.Ref]time.Time{}
	var firstDue, lastDue time.Time
	for _, s := range res.sent {
		last202[s.Ref()] = s.End
		if due := s.End.Add(quiet); firstDue.IsZero() || due.Before(firstDue) {
			firstDue = due
		}
		if due := s.End.Add(quiet); due.After(lastDue) {
			lastDue = due
		}
	}
	var late, vsDeadline, claimLag []time.Duration
	var flushed []time.Time
	for _, got := range w.batches {
		bt := got.Batch
		var end time.Time
		for _, m := range bt.Messages {
			if e := last202[harness.Ref{Key: bt.Key, ID: m.ID}]; e.After(end) {
				end = e
			}
		}
		if end.IsZero() {
			continue
		}
		deadline := harness.ParseTime(t, bt.LastAt).Add(quiet)
		at := harness.ParseTime(t, bt.FlushedAt)
		late = append(late, got.At.Sub(end.Add(quiet)))
		vsDeadline = append(vsDeadline, got.At.Sub(deadline))
		claimLag = append(claimLag, at.Sub(deadline))
		flushed = append(flushed, at)
	}
	if len(late) == 0 {
		t.Fatal("no batch to measure")
	}
	r.figures = append(r.figures,
		figure{what: "late vs 202+QW p50 / p99", value: pcts(late)},
		figure{what: "late vs deadline p50 / p99", value: pcts(vsDeadline)},
		figure{what: "claim lag p50 / p99", value: pcts(claimLag)},
		figure{what: "deadlines spread over", value: lastDue.Sub(firstDue).Round(10 * time.Millisecond).String()},
		figure{what: "open at once (peak)", value: strconv.FormatInt(peak.Load(), 10)},
	)
	peak1s, mean := flushCapacity(flushed)
	r.figures = append(r.figures, figure{what: "claims: busiest 1s / mean rate", value: fmt.Sprintf("%.0f / %.0f /s", peak1s, mean)})
}

// flushCapacity is the most claims within any one second and the mean
// claim rate over the claims' span.
func flushCapacity(at []time.Time) (peak, mean float64) {
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	j := 0
	for i := range at {
		for at[i].Sub(at[j]) >= time.Second {
			j++
		}
		peak = max(peak, float64(i-j+1))
	}
	if span := at[len(at)-1].Sub(at[0]); span > 0 {
		mean = float64(len(at)) / span.Seconds()
	}
	return peak, mean
}

// ---- 6. Redis bytes ----

// memory is row 6: benchMemoryConvs conversations, one message of a
// benchTextLen-byte text each, buffered (QUIET_WINDOW 10m); then one more
// message to each. It prints MEMORY USAGE (SAMPLES 0) of a conversation's
// buf, meta and seen keys (the median over a sample of them), its share of
// its shard's due set (MEMORY USAGE of the set / its members), and INFO
// memory used_memory's growth / conversations; then both again for the
// second message: bytes per additional message. used_memory is the whole
// Redis's, which other clients of the same Redis move too.
func (b *bench) memory(t *testing.T) {
	n := b.n(benchMemoryConvs)
	r := b.add(&row{id: "6", name: fmt.Sprintf("Redis bytes per open conversation: %d conversations, %d-byte texts", n, benchTextLen), msgs: n, acct: true})
	d := setup(t, lullOpts(benchLongQuiet, false))
	convKeys := harness.Keys("conv-%06d", n)

	used0 := usedMemory(t, d.Redis)
	res := postAll(t, d, convList("conv-%06d", n, 1), benchSenders)
	harness.WaitUntil(t, 60*time.Second, "every conversation buffered", func() bool {
		time.Sleep(20 * time.Millisecond)
		return dueCount(t, d) >= n
	})
	waitBuffered(t, d, convKeys, len(res.sent))
	used1 := usedMemory(t, d.Redis)
	one := keyBytes(t, d, convKeys)

	// The second message: convList's message 1 of each conversation.
	res2 := postAll(t, d, convListFrom("conv-%06d", n, 1, 1), benchSenders)
	stored := waitBuffered(t, d, convKeys, len(res.sent)+len(res2.sent))
	used2 := usedMemory(t, d.Redis)
	two := keyBytes(t, d, convKeys)
	total := len(res.sent) + len(res2.sent)
	r.lost, r.dup = max(total-stored, 0), max(stored-total, 0)
	b.note("6: lost/dup compare the messages in the conversations' buffers (LLEN) with those accepted; nothing is delivered")

	per := func(used int64, convs int) string { return fmt.Sprintf("%.0f B", float64(used)/float64(convs)) }
	r.figures = append(r.figures,
		figure{what: "MEMORY USAGE buf/meta/seen/due", value: fmt.Sprintf("%d/%d/%d/%.0f B", one.buf, one.meta, one.seen, one.due)},
		figure{what: "due sets: members/shard, encoding", value: fmt.Sprintf("%d, %s", n/keys.Shards, one.dueEncoding)},
		figure{what: "MEMORY USAGE per conversation", value: fmt.Sprintf("%.0f B", one.total())},
		figure{what: "used_memory delta / conversation", value: per(used1-used0, n)},
		figure{what: "+1 message: MEMORY USAGE", value: fmt.Sprintf("%.0f B", two.total()-one.total())},
		figure{what: "+1 message: used_memory delta", value: per(used2-used1, n)},
	)
}

// convBytes is the MEMORY USAGE of one conversation's keys.
type convBytes struct {
	buf, meta, seen int64
	due             float64 // its share of the shard's due set
	dueEncoding     string  // OBJECT ENCODING of shard 0's due set
}

func (c convBytes) total() float64 { return float64(c.buf+c.meta+c.seen) + c.due }

// keyBytes is the median MEMORY USAGE of buf, meta and seen over (up to)
// 200 of the conversations, and the due sets' bytes per member.
func keyBytes(t *testing.T, d *harness.Deployment, convKeys []string) convBytes {
	ctx := context.Background()
	ks := keys.New(d.NS)
	step := max(len(convKeys)/200, 1)
	var bufs, metas, seens []int64
	usage := func(key string) int64 {
		v, err := d.Redis.Do(ctx, d.Redis.B().MemoryUsage().Key(key).Samples(0).Build()).AsInt64()
		require.NoError(t, err, "MEMORY USAGE %s", key)
		return v
	}
	for i := 0; i < len(convKeys); i += step {
		c := ks.Conversation(convKeys[i])
		bufs = append(bufs, usage(c.Buf))
		metas = append(metas, usage(c.Meta))
		seens = append(seens, usage(c.Seen))
	}
	median := func(v []int64) int64 { slices.Sort(v); return v[len(v)/2] }
	var dueBytes, members int64
	for shard := range keys.Shards {
		dueBytes += usage(ks.Due(shard))
		m, err := d.Redis.Do(ctx, d.Redis.B().Zcard().Key(ks.Due(shard)).Build()).AsInt64()
		require.NoError(t, err)
		members += m
	}
	enc, err := d.Redis.Do(ctx, d.Redis.B().ObjectEncoding().Key(ks.Due(0)).Build()).ToString()
	require.NoError(t, err)
	return convBytes{buf: median(bufs), meta: median(metas), seen: median(seens),
		due: float64(dueBytes) / float64(max(members, 1)), dueEncoding: enc}
}

// usedMemory is INFO memory's used_memory.
func usedMemory(t *testing.T, c rueidis.Client) int64 {
	info, err := c.Do(context.Background(), c.B().Info().Section("memory").Build()).ToString()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("INFO memory has no used_memory")
	return 0
}

// ---- Redis probes ----

// dueCount is how many conversations the deployment's due sets hold.
func dueCount(t *testing.T, d *harness.Deployment) int {
	ks := keys.New(d.NS)
	cmds := make(rueidis.Commands, keys.Shards)
	for shard := range keys.Shards {
		cmds[shard] = d.Redis.B().Zcard().Key(ks.Due(shard)).Build()
	}
	total := 0
	for _, res := range d.Redis.DoMulti(context.Background(), cmds...) {
		n, err := res.AsInt64()
		require.NoError(t, err)
		total += int(n)
	}
	return total
}

// bufferedMessages is the sum of the conversations' buffer lengths.
func bufferedMessages(t *testing.T, d *harness.Deployment, convKeys []string) int {
	ks := keys.New(d.NS)
	total := 0
	for chunk := range slices.Chunk(convKeys, 1000) {
		cmds := make(rueidis.Commands, len(chunk))
		for i, k := range chunk {
			cmds[i] = d.Redis.B().Llen().Key(ks.Conversation(k).Buf).Build()
		}
		for _, res := range d.Redis.DoMulti(context.Background(), cmds...) {
			n, err := res.AsInt64()
			require.NoError(t, err)
			total += int(n)
		}
	}
	return total
}

// waitBuffered waits (up to 60s) until the buffers hold want messages and
// returns what they hold then.
func waitBuffered(t *testing.T, d *harness.Deployment, convKeys []string, want int) int {
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := bufferedMessages(t, d, convKeys)
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- senders ----

// conv is a conversation to post: messages from..from+n-1 of key.
type conv struct {
	key     string
	from, n int
}

func convList(format string, convs, perConv int) []conv {
	return convListFrom(format, convs, 0, perConv)
}

func convListFrom(format string, convs, from, perConv int) []conv {
	out := make([]conv, convs)
	for i := range out {
		out[i] = conv{key: fmt.Sprintf(format, i), from: from, n: perConv}
	}
	return out
}

// posted is what postAll sent.
type posted struct {
	sent        []harness.Sent
	first, last time.Time // the first POST's start, the last 202
	refused     int       // answers that were not 202 (each retried)
}

// postAll posts convs from senders goroutines over the deployment's
// keep-alive client: a sender takes one conversation at a time and posts
// its messages one after the other. Each carries its message_id; one not
// answered 202 is posted again (same id) for up to 30s.
func postAll(t *testing.T, d *harness.Deployment, convs []conv, senders int) posted {
	return postPaced(t, d, convs, senders, 0)
}

// postPaced is postAll spreading the messages' first POSTs evenly over
// within (at most: senders that fall behind go on at once); 0 = no pacing.
func postPaced(t *testing.T, d *harness.Deployment, convs []conv, senders int, within time.Duration) posted {
	jobs := make(chan conv, len(convs))
	total := 0
	for _, c := range convs {
		jobs <- c
		total += c.n
	}
	close(jobs)
	var started atomic.Int64
	url := d.URL("/webhook")
	results := make([]posted, senders)
	var wg sync.WaitGroup
	first := time.Now()
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[s]
			for c := range jobs {
				for i := c.from; i < c.from+c.n; i++ {
					id, text := fmt.Sprintf("%s-m%d", c.key, i), benchText(c.key, i)
					body := []byte(fmt.Sprintf(`{"unique_id":%q,"message":%q,"message_id":%q}`, c.key, text, id))
					if k := started.Add(1) - 1; within > 0 {
						time.Sleep(time.Until(first.Add(time.Duration(float64(within) * float64(k) / float64(total)))))
					}
					start := time.Now()
					for {
						status := postOnce(d.Client, url, body)
						if status == http.StatusAccepted {
							break
						}
						res.refused++
						if time.Since(start) > 30*time.Second {
							t.Errorf("POST %s %s: not accepted within 30s (last status %d)", c.key, id, status)
							break
						}
						time.Sleep(50 * time.Millisecond)
					}
					end := time.Now()
					res.sent = append(res.sent, harness.Sent{Key: c.key, ID: id, Text: text, Start: start, End: end})
					if end.After(res.last) {
						res.last = end
					}
				}
			}
		}()
	}
	wg.Wait()
	out := posted{first: first}
	for _, r := range results {
		out.sent = append(out.sent, r.sent...)
		out.refused += r.refused
		if r.last.After(out.last) {
			out.last = r.last
		}
	}
	return out
}

func postOnce(c *http.Client, url string, body []byte) int {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// ---- the receiver ----

// watch follows the receiver's requests incrementally.
type watch struct {
	r       *harness.Receiver
	next    int
	seen    map[string]bool
	all     []harness.Received // every request
	batches []harness.Received // the first accepted request of each batch_id
	msgs    int                // messages in batches
	lastAt  time.Time          // the latest first arrival of a batch
}

func (w *watch) poll() {
	for _, got := range w.r.Since(w.next) {
		w.next++
		w.all = append(w.all, got)
		if !got.OK() || w.seen[got.Batch.BatchID] {
			continue
		}
		w.seen[got.Batch.BatchID] = true
		w.batches = append(w.batches, got)
		w.msgs += len(got.Batch.Messages)
		if got.At.After(w.lastAt) {
			w.lastAt = got.At
		}
	}
}

// waitDelivered waits until the receiver has want messages in distinct
// accepted batches, counting only its requests from the from-th on (the
// ones before are an earlier phase's). It gives up, failing the test, when
// nothing new arrived for 30s after due (the expected last deadline).
func waitDelivered(t *testing.T, d *harness.Deployment, want int, due time.Time, from int) *watch {
	w := &watch{r: d.Recv, next: from, seen: map[string]bool{}}
	progress := time.Now()
	count := 0
	for {
		w.poll()
		if w.msgs >= want {
			return w
		}
		if w.msgs != count {
			count, progress = w.msgs, time.Now()
		}
		for _, p := range append([]*harness.Proc{d.API}, d.Workers...) {
			if p.Exited() {
				t.Fatalf("%d of %d messages delivered; %s exited: %s", w.msgs, want, p.Name, p.State())
			}
		}
		if time.Now().After(due) && time.Since(maxTime(progress, due)) > 30*time.Second {
			t.Errorf("%d of %d messages delivered; nothing new for 30s", w.msgs, want)
			return w
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// account counts the lost and duplicated messages of a row and runs the
// harness's exactly-once assertions (which fail the test).
func (b *bench) account(t *testing.T, r *row, sent []harness.Sent, rs []harness.Received) {
	in := map[harness.Ref]int{}
	seen := map[string]bool{}
	for _, got := range rs {
		if !got.OK() {
			continue
		}
		if seen[got.Batch.BatchID] {
			r.redeliv++
			continue
		}
		seen[got.Batch.BatchID] = true
		for _, m := range got.Batch.Messages {
			in[harness.Ref{Key: got.Batch.Key, ID: m.ID}]++
		}
	}
	for _, s := range sent {
		switch n := in[s.Ref()]; {
		case n == 0:
			r.lost++
		case n > 1:
			r.dup += n - 1
		}
	}
	if !harness.AssertExactlyOnce(t, sent, rs) && r.lost == 0 && r.dup == 0 {
		r.failed = "exactly-once assertions failed (see the test log)"
	}
}

// ---- CPU ----

// cpuTicks is utime+stime, in clock ticks, by process.
type cpuTicks map[string]int64

// cpu reads the api's and worker's (when d is not nil), RabbitMQ's and
// Redis's CPU time.
func (b *bench) cpu(d *harness.Deployment) cpuTicks {
	out := cpuTicks{}
	if d != nil {
		if d.API != nil && !d.API.Exited() {
			out["api"] = procTicks(d.API.PID())
		}
		var w int64
		for _, p := range d.Workers {
			if !p.Exited() {
				w += procTicks(p.PID())
			}
		}
		if len(d.Workers) > 0 {
			out["worker"] = w
		}
	}
	if b.rabbitPID > 0 {
		out["rabbitmq"] = procTicks(b.rabbitPID)
	}
	if b.redisPID > 0 {
		out["redis"] = procTicks(b.redisPID)
	}
	out["bench"] = procTicks(os.Getpid()) // the senders, receiver and publishers
	return out
}

func (c cpuTicks) minus(before cpuTicks) cpuTicks {
	out := cpuTicks{}
	for k, v := range c {
		if v0, ok := before[k]; ok || k == "worker" {
			out[k] = v - v0 // a worker started after before was taken counts from 0
		}
	}
	return out
}

// perMessage turns ticks into µs per message.
func (b *bench) perMessage(c cpuTicks, msgs int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range c {
		out[k] = float64(v) * 1e6 / float64(b.clkTck) / float64(msgs)
	}
	return out
}

// procTicks is utime+stime of pid from /proc/<pid>/stat (0 if unreadable).
func procTicks(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	// Fields after the command (which may hold spaces) in parentheses:
	// state is field 3, utime 14, stime 15.
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return u + st
}

// findProc finds the process named comm, preferring one run by user or
// whose command line contains arg; 0 when there is none.
func findProc(comm, user, arg string) int {
	entries, _ := os.ReadDir("/proc")
	best, bestScore := 0, -1
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		score := 0
		if arg != "" {
			if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmdline, []byte(arg)) {
				score++
			}
		}
		if user != "" {
			if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				if uid := procUID(string(status)); uid != "" && uid == lookupUID(user) {
					score++
				}
			}
		}
		if score > bestScore || (score == bestScore && pid < best) {
			best, bestScore = pid, score
		}
	}
	return best
}

func procUID(status string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

func lookupUID(user string) string {
	raw, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Split(line, ":"); len(f) > 2 && f[0] == user {
			return f[2]
		}
	}
	return ""
}

// ---- formatting ----

func rate(v float64) string { return fmt.Sprintf("%.0f msg/s", v) }

// pcts is the p50 and p99 of values, in milliseconds.
func pcts(values []time.Duration) string {
	slices.Sort(values)
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64)
	}
	return ms(percentile(values, 0.50)) + " / " + ms(percentile(values, 0.99)) + " ms"
}

// table formats the run's rows.
func (b *bench) table() string {
	var sb strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&sb, "lull bench table — %s, host %s, %d CPUs, BENCH_SCALE=%g, CLK_TCK=%d, took %s\n",
		b.started.Format(time.RFC3339), host, runtime.NumCPU(), b.scale, b.clkTck, time.Since(b.started).Round(time.Second))
	fmt.Fprintf(&sb, "%d senders/publishers; %d-byte texts, %d-byte queue envelopes; ratios are to row 1 (RabbitMQ alone, same run)\n",
		benchSenders, benchTextLen, len(b.envelope("conv-000000", "conv-000000-m0", benchText("conv-000000", 0))))
	fmt.Fprintf(&sb, "CPU columns: µs of utime+stime (/proc/<pid>/stat) per message over the row's measured span, for the api, the worker(s), RabbitMQ,\n")
	fmt.Fprintf(&sb, "Redis (both shared with anything else using them) and this test process (the HTTP senders and the receiver, or row 1's publishers and consumer)\n\n")

	const format = "%-3s %-34s %22s %8s  %7s %7s %7s %7s %7s  %5s %4s\n"
	header := fmt.Sprintf(format, "row", "figure", "value", "x broker", "api", "worker", "rabbit", "redis", "bench", "lost", "dup")
	sb.WriteString(header)
	sb.WriteString(strings.Repeat("-", len([]rune(header))-1) + "\n")
	cpu := func(r *row, k string) string {
		if v, ok := r.cpu[k]; ok {
			return fmt.Sprintf("%.0f", v)
		}
		return ""
	}
	for _, r := range b.rows {
		fmt.Fprintf(&sb, "%-3s %s (%d msgs)\n", r.id, r.name, r.msgs)
		if r.failed != "" {
			fmt.Fprintf(&sb, "    %s\n", r.failed)
		}
		for i, f := range r.figures {
			ratio := ""
			if f.ratio > 0 {
				ratio = fmt.Sprintf("%.2f", f.ratio)
			}
			var api, worker, rabbit, redis, self, lost, dup string
			if i == 0 {
				api, worker, rabbit, redis, self = cpu(r, "api"), cpu(r, "worker"), cpu(r, "rabbitmq"), cpu(r, "redis"), cpu(r, "bench")
				lost, dup = "-", "-"
				if r.acct {
					lost, dup = strconv.Itoa(r.lost), strconv.Itoa(r.dup)
				}
			}
			fmt.Fprintf(&sb, format, "", f.what, f.value, ratio, api, worker, rabbit, redis, self, lost, dup)
		}
		if r.redeliv > 0 {
			fmt.Fprintf(&sb, "    %d batch(es) accepted again under the same batch_id (at-least-once redelivery, not a duplicate)\n", r.redeliv)
		}
	}
	sb.WriteString(`
1   RabbitMQ alone: lull's queue.Publisher (one connection, 4 confirm channels, mandatory, persistent, each publish waits for its
    confirm) from 128 goroutines into a quorum queue declared as <ns>.inbound, one consumer (prefetch 200) acking each message;
    published+acked/s = messages / (last ack - first publish). It is every ratio's denominator.
2   128 keep-alive HTTP senders POST /webhook (generic JSON, own message_id) to the real api, worker running, http sink to the
    receiver; a sender posts one conversation's messages back to back. accepted/s = messages / (last 202 - first POST);
    delivered/s = messages / (last arrival at the receiver - first POST - QUIET_WINDOW). 300 warm-up conversations go first
    (in rows 2, 5a; delivered before the clock starts).
3   the backlog is published straight into <ns>.inbound (one message per conversation) with the worker stopped, then one worker
    starts; the clock starts when its consumer shows. 3a stops when every conversation is in Redis' due sets (QUIET_WINDOW 10m);
    3b at the last arrival at the receiver, less QUIET_WINDOW.
5   late vs 202+QW = arrival at the receiver - (the message's 202 + QUIET_WINDOW); vs deadline = arrival - (batch last_at +
    QUIET_WINDOW), last_at being Redis' time of the append (it can precede the 202); claim lag = flushed_at - that deadline;
    claims = batches by flushed_at. "open at once" samples the due sets every 250ms. Their CPU spans the quiet window's idle
    time too. Posting is paced to the window named, and goes slower only when the api does not keep up.
6   MEMORY USAGE ... SAMPLES 0, the median over 200 of the conversations (due: the due sets' bytes / their members); used_memory is
    INFO memory's, before and after, / conversations; "+1 message" adds a second 40-byte message to every conversation.
lost/dup: from the exactly-once accounting of every accepted message against the receiver's batches (a duplicate is a message in
    two batches; a batch_id redelivered is reported apart); the run fails if any is non-zero.
`)
	if len(b.notes) > 0 {
		sb.WriteString("\n")
		for _, n := range b.notes {
			sb.WriteString("note: " + n + "\n")
		}
	}
	return sb.String()
}
