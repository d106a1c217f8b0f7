package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/testenv"
)

// counted records what httpapi.Metrics hears.
type counted struct {
	mu       sync.Mutex
	requests map[string]int // "source code" -> requests
	accepted map[string]int // source -> messages
}

func (c *counted) WebhookRequest(source string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests[source+" "+http.StatusText(status)]++
}

func (c *counted) MessagesAccepted(source string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.accepted[source] += n
}

func (c *counted) snapshot() (map[string]int, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, a := map[string]int{}, map[string]int{}
	for k, v := range c.requests {
		r[k] = v
	}
	for k, v := range c.accepted {
		a[k] = v
	}
	return r, a
}

func TestMetrics_WebhookRoutesCountEveryAnswerAndWhatWasAccepted(t *testing.T) {
	m := &counted{requests: map[string]int{}, accepted: map[string]int{}}
	tb := setup(t, testenv.AMQPURL(), configured, func(o *httpapi.Options) { o.Metrics = m })
	auth := evolutionAuth(t)

	for _, req := range []*http.Request{
		post("application/json", `{"unique_id":"u1","message":"oi"}`),
		post("application/json", `{"unique_id":"u1","message":"tudo bem?"}`),
		post("application/json", `{"unique_id":"u1"}`),          // 422
		post("text/plain", `{"unique_id":"u1","message":"oi"}`), // 415
		request(http.MethodPost, "/webhook/evolution/messages-upsert", "application/json", fixture(t, "evolution", "text_conversation.json"), auth...),
		request(http.MethodPost, "/webhook/evolution", "application/json", fixture(t, "evolution", "text_conversation.json")), // 401
		request(http.MethodGet, "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", "", ""),        // 403
		httptest.NewRequest(http.MethodGet, "/readyz", nil),                                                                   // not a webhook
		httptest.NewRequest(http.MethodGet, "/nowhere", nil),                                                                  // no route
	} {
		resp := tb.api(req)
		_ = resp.Body.Close()
	}
	requests, accepted := m.snapshot()
	require.Equal(t, map[string]int{
		"generic Accepted":               2,
		"generic Unprocessable Entity":   1,
		"generic Unsupported Media Type": 1,
		"evolution OK":                   1,
		"evolution Unauthorized":         1,
		"whatsapp Forbidden":             1,
	}, requests)
	require.Equal(t, map[string]int{"generic": 2, "evolution": 1}, accepted)
}

func TestMetrics_AnUnavailableBrokerIsCountedAs503(t *testing.T) {
	m := &counted{requests: map[string]int{}, accepted: map[string]int{}}
	tb := setup(t, "amqp://guest:guest@127.0.0.1:1/", func(o *httpapi.Options) { o.Metrics = m })
	resp := tb.api(post("application/json", `{"unique_id":"u1","message":"oi"}`))
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	requests, accepted := m.snapshot()
	require.Equal(t, map[string]int{"generic Service Unavailable": 1}, requests)
	require.Empty(t, accepted)
}
