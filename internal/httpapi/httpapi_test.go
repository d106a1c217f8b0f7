package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

type testBundle struct {
	api func(req *http.Request) *http.Response
	ns  string
	ch  *amqp.Channel
}

// setup runs the API against the real RabbitMQ, or against an unreachable
// broker when brokerURL says so.
func setup(t *testing.T, brokerURL string, mutate ...func(*httpapi.Options)) testBundle {
	t.Helper()
	t.Parallel()
	ns := testenv.Namespace(t, "httpapi")
	ctx := context.Background()
	testenv.CleanupBroker(t, testenv.AMQPURL(), ns) // runs after the publisher's close
	pub, err := queue.NewPublisher(ctx, brokerURL, ns, queue.PublisherOptions{ConfirmTimeout: 2 * time.Second, Inbound: testenv.Topology()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close(ctx) })
	if brokerURL == testenv.AMQPURL() {
		require.Eventually(t, pub.Ready, 10*time.Second, 10*time.Millisecond)
	}
	app := newApp(httpapi.Options{
		Publisher:      pub,
		RedisPing:      func(context.Context) error { return nil },
		BodyLimit:      4096,
		PublishTimeout: 2 * time.Second,
	}, mutate...)
	conn, err := amqp.Dial(testenv.AMQPURL())
	require.NoError(t, err)
	ch, err := conn.Channel()
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	base := "http://" + ln.Addr().String()
	return testBundle{
		ns: ns,
		ch: ch,
		api: func(req *http.Request) *http.Response {
			out, err := http.NewRequest(req.Method, base+req.URL.RequestURI(), req.Body)
			require.NoError(t, err)
			out.ContentLength = req.ContentLength
			out.Header = req.Header
			resp, err := http.DefaultClient.Do(out)
			require.NoError(t, err)
			return resp
		},
	}
}

func newApp(opts httpapi.Options, mutate ...func(*httpapi.Options)) *httpapi.Server {
	for _, m := range mutate {
		m(&opts)
	}
	return httpapi.New(opts)
}

func post(contentType, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// oversized is a body over the limit, sent the way curl sends large bodies
// (Expect: 100-continue), so the client reads the early 413 instead of
// failing to write the rest.
func oversized() *http.Request {
	req := post("application/json", `{"unique_id":"u","message":"`+strings.Repeat("x", 5000)+`"}`)
	req.Header.Set("Expect", "100-continue")
	return req
}

func decode(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var m map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return m
}

// queued returns what the namespace's inbound queue holds.
func (tb testBundle) queued(t *testing.T) []ingest.Envelope {
	t.Helper()
	var out []ingest.Envelope
	for _, d := range testenv.Drain(t, tb.ch, queue.InboundQueue(tb.ns)) {
		e, err := ingest.Decode(d.Body)
		require.NoError(t, err)
		require.Equal(t, e.Message.ID, d.MessageId)
		require.Equal(t, amqp.Persistent, d.DeliveryMode)
		out = append(out, e)
	}
	return out
}

func TestWebhook_AcceptedOnlyOnceDurable(t *testing.T) {
	tb := setup(t, testenv.AMQPURL())
	resp := tb.api(post("application/json; charset=utf-8", `{"unique_id":"123","message":"teste"}`))
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	body := decode(t, resp)
	require.Equal(t, "accepted", body["status"])
	require.NotEmpty(t, body["message_id"], "a message without message_id gets one")

	got := tb.queued(t)
	require.Len(t, got, 1)
	require.Equal(t, "123", got[0].Key)
	require.Equal(t, "teste", got[0].Message.Text)
	require.Equal(t, body["message_id"], got[0].Message.ID)
}

func TestWebhook_BadInputStoresNothing(t *testing.T) {
	tb := setup(t, testenv.AMQPURL())
	tests := []struct {
		name        string
		req         *http.Request
		status      int
		errContains string
	}{
		{"malformed JSON", post("application/json", `{"unique_id":`), 400, "malformed"},
		{"not an object", post("application/json", `[]`), 400, "object"},
		{"missing unique_id", post("application/json", `{"message":"m"}`), 422, "unique_id"},
		{"empty message", post("application/json", `{"unique_id":"u","message":""}`), 422, "message"},
		{"wrong content type", post("text/plain", `{"unique_id":"u","message":"m"}`), 415, "application/json"},
		{"no content type", post("", `{"unique_id":"u","message":"m"}`), 415, "application/json"},
		{"over the body limit", oversized(), 413, ""},
	}
	for _, tt := range tests {
		resp := tb.api(tt.req)
		require.Equal(t, tt.status, resp.StatusCode, tt.name)
		body := decode(t, resp)
		require.Contains(t, body["error"], tt.errContains, tt.name)
		if tt.status == 422 {
			require.Equal(t, tt.errContains, body["field"], tt.name)
		}
	}
	require.Empty(t, tb.queued(t), "bad input stores nothing")
}

func TestWebhook_BrokerDownIs503WithRetryAfter(t *testing.T) {
	tb := setup(t, "amqp://guest:guest@127.0.0.1:1/")
	resp := tb.api(post("application/json", `{"unique_id":"u","message":"m"}`))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, httpapi.RetryAfterSeconds, resp.Header.Get("Retry-After"))
	require.Contains(t, decode(t, resp)["error"], "unavailable")

	resp = tb.api(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, false, decode(t, resp)["broker"])

	resp = tb.api(httptest.NewRequest(http.MethodGet, "/healthz", nil))
	require.Equal(t, http.StatusOK, resp.StatusCode, "alive even when not ready")
}

func TestReadyz_ReadyWhenBrokerAndRedisAre(t *testing.T) {
	tb := setup(t, testenv.AMQPURL())
	resp := tb.api(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, true, decode(t, resp)["ready"])
}

func TestUnknownRoute_JSON404(t *testing.T) {
	tb := setup(t, testenv.AMQPURL())
	resp := tb.api(httptest.NewRequest(http.MethodGet, "/nope", nil))
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	b, _ := io.ReadAll(resp.Body)
	require.Contains(t, string(b), "error")
}
