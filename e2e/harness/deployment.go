package harness

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
	DefaultQuietWindow = 300 * time.Millisecond
	// BurstWindow is the QUIET_WINDOW of tests whose messages must form one
	// burst: sequential POSTs stay within it even on a loaded machine.
	BurstWindow    = time.Second
	DefaultMaxWait = 10 * time.Second
	// PollInterval is the processes' POLL_INTERVAL.
	PollInterval = 200 * time.Millisecond
	// Lease is the processes' LEASE.
	Lease = 3 * time.Second
	// CallbackTimeout is the processes' CALLBACK_TIMEOUT.
	CallbackTimeout = time.Second
	// StartTimeout bounds how long processes get to become ready.
	StartTimeout = 20 * time.Second
	// StopTimeout bounds how long a process gets to exit after SIGTERM.
	StopTimeout = 15 * time.Second
)

// Options shape one test's deployment.
type Options struct {
	Workers          int  // workers Setup starts; 0 means 1
	NoWorkers        bool // start no worker (the test starts them with StartWorker)
	QuietWindow      time.Duration
	MaxWait          time.Duration
	MaxBatchMessages int
	Secret           string            // CALLBACK_SECRET; the receiver verifies every signature
	Env              map[string]string // extra variables for every process
	Receiver         ReceiverOptions
	// Serial keeps the test out of t.Parallel: it changes something every
	// test shares (it restarts the broker), so nothing may run beside it.
	Serial bool
	// Bench keeps process output off the log (benchmarks always print
	// their logs) unless the test fails, and logs at info level. The
	// output stays readable with OutputLines.
	Bench bool
	// APIEnv and WorkerEnv add variables for the api or the workers only,
	// over Env (one of them talks through a fault proxy, say).
	APIEnv, WorkerEnv map[string]string
	// AMQPURL is the broker of the test and its processes; default
	// testenv.AMQPURL() (a test with a RabbitMQ node of its own sets it).
	// A comma-separated list (a cluster's nodes) is passed on as it is;
	// the test's own connection takes the first node that answers.
	AMQPURL string
	// RedisURL is the Redis of the processes and of Deployment.Redis;
	// default testenv.RedisURL() (a cluster test sets its cluster's).
	RedisURL string
	// APIs is how many api processes Setup starts, each on an address of
	// its own (Addrs); requests go to them in turn. 0 means 1.
	APIs int
}

// Deployment is what a test gets from Setup: a running api and workers in a
// namespace of their own, a receiver for their batches, and clients.
type Deployment struct {
	TB      testing.TB
	NS      string  // the namespace (NAMESPACE) of the processes
	Opts    Options // the options, defaults filled in
	Addr    string  // api listen address, host:port
	API     *Proc
	Workers []*Proc
	Recv    *Receiver
	Redis   rueidis.Client // the shared Redis; the namespace's keys go when the test ends
	Client  *http.Client   // the test's client of the api

	// Addrs and APIProcs are every api's address and process (Addr and
	// API are the first); URL turns from one to the next.
	Addrs    []string
	APIProcs []*Proc
	next     atomic.Uint64

	broker *amqp.Connection // see Broker

	mu     sync.Mutex
	sent   []Sent   // every 2xx'd message, in the order the answers came
	output []string // process output, when Opts.Bench holds it back
}

// Setup starts a deployment for tb and stops and removes it when tb ends.
// A *testing.T runs in parallel unless opts.Serial. Cleanups run in
// reverse: processes stop (SIGTERM) → receiver closes → the namespace's
// queues are deleted → its Redis keys are deleted.
func Setup(tb testing.TB, opts Options) *Deployment {
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
		opts.QuietWindow = DefaultQuietWindow
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.MaxBatchMessages == 0 {
		opts.MaxBatchMessages = 100
	}
	if opts.AMQPURL == "" {
		opts.AMQPURL = testenv.AMQPURL()
	}
	if opts.RedisURL == "" {
		opts.RedisURL = testenv.RedisURL()
	}
	if opts.APIs == 0 {
		opts.APIs = 1
	}
	d := &Deployment{TB: tb, NS: testenv.Namespace(tb, "e2e"), Opts: opts}
	tb.Logf("namespace %s", d.NS)
	d.Redis = testenv.RedisAt(tb, opts.RedisURL, d.NS)
	testenv.CleanupBroker(tb, d.Opts.AMQPURL, d.NS)
	broker, err := testenv.DialAMQP(opts.AMQPURL)
	require.NoError(tb, err, "rabbitmq %s", opts.AMQPURL)
	d.broker = broker
	tb.Cleanup(func() { _ = d.broker.Close() }) // Broker may have redialled it
	d.Recv = NewReceiver(tb, opts.Secret, opts.Receiver)
	d.Client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second},
	}
	tb.Cleanup(d.Client.CloseIdleConnections)
	if opts.Bench {
		tb.Cleanup(func() {
			if tb.Failed() {
				d.mu.Lock()
				defer d.mu.Unlock()
				tb.Log("process output:\n" + strings.Join(d.output, "\n"))
			}
		})
	}

	d.Addr = testenv.FreeAddr(tb)
	d.API = d.start("api", bins.api)
	d.Addrs, d.APIProcs = []string{d.Addr}, []*Proc{d.API}
	for i := 2; i <= opts.APIs; i++ {
		addr := testenv.FreeAddr(tb)
		d.Addrs = append(d.Addrs, addr)
		d.APIProcs = append(d.APIProcs, d.startWith(fmt.Sprintf("api%d", i), bins.api, "HTTP_ADDR="+addr))
	}
	for range opts.Workers {
		d.StartWorker()
	}
	d.WaitReady()
	return d
}

// StartWorker starts one more worker (it does not wait for it to consume).
func (d *Deployment) StartWorker() *Proc { return d.StartWorkerWith() }

// StartWorkerWith is StartWorker with the variables env (NAME=value) over
// the deployment's.
func (d *Deployment) StartWorkerWith(env ...string) *Proc {
	p := d.startWith(fmt.Sprintf("worker%d", len(d.Workers)+1), bins.worker, env...)
	d.Workers = append(d.Workers, p)
	return p
}

// StartAPI starts another api, named name in the log, on the deployment's
// address and makes it d.API; the one before must have exited. It does not
// wait for it to be ready (WaitReady does).
func (d *Deployment) StartAPI(name string) *Proc {
	d.API = d.start(name, bins.api)
	return d.API
}

// WaitReady waits for GET /readyz to answer 200 and for every live worker
// to consume the inbound queue.
func (d *Deployment) WaitReady() {
	d.TB.Helper()
	for _, addr := range d.apiAddrs() {
		WaitUntil(d.TB, StartTimeout, "api "+addr+" /readyz = 200", func() bool {
			status, _ := d.getAt(d.Client, addr, "/readyz")
			return status == http.StatusOK
		})
	}
	d.WaitConsumers(d.liveWorkers())
}

// Readyz asks GET /readyz, with a client of its own bounded to 5s, and
// returns the status (0: no answer) and how long the answer took.
func (d *Deployment) Readyz() (int, time.Duration) {
	start := time.Now()
	status, _ := d.get(&http.Client{Timeout: 5 * time.Second}, "/readyz")
	return status, time.Since(start)
}

// get GETs path with client and returns the status (0 and the error when
// the request failed).
func (d *Deployment) get(client *http.Client, path string) (int, error) {
	return d.getAt(client, d.Addr, path)
}

// getAt is get from the api at addr.
func (d *Deployment) getAt(client *http.Client, addr, path string) (int, error) {
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func (d *Deployment) liveWorkers() int {
	n := 0
	for _, w := range d.Workers {
		if !w.Exited() {
			n++
		}
	}
	return n
}

// WaitConsumers waits until n workers are subscribed to the inbound queue
// (their logs say so) and, n > 0, the queue has its one active consumer
// (the inbound queue has a single active consumer: the broker counts only
// that one).
func (d *Deployment) WaitConsumers(n int) {
	d.TB.Helper()
	WaitUntil(d.TB, StartTimeout, fmt.Sprintf("%d worker(s) subscribed", n), func() bool {
		subscribed := 0
		for _, w := range d.Workers {
			if w.Subscribed() {
				subscribed++
			}
		}
		return subscribed == n
	})
	d.WaitQueue(queue.InboundQueue(d.NS), fmt.Sprintf("%d active consumer(s)", min(n, 1)), func(q amqp.Queue) bool {
		return q.Consumers == min(n, 1)
	})
}

// WaitQueue waits up to StartTimeout until queue name exists and cond
// holds for it; what says what the test waits for.
func (d *Deployment) WaitQueue(name, what string, cond func(amqp.Queue) bool) {
	d.TB.Helper()
	WaitUntil(d.TB, StartTimeout, what+" on "+name, func() bool {
		q, err := d.QueueInfo(name)
		return err == nil && cond(q)
	})
}

// QueueState reads the inbound queue's ready message and consumer counts.
func (d *Deployment) QueueState() (messages, consumers int, err error) {
	q, err := d.QueueInfo(queue.InboundQueue(d.NS))
	return q.Messages, q.Consumers, err
}

// QueueInfo declares queue name passively, on a channel of its own, and
// returns what the broker says of it.
func (d *Deployment) QueueInfo(name string) (amqp.Queue, error) {
	conn, err := d.Broker()
	if err != nil {
		return amqp.Queue{}, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return amqp.Queue{}, err
	}
	defer func() { _ = ch.Close() }()
	return ch.QueueDeclarePassive(name, true, false, false, false, nil)
}

// Broker is the test's own connection to the deployment's broker. It
// redials when a broker restart closed it.
func (d *Deployment) Broker() (*amqp.Connection, error) {
	if d.broker.IsClosed() {
		conn, err := testenv.DialAMQP(d.Opts.AMQPURL)
		if err != nil {
			return nil, err
		}
		d.broker = conn
	}
	return d.broker, nil
}

// Channel opens a channel on Broker, failing the test if it cannot; it
// is closed when the test ends.
func (d *Deployment) Channel() *amqp.Channel {
	d.TB.Helper()
	conn, err := d.Broker()
	require.NoError(d.TB, err)
	ch, err := conn.Channel()
	require.NoError(d.TB, err)
	d.TB.Cleanup(func() { _ = ch.Close() })
	return ch
}

// Environ is the environment of every process: the namespace, the broker
// and Redis, the test's timing, and Options.Env on top.
func (d *Deployment) Environ() []string {
	level := "debug"
	if d.Opts.Bench {
		level = "info"
	}
	vars := map[string]string{
		"NAMESPACE":          d.NS,
		"HTTP_ADDR":          d.Addr,
		"REDIS_URL":          d.Opts.RedisURL,
		"AMQP_URL":           d.Opts.AMQPURL,
		"SINKS":              "http",
		"CALLBACK_URL":       d.Recv.URL(),
		"QUIET_WINDOW":       d.Opts.QuietWindow.String(),
		"MAX_WAIT":           d.Opts.MaxWait.String(),
		"MAX_BATCH_MESSAGES": fmt.Sprint(d.Opts.MaxBatchMessages),
		"POLL_INTERVAL":      PollInterval.String(),
		"RETRY_BACKOFF_MIN":  "50ms",
		"RETRY_BACKOFF_MAX":  "500ms",
		"LEASE":              Lease.String(),
		"CALLBACK_TIMEOUT":   CallbackTimeout.String(),
		"SHUTDOWN_TIMEOUT":   "5s",
		"LOG_LEVEL":          level,
		// Off: many deployments run at once, and the defaults are fixed
		// ports. A test that scrapes sets its own (Env, APIEnv, WorkerEnv).
		"METRICS_ADDR": "off",
	}
	if d.Opts.Secret != "" {
		vars["CALLBACK_SECRET"] = d.Opts.Secret
	}
	for k, v := range d.Opts.Env {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// URL is the api's URL for path; with several apis (Options.APIs), each
// call names the next one.
func (d *Deployment) URL(path string) string {
	addrs := d.apiAddrs()
	return "http://" + addrs[d.next.Add(1)%uint64(len(addrs))] + path
}

// apiAddrs is every api's address: Addrs, or Addr alone.
func (d *Deployment) apiAddrs() []string {
	if len(d.Addrs) == 0 {
		return []string{d.Addr}
	}
	return d.Addrs
}

// WaitUntil polls cond every 10ms until it holds; after timeout the test
// fails, saying what it waited for.
func WaitUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
