//go:build faults

package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/testenv"
)

// A RabbitMQ memory alarm: the broker blocks every publishing connection
// (connection.blocked) and stops reading from it, so no confirm comes. It
// runs against a RabbitMQ node of the test's own, never the shared one.
// For 3 s every POST must be a 503 with Retry-After within PUBLISH_TIMEOUT,
// never a 202; /readyz must answer promptly and say not ready once the
// broker blocks; when the alarm clears, the api accepts again and /readyz
// is 200 within recoveryBound.
func testFaultMemoryAlarm(t *testing.T) {
	url, node := testenv.StartRabbitNode(t) // before setup: stopped after the processes
	opts := faultOptions()
	opts.AMQPURL = url
	opts.Env["PUBLISH_TIMEOUT"] = publishTimeout.String()
	f := newFaultRun(t, faultMemoryAlarm, opts)
	posts := recordPosts(f.b)
	f.midStream(networkLoad())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	asked := time.Now()
	require.NoError(t, node.Alarm(ctx), "raise the memory alarm")
	// The alarm is in force once a publisher of the test's own is told so.
	blocked := node.WaitBlocked(t)
	t.Logf("memory alarm raised (%s after asking), %d messages accepted", blocked.Sub(asked).Round(time.Millisecond), len(f.b.SentSoFar()))

	notReady := 0
	for time.Since(blocked) < 3*time.Second {
		status, took := f.b.Readyz()
		assert.LessOrEqual(t, took, 2*time.Second, "/readyz took %s while the broker blocked publishers", took)
		if status != http.StatusOK {
			notReady++
		}
		time.Sleep(200 * time.Millisecond)
	}
	assert.Positive(t, notReady, "/readyz said ready all through the memory alarm")
	cleared := time.Now()
	require.NoError(t, node.ClearAlarm(ctx), "clear the memory alarm")
	t.Logf("alarm cleared; POSTs while blocked, by status: %s", posts.statusSummary(blocked, cleared))

	harness.WaitUntil(t, recoveryBound, "/readyz = 200 after the alarm cleared", func() bool {
		status, _ := f.b.Readyz()
		return status == http.StatusOK
	})
	f.finish()
	t.Logf("%s; /readyz not ready %d times", posts.assertRefusedThenAccepted(t, blocked, cleared, "the alarm cleared"), notReady)
	f.b.LogProblems("api")
}
