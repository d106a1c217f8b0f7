package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
)

// TestConfig_BadValueStopsTheProcess: a process that cannot start exits
// non-zero at once, naming the variable, without printing its secret.
func TestConfig_BadValueStopsTheProcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, variable, value string
	}{
		{"redis database", "REDIS_URL", "redis://default:hunter2@127.0.0.1:6379/abc"},
		{"redis port", "REDIS_URL", "redis://127.0.0.1:99999/0"},
		{"amqp password with #", "AMQP_URL", "amqp://guest:hunter2#PW@127.0.0.1/"},
		{"empty namespace", "NAMESPACE", ""},
	}
	for _, tt := range tests {
		for _, bin := range []struct{ name, path string }{{"api", harness.APIBinary()}, {"worker", harness.WorkerBinary()}} {
			t.Run(tt.name+"/"+bin.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin.path)
				cmd.Env = append(os.Environ(), "HTTP_ADDR=127.0.0.1:0", tt.variable+"="+tt.value)
				out, err := cmd.CombinedOutput()
				require.NoError(t, ctx.Err(), "%s kept running with %s=%s:\n%s", bin.name, tt.variable, tt.value, out)
				var exit *exec.ExitError
				require.ErrorAs(t, err, &exit, "%s exited 0 with %s=%s:\n%s", bin.name, tt.variable, tt.value, out)
				require.NotZero(t, exit.ExitCode())
				require.Contains(t, string(out), tt.variable)
				require.NotContains(t, string(out), "hunter2")
			})
		}
	}
}

func TestSIGTERM_WorkerExitsPromptly(t *testing.T) {
	b := harness.Setup(t, harness.Options{})
	const key = "5511999990013"
	b.Send(key, harness.MsgText(key, 0))
	b.WaitDelivered(10 * time.Second) // the worker has worked, and is idle again

	const prompt = 5 * time.Second
	for _, p := range []*harness.Proc{b.Workers[0], b.API} {
		code, took, err := p.Terminate(harness.StopTimeout)
		require.NoError(t, err)
		assert.Equal(t, 0, code, "%s exit status after SIGTERM", p.Name)
		assert.Less(t, took, prompt, "%s took too long to exit", p.Name)
		t.Logf("%s exited %d, %s after SIGTERM", p.Name, code, took.Round(time.Millisecond))
	}
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
}

// A client that opened a connection and has not sent a request yet (a
// pre-connecting proxy, Go's transport after a dial race) must not hold up
// the api's shutdown (Fiber's own Shutdown would wait for it until
// ReadTimeout; httpapi.Server.Drain waits only for requests under way).
func TestSIGTERM_APIExitsPromptlyWithASilentConnection(t *testing.T) {
	b := harness.Setup(t, harness.Options{})
	conn, err := net.Dial("tcp", b.Addr) // connects, sends nothing
	require.NoError(t, err)
	defer conn.Close()
	time.Sleep(100 * time.Millisecond) // let the api accept it

	code, took, err := b.API.Terminate(harness.StopTimeout)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Less(t, took, 2*time.Second, "api shutdown waited for a connection that never sent a request")
}

func TestWorkerCrashesAndRestarts_LoseNothing(t *testing.T) {
	// Short windows: batches are flushed and in flight when the workers go.
	b := harness.Setup(t, harness.Options{QuietWindow: 200 * time.Millisecond, MaxWait: 400 * time.Millisecond})
	stop := make(chan struct{})
	wait := b.Stream(harness.Keys("user-%02d", 20), 8, 5*time.Millisecond, stop)

	time.Sleep(700 * time.Millisecond) // messages flowing, batches in flight
	b.Workers[0].Kill()
	b.StartWorker()
	time.Sleep(700 * time.Millisecond)
	code, _, err := b.Workers[1].Terminate(harness.StopTimeout)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "worker2 exit status after SIGTERM")
	b.StartWorker()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	assert.Zero(t, wait(), "the api refused messages while only workers restarted")

	sent := b.SentSoFar()
	b.WaitDelivered(harness.Lease + 15*time.Second)
	b.RequireQuiet()
	harness.AssertExactlyOnce(t, sent, b.Recv.Accepted())
	t.Logf("%d messages, %d deliveries, %d distinct batches", len(sent), len(b.Recv.Accepted()), len(harness.Distinct(b.Recv.Accepted())))
}

func TestAPIRestart_EveryAcceptedMessageDelivered(t *testing.T) {
	b := harness.Setup(t, harness.Options{})
	stop := make(chan struct{})
	wait := b.Stream(harness.Keys("user-%02d", 20), 8, 5*time.Millisecond, stop)

	time.Sleep(500 * time.Millisecond)
	code, took, err := b.API.Terminate(harness.StopTimeout) // SIGTERM with requests under way
	require.NoError(t, err)
	assert.Equal(t, 0, code, "api exit status after SIGTERM")
	t.Logf("api exited in %s", took.Round(time.Millisecond))
	b.StartAPI("api2")
	b.WaitReady()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	retries := wait()

	sent := b.SentSoFar()
	b.WaitDelivered(15 * time.Second)
	b.RequireQuiet()
	harness.AssertExactlyOnce(t, sent, b.Recv.Accepted())
	t.Logf("%d messages accepted, %d POSTs retried while the api restarted", len(sent), retries)
	if resp, err := b.Client.Get(b.URL("/healthz")); assert.NoError(t, err) {
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
}
