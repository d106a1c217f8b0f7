package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// Timing every test shares unless its options say otherwise. Windows are
// short so the suite stays fast; LEASE must be at least 3 x CALLBACK_TIMEOUT.
const (
	defaultQuietWindow = 300 * time.Millisecond
	// burstWindow is the QUIET_WINDOW of tests whose messages must form one
	// burst: sequential POSTs stay within it even on a loaded machine.
	burstWindow     = time.Second
	defaultMaxWait  = 10 * time.Second
	pollInterval    = 200 * time.Millisecond
	lease           = 3 * time.Second
	callbackTimeout = time.Second
	// startTimeout bounds how long processes get to become ready.
	startTimeout = 20 * time.Second
	// stopTimeout bounds how long a process gets to exit after SIGTERM.
	stopTimeout = 15 * time.Second
)

// options shape one test's deployment.
type options struct {
	Workers          int  // workers setup starts; 0 means 1
	NoWorkers        bool // start no worker (the test starts them with startWorker)
	QuietWindow      time.Duration
	MaxWait          time.Duration
	MaxBatchMessages int
	Secret           string            // CALLBACK_SECRET; the receiver verifies every signature
	Env              map[string]string // extra variables for every process
	Receiver         receiverOptions
	// Serial keeps the test out of t.Parallel: it changes something every
	// test shares (it restarts the broker), so nothing may run beside it.
	Serial bool
	// Bench keeps process output off the log (benchmarks always print
	// their logs) unless the benchmark fails, and logs at info level.
	Bench bool
	// APIEnv and WorkerEnv add variables for the api or the workers only,
	// over Env (one of them talks through a fault proxy, say).
	APIEnv, WorkerEnv map[string]string
	// AMQPURL is the broker of the test and its processes; default
	// testenv.AMQPURL() (a test with a RabbitMQ node of its own sets it).
	AMQPURL string
}

// bundle is what a test gets from setup: a running api and workers in a
// namespace of their own, a receiver for their batches, and clients.
type bundle struct {
	tb      testing.TB
	ns      string
	opts    options
	addr    string // api listen address, host:port
	api     *proc
	workers []*proc
	recv    *receiver
	redis   rueidis.Client
	broker  *amqp.Connection
	client  *http.Client

	mu     sync.Mutex
	sent   []sentMsg // every 2xx'd message, in the order the answers came
	output []string  // process output, when opts.Bench holds it back
}

// setup starts a deployment for tb and stops and removes it when tb ends.
// Cleanups run in reverse: processes stop (SIGTERM) → receiver closes →
// the namespace's queues are deleted → its Redis keys are deleted.
func setup(tb testing.TB, opts options) *bundle {
	tb.Helper()
	if t, ok := tb.(*testing.T); ok && !opts.Serial {
		t.Parallel()
	}
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.NoWorkers {
		opts.Workers = 0
	}
	if opts.QuietWindow == 0 {
		opts.QuietWindow = defaultQuietWindow
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = defaultMaxWait
	}
	if opts.MaxBatchMessages == 0 {
		opts.MaxBatchMessages = 100
	}
	if opts.AMQPURL == "" {
		opts.AMQPURL = testenv.AMQPURL()
	}
	b := &bundle{tb: tb, ns: testenv.Namespace(tb, "e2e"), opts: opts}
	tb.Logf("namespace %s", b.ns)
	b.redis = testenv.Redis(tb, b.ns)
	testenv.CleanupBroker(tb, b.opts.AMQPURL, b.ns)
	broker, err := amqp.Dial(opts.AMQPURL)
	require.NoError(tb, err, "rabbitmq %s", opts.AMQPURL)
	b.broker = broker
	tb.Cleanup(func() { _ = b.broker.Close() }) // queueState may have redialled it
	b.recv = newReceiver(tb, opts.Secret, opts.Receiver)
	b.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second},
	}
	tb.Cleanup(b.client.CloseIdleConnections)
	if opts.Bench {
		tb.Cleanup(func() {
			if tb.Failed() {
				b.mu.Lock()
				defer b.mu.Unlock()
				tb.Log("process output:\n" + strings.Join(b.output, "\n"))
			}
		})
	}

	b.addr = freeAddr(tb)
	b.api = b.start("api", bins.api)
	for range opts.Workers {
		b.startWorker()
	}
	b.waitReady()
	return b
}

// startWorker starts one more worker (it does not wait for it to consume).
func (b *bundle) startWorker() *proc {
	p := b.start(fmt.Sprintf("worker%d", len(b.workers)+1), bins.worker)
	b.workers = append(b.workers, p)
	return p
}

// waitReady waits for GET /readyz to answer 200 and for every live worker
// to consume the inbound queue.
func (b *bundle) waitReady() {
	b.tb.Helper()
	waitUntil(b.tb, startTimeout, "api /readyz = 200", func() bool {
		resp, err := b.client.Get(b.url("/readyz"))
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	b.waitConsumers(b.liveWorkers())
}

func (b *bundle) liveWorkers() int {
	n := 0
	for _, w := range b.workers {
		if !w.exited() {
			n++
		}
	}
	return n
}

// waitConsumers waits until the inbound queue has exactly n consumers.
func (b *bundle) waitConsumers(n int) {
	b.tb.Helper()
	waitUntil(b.tb, startTimeout, fmt.Sprintf("%d consumer(s) on %s", n, queue.InboundQueue(b.ns)), func() bool {
		_, consumers, err := b.queueState()
		return err == nil && consumers == n
	})
}

// queueState reads the inbound queue's ready message and consumer counts.
// It redials the test's broker connection when a broker restart closed it.
func (b *bundle) queueState() (messages, consumers int, err error) {
	if b.broker.IsClosed() {
		conn, err := amqp.Dial(b.opts.AMQPURL)
		if err != nil {
			return 0, 0, err
		}
		b.broker = conn
	}
	ch, err := b.broker.Channel()
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = ch.Close() }()
	q, err := ch.QueueDeclarePassive(queue.InboundQueue(b.ns), true, false, false, false, nil)
	return q.Messages, q.Consumers, err
}

// environ is the environment of every process: the namespace, the broker
// and Redis, the test's timing, and options.Env on top.
func (b *bundle) environ() []string {
	level := "debug"
	if b.opts.Bench {
		level = "info"
	}
	vars := map[string]string{
		"NAMESPACE":          b.ns,
		"HTTP_ADDR":          b.addr,
		"REDIS_URL":          testenv.RedisURL(),
		"AMQP_URL":           b.opts.AMQPURL,
		"SINKS":              "http",
		"CALLBACK_URL":       b.recv.URL(),
		"QUIET_WINDOW":       b.opts.QuietWindow.String(),
		"MAX_WAIT":           b.opts.MaxWait.String(),
		"MAX_BATCH_MESSAGES": fmt.Sprint(b.opts.MaxBatchMessages),
		"POLL_INTERVAL":      pollInterval.String(),
		"RETRY_BACKOFF_MIN":  "50ms",
		"RETRY_BACKOFF_MAX":  "500ms",
		"LEASE":              lease.String(),
		"CALLBACK_TIMEOUT":   callbackTimeout.String(),
		"SHUTDOWN_TIMEOUT":   "5s",
		"LOG_LEVEL":          level,
	}
	if b.opts.Secret != "" {
		vars["CALLBACK_SECRET"] = b.opts.Secret
	}
	for k, v := range b.opts.Env {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

func (b *bundle) url(path string) string { return "http://" + b.addr + path }

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	addr := l.Addr().String()
	require.NoError(tb, l.Close())
	return addr
}

// waitUntil polls cond every 10ms until it holds; after timeout the test
// fails, saying what it waited for.
func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sentMsg is a message the api answered 2xx, with when it was posted.
type sentMsg struct {
	Key, ID, Text string
	Start, End    time.Time // the POST's start and the answer's arrival
	Timestamped   bool      // it carried a provider timestamp, which orders it instead
}

// post sends a webhook {"unique_id": key, "message": text, ...fields} and
// returns the status. A 2xx'd message is recorded as sent, under the
// message_id the api answered with. Safe to call from any goroutine.
func (b *bundle) post(key, text string, fields map[string]any) int {
	return b.postSince(time.Now(), key, text, fields)
}

// postSince is post for a retry: the message counts as sent from start,
// its first attempt, which the api may have stored without answering.
func (b *bundle) postSince(start time.Time, key, text string, fields map[string]any) int {
	payload := map[string]any{"unique_id": key, "message": text}
	for k, v := range fields {
		payload[k] = v
	}
	body, err := json.Marshal(payload)
	if err != nil {
		b.tb.Errorf("encode payload: %v", err)
		return 0
	}
	status, resp := b.postRaw("application/json", body)
	if status/100 != 2 {
		return status
	}
	var accepted struct {
		UniqueID  string `json:"unique_id"`
		MessageID string `json:"message_id"`
	}
	if err := json.Unmarshal(resp, &accepted); err != nil || accepted.MessageID == "" || accepted.UniqueID != key {
		b.tb.Errorf("POST /webhook %d: answer %s does not name the message (%v)", status, resp, err)
	}
	b.mu.Lock()
	_, timestamped := fields["timestamp"]
	b.sent = append(b.sent, sentMsg{Key: key, ID: accepted.MessageID, Text: text, Start: start, End: time.Now(), Timestamped: timestamped})
	b.mu.Unlock()
	return status
}

// send posts a message and fails the test (without stopping it, so it is
// safe in goroutines) unless the api answers 202.
func (b *bundle) send(key, text string) {
	if status := b.post(key, text, nil); status != http.StatusAccepted {
		b.tb.Errorf("POST /webhook %s %q: status %d, want 202", key, text, status)
	}
}

// postRaw POSTs body to /webhook with contentType and returns the status
// and answer (status 0 and the error when the request failed).
func (b *bundle) postRaw(contentType string, body []byte) (int, []byte) {
	resp, err := b.client.Post(b.url("/webhook"), contentType, bytes.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, answer
}

// sentSoFar is a copy of the messages sent so far.
func (b *bundle) sentSoFar() []sentMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]sentMsg(nil), b.sent...)
}
