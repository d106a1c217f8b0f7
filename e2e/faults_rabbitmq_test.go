//go:build faults

package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/lullhq/lull/e2e/harness"
)

// rabbitmqctl runs `rabbitmqctl args...` and logs what it printed.
func rabbitmqctl(t *testing.T, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := rabbitmqctlCommand(ctx, args...).CombinedOutput()
	t.Logf("rabbitmqctl %s (%s): %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	return err
}

// rabbitmqctlCommand is `rabbitmqctl args...` ($LULL_RABBITMQCTL replaces
// the command, e.g. "docker compose exec -T rabbitmq rabbitmqctl").
func rabbitmqctlCommand(ctx context.Context, args ...string) *exec.Cmd {
	command := strings.Fields(os.Getenv("LULL_RABBITMQCTL"))
	if len(command) == 0 {
		command = []string{"rabbitmqctl"}
	}
	return exec.CommandContext(ctx, command[0], append(command[1:], args...)...)
}

// TestFault_RabbitMQRestart stops the broker's application mid-stream and
// starts it again. It stops the RabbitMQ every test shares, so it never runs
// beside another test: it stays out of t.Parallel, and it runs only when
// LULL_FAULTS_BROKER_RESTART=1 (`task e2e:faults:rabbitmq` sets it, after
// every other test finished).
func TestFault_RabbitMQRestart(t *testing.T) {
	if os.Getenv("LULL_FAULTS_BROKER_RESTART") != "1" {
		t.Skip("stops the shared RabbitMQ: run alone with `task e2e:faults:rabbitmq` (LULL_FAULTS_BROKER_RESTART=1)")
	}
	reportTable(t)
	opts := faultOptions()
	opts.Serial = true
	f := newFaultRun(t, faultRabbitMQ, opts)
	// Registered after setup, so it runs before the processes are stopped
	// and the queues purged; it runs whatever happened to the test.
	t.Cleanup(func() {
		if err := rabbitmqctl(t, "start_app"); err != nil {
			t.Errorf("rabbitmqctl start_app in cleanup: %v", err)
		}
		if err := rabbitmqctl(t, "await_startup"); err != nil {
			t.Errorf("rabbitmqctl await_startup in cleanup: %v", err)
		}
	})
	f.midStream(harness.LoadSpec{})
	if err := rabbitmqctl(t, "stop_app"); err != nil {
		t.Fatalf("rabbitmqctl stop_app: %v", err)
	}
	stopped := time.Now()
	t.Logf("broker stopped, %d messages accepted", len(f.b.SentSoFar()))
	time.Sleep(3 * time.Second) // stays down a while: the api answers 503
	if err := rabbitmqctl(t, "start_app"); err != nil {
		t.Fatalf("rabbitmqctl start_app: %v", err)
	}
	t.Logf("broker back %s after stop_app", time.Since(stopped).Round(time.Millisecond))
	f.b.WaitReady() // api ready, and the worker consumes again
	f.finish()
	assert.Positive(t, f.load.Refusals(http.StatusServiceUnavailable), "the api answered no 503 while the broker was down")
}
