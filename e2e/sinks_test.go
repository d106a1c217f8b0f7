package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/testenv"
)

func TestAMQPSink_BurstReachesBatchQueue(t *testing.T) {
	var ns string // known once setup ran
	testenv.CleanupBrokerEntities(t, testenv.AMQPURL(), harness.Named(&ns, ".batches"), harness.Named(&ns, ".batches"))
	// BATCH_EXCHANGE and BATCH_QUEUE keep their defaults: <ns>.batches.
	b := harness.Setup(t, harness.Options{Env: map[string]string{"SINKS": "amqp"}})
	ns = b.NS
	deliveries := b.Consume(b.NS + ".batches")

	const key = "5511999990101"
	for i := range 4 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // typing: well inside QUIET_WINDOW
		}
		require.Equal(t, http.StatusAccepted, b.Post(key, harness.MsgText(key, i), nil))
	}
	sent := b.SentSoFar()

	d, got := harness.NextBatch(t, deliveries, 10*time.Second)
	bt := got.Batch
	assert.Equal(t, bt.BatchID, d.MessageId, "message_id = batch_id")
	assert.Equal(t, "application/json", d.ContentType)
	assert.Equal(t, uint8(amqp.Persistent), d.DeliveryMode)
	assert.Equal(t, b.NS+".batches", d.Exchange)
	assert.Equal(t, bt.BatchID, d.Headers[sink.AMQPHeaderBatchID])
	assert.Equal(t, key, d.Headers[sink.AMQPHeaderKey])
	assert.EqualValues(t, 1, d.Headers[sink.AMQPHeaderAttempt])
	assert.Equal(t, harness.SentTexts(sent), harness.Texts(bt), "the whole burst, in send order")
	harness.AssertExactlyOnce(t, sent, []harness.Received{got})
	require.Len(t, b.Recv.All(), 0, "SINKS=amqp posts nothing")
}

func TestAMQPSink_NoQueueBoundRetriesUntilOneIs(t *testing.T) {
	var ns string // known once setup ran
	testenv.CleanupBrokerEntities(t, testenv.AMQPURL(), harness.Named(&ns, ".bot"), harness.Named(&ns, ".batches"))
	b := harness.Setup(t, harness.Options{Env: map[string]string{
		"SINKS":        "amqp",
		"BATCH_QUEUE":  "-", // lull declares the exchange only
		"MAX_ATTEMPTS": "1000",
	}})
	ns = b.NS

	const key = "5511999990102"
	b.SendN(key, 2)
	sent := b.SentSoFar()
	// The batch flushes one quiet window later and finds no queue: its
	// deliveries fail and are retried. (Waiting out the time is the point.)
	time.Sleep(b.Opts.QuietWindow + time.Second)

	// A bot binds its queue; the next retry delivers the same batch.
	ch := b.Channel()
	_, err := ch.QueueDeclare(b.NS+".bot", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(b.NS+".bot", "", b.NS+".batches", false, nil))
	d, got := harness.NextBatch(t, b.Consume(b.NS+".bot"), 10*time.Second)
	bt := got.Batch

	assert.Greater(t, bt.Attempt, 1, "earlier attempts failed: unroutable is an error, not a silent success")
	assert.EqualValues(t, bt.Attempt, d.Headers[sink.AMQPHeaderAttempt])
	assert.Equal(t, harness.SentTexts(sent), harness.Texts(bt))
	harness.AssertExactlyOnce(t, sent, []harness.Received{got})
}

// celeryPython is Debian's Python, where `apt-get install python3-celery`
// puts Celery (a pyenv or venv python3 on PATH does not have it).
const celeryPython = "/usr/bin/python3"

// requireCelery skips the test when Celery is not installed, except on CI
// (CI=true), where .ci/run installs it and a skip would hide the proof.
func requireCelery(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(celeryPython, "-c", "import celery").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Celery is not installed for %s, and CI must run this test: %v %s", celeryPython, err, out)
		}
		t.Skipf("Celery is not installed for %s (apt-get install -y python3-celery): %v %s", celeryPython, err, out)
	}
}

// celeryTask is one line the example app writes to LULL_BATCHES_FILE.
type celeryTask struct {
	TaskID string      `json:"task_id"`
	Batch  batch.Batch `json:"batch"`
}

// startCelery runs examples/celery_worker (tasks.py) as a real Celery
// worker consuming celeryQueue, writing each task's batch to file; it waits until
// the worker consumes and stops it (warm shutdown) when the test ends.
func startCelery(b *harness.Deployment, celeryQueue, file string) {
	b.TB.Helper()
	root, err := harness.ModuleRoot()
	require.NoError(b.TB, err)
	example := filepath.Join(root, "examples", "celery_worker")
	// The example app as it is, with remote control off: the broker is
	// shared, and remote control would leave a celery.pidbox exchange.
	dir := b.TB.TempDir()
	require.NoError(b.TB, os.WriteFile(filepath.Join(dir, "lull_e2e_app.py"), []byte(
		"from tasks import app  # examples/celery_worker/tasks.py\n"+
			"app.conf.worker_enable_remote_control = False\n"), 0o644))
	cmd := exec.Command(celeryPython, "-m", "celery", "-A", "lull_e2e_app", "worker",
		"--pool=solo", "-Q", celeryQueue, "-n", celeryQueue+"@%h",
		"--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info")
	cmd.Dir = dir
	cmd.Env = append(cleanPythonEnv(),
		"PYTHONPATH="+example,
		"AMQP_URL="+testenv.AMQPURL(),
		"CELERY_TASK="+config.Defaults().CeleryTask,
		"LULL_BATCHES_FILE="+file,
		"PYTHONUNBUFFERED=1",
		"PYTHONDONTWRITEBYTECODE=1", // no __pycache__ in examples/
	)
	p := harness.StartProc(b.TB, "celery worker", cmd, b.ProcessLog("celery"))
	b.TB.Cleanup(func() {
		if p.Exited() {
			b.TB.Errorf("celery worker exited during the test: %s", p.State())
			return
		}
		if _, _, err := p.Terminate(harness.StopTimeout); err != nil {
			b.TB.Error(err)
		}
	})
	b.WaitQueue(celeryQueue, "a celery worker consuming", func(q amqp.Queue) bool { return q.Consumers == 1 })
}

// cleanPythonEnv is this process's environment without what would point
// Debian's Python at another installation's modules.
func cleanPythonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PYTHONPATH=") || strings.HasPrefix(kv, "PYTHONHOME=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// readTasks returns the tasks the Celery worker wrote so far.
func readTasks(t *testing.T, file string) []celeryTask {
	t.Helper()
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var tasks []celeryTask
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var task celeryTask
		require.NoError(t, json.Unmarshal(sc.Bytes(), &task), "task line %s", sc.Bytes())
		tasks = append(tasks, task)
	}
	require.NoError(t, sc.Err())
	return tasks
}

func TestCelerySink_RealCeleryWorkerGetsTheWholeBatch(t *testing.T) {
	requireCelery(t)
	// The Celery queue, and the direct exchange of that name the Celery
	// worker declares, are the test's own; removed after every process
	// stopped.
	celeryQueue := testenv.Namespace(t, "celery")
	only := func() []string { return []string{celeryQueue} }
	testenv.CleanupBrokerEntities(t, testenv.AMQPURL(), only, only)
	b := harness.Setup(t, harness.Options{Env: map[string]string{"SINKS": "celery", "CELERY_QUEUE": celeryQueue}})
	file := filepath.Join(t.TempDir(), "batches.jsonl")
	startCelery(b, celeryQueue, file)

	const key = "5511999990201"
	for i := range 5 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // typing: well inside QUIET_WINDOW
		}
		fields := map[string]any{}
		if i == 3 {
			fields["metadata"] = map[string]any{"push_name": "Ana"}
		}
		require.Equal(t, http.StatusAccepted, b.Post(key, harness.MsgText(key, i), fields))
	}
	sent := b.SentSoFar()

	var tasks []celeryTask
	harness.WaitUntil(t, 20*time.Second, "the Celery task to run", func() bool {
		tasks = readTasks(t, file)
		return len(tasks) > 0
	})
	// No second task for the same burst. (Waiting it out is the point.)
	time.Sleep(b.Opts.QuietWindow + 2*harness.PollInterval)
	tasks = readTasks(t, file)
	require.Len(t, tasks, 1, "one burst, one task")

	task := tasks[0]
	bt := task.Batch
	assert.Equal(t, batch.ID(key, bt.Generation), bt.BatchID)
	assert.Equal(t, key, bt.Key)
	assert.Equal(t, batch.ReasonQuiet, bt.Reason)
	assert.Equal(t, 1, bt.Attempt)
	assert.Equal(t, harness.SentTexts(sent), harness.Texts(bt), "all five, in send order")
	assert.JSONEq(t, `{"push_name":"Ana"}`, string(bt.Messages[3].Metadata))
	assert.Equal(t, sink.CeleryTaskID(b.NS, bt.BatchID), task.TaskID, "task id derived from the batch id")
	harness.AssertExactlyOnce(t, sent, []harness.Received{harness.BatchOf(bt)})
	require.Len(t, b.Recv.All(), 0, "SINKS=celery posts nothing")
}
