//go:build faults

// Network faults: a Toxiproxy of the test's own between lull's processes
// and Redis or RabbitMQ (faults_toxiproxy_test.go), and servers of the
// test's own pushed to their limits (faults_oom_test.go,
// faults_alarm_test.go). Each scenario runs the suite's steady traffic,
// smaller (networkLoad), and ends with the same accounting as every fault
// (faultRun.finish): accepted = delivered, nothing lost, nothing twice,
// order kept.

package e2e

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/testenv"
)

// The network faults, in table order after the others (see scenarios).
const (
	faultRedisLatency   = "redis link 500ms latency spikes"
	faultRedisResets    = "redis link resets, replies lost"
	faultAPIHalfOpen    = "api-rabbitmq link half-open 3s"
	faultWorkerHalfOpen = "worker-rabbitmq link half-open 3s"
	faultRedisOOM       = "redis out of memory 3s"
	faultMemoryAlarm    = "rabbitmq memory alarm 3s"
	faultWorkerCutOff   = "worker appending cut off from redis"
)

const (
	// publishTimeout is the api's PUBLISH_TIMEOUT in the broker scenarios:
	// short, so a refused POST is quick.
	publishTimeout = time.Second
	// answerMargin is what an answer may take beyond PUBLISH_TIMEOUT on a
	// loaded 2-core machine.
	answerMargin = time.Second
	// recoveryBound is how soon after a fault ends the api must accept
	// again.
	recoveryBound = 10 * time.Second
)

// networkLoad is the steady traffic of the network scenarios: 120
// conversations x 3 bursts x 5 messages, 1,800 messages over about 8 s.
func networkLoad() harness.LoadSpec { return harness.LoadSpec{Conversations: 120} }

// TestFaultsNetwork runs the network and resource faults, like TestFaults.
func TestFaultsNetwork(t *testing.T) { runScenarios(t, true) }

// redisProxyRun starts a scenario whose worker talks to the shared Redis
// through a Toxiproxy (the api and the test talk to it directly).
func redisProxyRun(t *testing.T, name string) (*faultRun, *toxicProxy) {
	tp := startToxiproxy(t)
	px := tp.proxy("redis", upstreamOf(t, testenv.RedisURL()))
	opts := faultOptions()
	opts.WorkerEnv = map[string]string{"REDIS_URL": px.url(testenv.RedisURL())}
	return newFaultRun(t, name, opts), px
}

// Latency spikes of 500 ms on the worker's Redis link while it appends,
// flushes and commits: on the replies, then on the requests, then on both
// (a round trip of 1 s), 1 s each, 0.5 s apart. Every script still runs
// once and whole; nothing may be lost or doubled.
func testFaultRedisLatency(t *testing.T) {
	f, px := redisProxyRun(t, faultRedisLatency)
	f.midStream(networkLoad())
	inflight := f.waitInflight(3)
	t.Logf("latency spikes begin with %d batches in flight, %d messages accepted", inflight, len(f.b.SentSoFar()))
	for _, streams := range [][]string{{"downstream"}, {"upstream"}, {"upstream", "downstream"}} {
		for _, s := range streams {
			px.latency("spike_"+s, s, 500*time.Millisecond)
		}
		time.Sleep(time.Second)
		for _, s := range streams {
			px.remove("spike_" + s)
		}
		time.Sleep(500 * time.Millisecond)
	}
	f.finish()
	f.b.LogProblems("worker")
}

// Lost replies on the worker's Redis link, while it appends, flushes and
// commits: first Redis's replies are dropped for 2.5 s, beyond
// REDIS_TIMEOUT, before the connections close; then six times, for 150 ms,
// every connection is reset the moment Redis answers on it; then the proxy
// goes away for 0.5 s (every connection closed, new ones refused). Each
// time the scripts ran in Redis and their replies never arrived.
// The worker must retry what it did not see succeed: a lost append reply
// is retried and deduped, a lost claim is re-driven when its lease ends, a
// lost commit delivers the batch again under its own batch_id.
func testFaultRedisResets(t *testing.T) {
	f, px := redisProxyRun(t, faultRedisResets)
	f.midStream(networkLoad())
	inflight := f.waitInflight(3)
	t.Logf("resets begin with %d batches in flight, %d messages accepted", inflight, len(f.b.SentSoFar()))
	// Redis goes silent for longer than REDIS_TIMEOUT (2s): commands arrive
	// and run, their replies are dropped, and nothing closes until the
	// toxic goes (the connections it held are closed then).
	px.add("silent_replies", "timeout", "downstream", map[string]any{"timeout": 0})
	time.Sleep(2500 * time.Millisecond)
	px.remove("silent_replies")
	time.Sleep(500 * time.Millisecond)
	for range 6 {
		px.resetReplies("reset_replies")
		time.Sleep(150 * time.Millisecond)
		px.remove("reset_replies")
		time.Sleep(350 * time.Millisecond)
	}
	px.disable()
	time.Sleep(500 * time.Millisecond)
	px.enable()
	t.Logf("resets over, %d messages accepted", len(f.b.SentSoFar()))
	f.finish()
	n := f.b.LogProblems("worker")
	assert.Positive(t, n, "the worker logged no Redis error: the resets missed it")
}

// A half-open link between the api and RabbitMQ while confirms are
// pending: for 3 s nothing passes either way and nothing is closed. Every
// POST made meanwhile is a 503 with Retry-After within PUBLISH_TIMEOUT (no
// confirm can come, so no 202); once the link is back (the cut connection
// closed, new ones pass) the api accepts again within recoveryBound.
func testFaultAPIHalfOpen(t *testing.T) {
	tp := startToxiproxy(t)
	px := tp.proxy("rabbitmq", upstreamOf(t, testenv.AMQPURL()))
	opts := faultOptions()
	opts.Env["PUBLISH_TIMEOUT"] = publishTimeout.String()
	opts.APIEnv = map[string]string{"AMQP_URL": px.url(testenv.AMQPURL())}
	f := newFaultRun(t, faultAPIHalfOpen, opts)
	posts := recordPosts(f.b)
	f.midStream(networkLoad())
	px.halfOpen()
	cut := time.Now()
	t.Logf("api-broker link cut (half-open), %d messages accepted", len(f.b.SentSoFar()))
	time.Sleep(3 * time.Second)
	healed := time.Now()
	px.heal()
	t.Logf("link back; POSTs while cut, by status: %s", posts.statusSummary(cut, healed))
	f.finish()
	t.Logf("%s; cut for 3s", posts.assertRefusedThenAccepted(t, cut, healed, "the link came back"))
	f.b.LogProblems("api")
}

// The same half-open link between the worker and RabbitMQ: for 3 s the
// worker gets no delivery and its acks go nowhere, while it still appends
// what it holds. When the cut connection closes the broker redelivers every
// unacked message and the worker, subscribed again, dedupes the ones it
// had appended.
func testFaultWorkerHalfOpen(t *testing.T) {
	tp := startToxiproxy(t)
	px := tp.proxy("rabbitmq", upstreamOf(t, testenv.AMQPURL()))
	opts := faultOptions()
	opts.WorkerEnv = map[string]string{"AMQP_URL": px.url(testenv.AMQPURL())}
	f := newFaultRun(t, faultWorkerHalfOpen, opts)
	f.midStream(networkLoad())
	inflight := f.waitInflight(3)
	px.halfOpen()
	t.Logf("worker-broker link cut (half-open) with %d batches in flight, %d messages accepted", inflight, len(f.b.SentSoFar()))
	time.Sleep(3 * time.Second)
	ready, _, err := f.b.QueueState()
	px.heal()
	t.Logf("link back; %d messages were waiting in the queue (%v)", ready, err)
	f.finish()
	subscribed := len(f.b.OutputLines("worker", "consumer subscribed"))
	t.Logf("worker subscribed %d times; %d settles failed on the cut channel", subscribed, len(f.b.OutputLines("worker", "settle failed")))
	assert.GreaterOrEqual(t, subscribed, 2, "the worker never subscribed again after the link came back")
	f.b.LogProblems("worker")
}

// The worker appending (the inbound queue's single active consumer) is cut
// off from Redis alone: its link stalls (half-open) while the other worker
// reaches Redis. After INTAKE_HANDOVER_AFTER it hands the queue over, in
// queue order, and the other worker appends everything while the link is
// still cut; the batches the cut-off one had claimed are re-driven when
// their leases end. Nothing is lost, twice or out of order.
func testFaultWorkerCutOffFromRedis(t *testing.T) {
	stall := testenv.StartStallProxy(t, upstreamOf(t, testenv.RedisURL()))
	u, err := url.Parse(testenv.RedisURL())
	require.NoError(t, err)
	u.Host = stall.Addr()
	opts := faultOptions()
	opts.NoWorkers = true
	opts.WorkerEnv = map[string]string{"INTAKE_HANDOVER_AFTER": "2s", "REDIS_TIMEOUT": "1s"}
	f := newFaultRun(t, faultWorkerCutOff, opts)
	cutOff := f.b.StartWorkerWith("REDIS_URL=" + u.String())
	f.b.WaitConsumers(1) // subscribed first: the active consumer
	f.b.StartWorker()
	f.b.WaitConsumers(2)
	f.midStream(networkLoad())
	require.Same(t, cutOff, activeWorker(t, f.b), "the worker behind the proxy appends")
	stall.Stall()
	cut := time.Now()
	t.Logf("%s's Redis link cut (half-open), %d messages accepted", cutOff.Name, len(f.b.SentSoFar()))
	f.load.Wait()
	sent := f.b.SentSoFar()
	harness.WaitUntil(t, 60*time.Second, "every accepted message delivered while the link is cut", func() bool {
		return harness.MissingFrom(sent, harness.Distinct(f.b.Recv.Accepted())) == 0
	})
	t.Logf("all %d accepted messages delivered %s after the cut, the link still cut", len(sent), time.Since(cut).Round(100*time.Millisecond))
	require.NotEmpty(t, f.b.OutputLines(cutOff.Name, "handing the inbound queue over"), "the cut-off worker handed over")
	stall.Resume()
	f.finish()
}
