package httpapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/logthrottle"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// A half-open link to the broker: the connection stays "up" while nothing
// arrives. Once a publish timed out waiting for its confirm, /readyz must
// stop routing traffic here, and say why.
func TestReadyz_StalledBrokerLinkIs503WithReason(t *testing.T) {
	u, err := url.Parse(testenv.AMQPURL())
	require.NoError(t, err)
	proxy := testenv.StartStallProxy(t, u.Host)
	tb := setup(t, proxy.AMQPURL(t, testenv.AMQPURL()))
	resp := tb.api(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Eventually(t, func() bool {
		resp := tb.api(httptest.NewRequest(http.MethodGet, "/readyz", nil))
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
	resp.Body.Close()

	proxy.Stall()
	resp = tb.api(post("application/json", `{"unique_id":"u","message":"m","message_id":"stalled"}`))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp.Body.Close()

	var body map[string]any
	require.Eventually(t, func() bool {
		resp := tb.api(httptest.NewRequest(http.MethodGet, "/readyz", nil))
		body = decode(t, resp)
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 2*time.Second, 10*time.Millisecond, "/readyz still 200 after a confirm timed out")
	require.Equal(t, map[string]any{"ready": false, "broker": false, "redis": true, "reason": "broker: confirm timeout"}, body)
	proxy.Resume()
}

// refusingPublisher refuses every message, as a blocked broker does.
type refusingPublisher struct {
	health    queue.Health
	published atomic.Int64
}

func (f *refusingPublisher) Publish(_ context.Context, messageID string, _ []byte) error {
	f.published.Add(1)
	return fmt.Errorf("publish %s: broker blocked the connection (low on memory): %w", messageID, queue.ErrUnavailable)
}
func (f *refusingPublisher) Ready() bool          { return f.health.Ready }
func (f *refusingPublisher) Health() queue.Health { return f.health }

func TestReadyz_SaysWhyNotReady(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		health queue.Health
		redis  error
		want   map[string]any
	}{
		{"blocked", queue.Health{Reason: "blocked: low on memory"}, nil,
			map[string]any{"ready": false, "broker": false, "redis": true, "reason": "broker: blocked: low on memory"}},
		{"redis down too", queue.Health{Reason: "disconnected"}, fmt.Errorf("redis not connected"),
			map[string]any{"ready": false, "broker": false, "redis": false, "reason": "broker: disconnected; redis: not reachable"}},
		{"redis only", queue.Health{Ready: true}, fmt.Errorf("dial tcp: connection refused"),
			map[string]any{"ready": false, "broker": true, "redis": false, "reason": "redis: not reachable"}},
	}
	for _, tt := range tests {
		app := httpapi.New(httpapi.Options{
			Publisher: &refusingPublisher{health: tt.health},
			RedisPing: func(context.Context) error { return tt.redis },
			BodyLimit: 4096, PublishTimeout: time.Second,
		})
		resp, err := app.Test(httptest.NewRequest(http.MethodGet, "/readyz", nil))
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, tt.name)
		require.Equal(t, httpapi.RetryAfterSeconds, resp.Header.Get("Retry-After"), tt.name)
		require.Equal(t, tt.want, decode(t, resp), tt.name)
	}
}

// A broker that refuses everything while senders retry must not turn every
// refused publish into a log line.
func TestPublishFailures_AggregatedInTheLog(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	pub := &refusingPublisher{health: queue.Health{Reason: "blocked: low on memory"}}
	app := httpapi.New(httpapi.Options{
		Publisher: pub,
		BodyLimit: 4096, PublishTimeout: time.Second,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	const n = 300
	for i := range n {
		req := post("application/json", fmt.Sprintf(`{"unique_id":"u%d","message":"m","message_id":"id-%d"}`, i%7, i))
		resp, err := app.Test(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		resp.Body.Close()
	}
	require.EqualValues(t, n, pub.published.Load())
	require.LessOrEqual(t, len(logs.Records(t, "publish failed")), 3, "one line per refused publish")

	// Within a second the rest is summed up: every failure is counted once.
	count := func() (total int) {
		for _, rec := range logs.Records(t, "publish failed") {
			if n, ok := rec["count"].(float64); ok {
				total += int(n)
			} else {
				total++
			}
		}
		return total
	}
	require.Eventually(t, func() bool { return count() == n }, 3*time.Second, 20*time.Millisecond)
	last := logs.Records(t, "publish failed")
	require.Contains(t, last[len(last)-1]["err"], "low on memory", "the summary carries the latest error")
	require.NotEmpty(t, last[len(last)-1]["message_id"])
}

// Drain tells the publish failures still held back, before the process
// exits: none goes uncounted.
func TestDrain_FlushesThePublishFailuresHeldBack(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	app := httpapi.New(httpapi.Options{
		Publisher: &refusingPublisher{health: queue.Health{Reason: "blocked: low on memory"}},
		BodyLimit: 4096, PublishTimeout: time.Second,
		Logger:            slog.New(slog.NewJSONHandler(&logs, nil)),
		PublishFailureLog: logthrottle.New(time.Hour),
	})
	const n = 5
	for i := range n {
		resp, err := app.Test(post("application/json", fmt.Sprintf(`{"unique_id":"u","message":"m","message_id":"id-%d"}`, i)))
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		resp.Body.Close()
	}
	require.Len(t, logs.Records(t, "publish failed"), 1, "the rest is held back for the hour")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, app.Drain(ctx))
	lines := logs.Records(t, "publish failed")
	require.Len(t, lines, 2)
	require.EqualValues(t, n-1, lines[1]["count"])
}
