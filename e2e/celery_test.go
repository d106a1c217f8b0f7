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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/testenv"
)

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
func (b *bundle) startCelery(celeryQueue, file string) {
	b.tb.Helper()
	example, err := filepath.Abs(filepath.Join("..", "examples", "celery_worker"))
	require.NoError(b.tb, err)
	// The example app as it is, with remote control off: the broker is
	// shared, and remote control would leave a celery.pidbox exchange.
	dir := b.tb.TempDir()
	require.NoError(b.tb, os.WriteFile(filepath.Join(dir, "lull_e2e_app.py"), []byte(
		"from tasks import app  # examples/celery_worker/tasks.py\n"+
			"app.conf.worker_enable_remote_control = False\n"), 0o644))
	cmd := exec.Command(celeryPython, "-m", "celery", "-A", "lull_e2e_app", "worker",
		"--pool=solo", "-Q", celeryQueue, "-n", celeryQueue+"@%h",
		"--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info")
	cmd.Dir = dir
	cmd.Env = append(cleanPythonEnv(),
		"PYTHONPATH="+example,
		"AMQP_URL="+testenv.AMQPURL(),
		"CELERY_TASK="+sink.DefaultCeleryTask,
		"LULL_BATCHES_FILE="+file,
		"PYTHONUNBUFFERED=1",
		"PYTHONDONTWRITEBYTECODE=1", // no __pycache__ in examples/
	)
	out := &lineWriter{emit: func(line string) { b.logProcess("celery", line) }}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	require.NoError(b.tb, cmd.Start(), "start celery worker")
	p := &proc{name: "celery", cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		out.flush()
		close(p.done)
	}()
	b.tb.Cleanup(func() {
		if p.exited() {
			b.tb.Errorf("celery worker exited during the test: %s", cmd.ProcessState)
			return
		}
		if _, _, err := p.terminate(stopTimeout); err != nil {
			b.tb.Error(err)
		}
	})
	waitUntil(b.tb, startTimeout, "a celery worker consuming "+celeryQueue, func() bool {
		ch, err := b.broker.Channel()
		if err != nil {
			return false
		}
		defer func() { _ = ch.Close() }()
		q, err := ch.QueueDeclarePassive(celeryQueue, true, false, false, false, nil)
		return err == nil && q.Consumers == 1
	})
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
	removeBrokerEntities(t, func() []string { return []string{celeryQueue} }, func() []string { return []string{celeryQueue} })
	b := setup(t, options{Env: map[string]string{"SINKS": "celery", "CELERY_QUEUE": celeryQueue}})
	file := filepath.Join(t.TempDir(), "batches.jsonl")
	b.startCelery(celeryQueue, file)

	const key = "5511999990201"
	for i := range 5 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // typing: well inside QUIET_WINDOW
		}
		fields := map[string]any{}
		if i == 3 {
			fields["metadata"] = map[string]any{"push_name": "Ana"}
		}
		require.Equal(t, http.StatusAccepted, b.post(key, msgText(key, i), fields))
	}
	sent := b.sentSoFar()

	var tasks []celeryTask
	waitUntil(t, 20*time.Second, "the Celery task to run", func() bool {
		tasks = readTasks(t, file)
		return len(tasks) > 0
	})
	// No second task for the same burst. (Waiting it out is the point.)
	time.Sleep(b.opts.QuietWindow + 2*pollInterval)
	tasks = readTasks(t, file)
	require.Len(t, tasks, 1, "one burst, one task")

	task := tasks[0]
	bt := task.Batch
	assert.Equal(t, batch.ID(key, bt.Generation), bt.BatchID)
	assert.Equal(t, key, bt.Key)
	assert.Equal(t, batch.ReasonQuiet, bt.Reason)
	assert.Equal(t, 1, bt.Attempt)
	assert.Equal(t, sentTexts(sent), texts(bt), "all five, in send order")
	assert.JSONEq(t, `{"push_name":"Ana"}`, string(bt.Messages[3].Metadata))
	assert.Equal(t, sink.CeleryTaskID(b.ns, bt.BatchID), task.TaskID, "task id derived from the batch id")
	assertExactlyOnce(t, sent, []delivery{{Batch: bt, Status: http.StatusOK}})
	require.Len(t, b.recv.all(), 0, "SINKS=celery posts nothing")
}
