//go:build faults

package e2e

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	f.load = f.b.startLoad(networkLoad())
	f.b.waitAccepted(f.load, 0.35)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	asked := time.Now()
	require.NoError(t, node.Alarm(ctx), "raise the memory alarm")
	// The alarm is in force once a publisher of the test's own is told so.
	blocked := waitBlocked(t, url)
	t.Logf("memory alarm raised (%s after asking), %d messages accepted", blocked.Sub(asked).Round(time.Millisecond), len(f.b.sentSoFar()))

	notReady := 0
	for time.Since(blocked) < 3*time.Second {
		status, took := f.b.readyz()
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

	waitUntil(t, recoveryBound, "/readyz = 200 after the alarm cleared", func() bool {
		status, _ := f.b.readyz()
		return status == http.StatusOK
	})
	f.finish()
	limit := publishTimeout + answerMargin
	n := posts.assertRefusedWhileCut(t, blocked, cleared, limit)
	slowest := posts.assertPrompt(t, limit)
	took, ok := posts.recoveredAfter(cleared)
	if assert.True(t, ok, "no POST accepted after the alarm cleared") {
		assert.LessOrEqual(t, took, recoveryBound, "the api accepted again only %s after the alarm cleared", took)
	}
	t.Logf("%d POSTs refused while blocked; slowest answer %s; first 202 %s after clearing; /readyz not ready %d times",
		n, slowest.Round(time.Millisecond), took.Round(time.Millisecond), notReady)
	summary, _ := f.b.problemSummary("api")
	t.Logf("api warnings and errors: %s", summary)
}

// waitBlocked publishes on a connection of its own to the broker at url
// until the broker says it blocks it, and returns when it did.
func waitBlocked(t *testing.T, url string) time.Time {
	t.Helper()
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	defer func() {
		// Closing a blocked connection waits for the broker: do not.
		go func() { _ = conn.Close() }()
	}()
	notify := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	ch, err := conn.Channel()
	require.NoError(t, err)
	deadline := time.After(20 * time.Second)
	for {
		// To no queue: the default exchange drops it.
		_ = ch.PublishWithContext(context.Background(), "", "lull-test-alarm-probe", false, false, amqp.Publishing{Body: []byte("probe")})
		select {
		case b := <-notify:
			if b.Active {
				return time.Now()
			}
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("the broker never blocked a publisher after the memory alarm was raised")
		}
	}
}

// readyz asks GET /readyz, with a client of its own bounded to 5s, and
// returns the status (0: no answer) and how long the answer took.
func (b *bundle) readyz() (int, time.Duration) {
	client := http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	resp, err := client.Get(b.url("/readyz"))
	if err != nil {
		return 0, time.Since(start)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}
