package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/console"
	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

const token = "console-admin-token-0123456789"

var quiet = slog.New(slog.DiscardHandler)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, []byte) error { return nil }
func (nopPublisher) Ready() bool                                   { return true }

// bench is an api with the console, over a store of its own namespace.
type bench struct {
	t     *testing.T
	st    *store.Store
	api   *httpapi.Server
	clock atomic.Int64 // Unix ms: the store's clock (scripts and console alike)
	now   atomic.Int64 // Unix ns: the console's clock (session expiry)
}

func newBench(t *testing.T, adminToken string, opts ...func(*console.Options)) *bench {
	t.Helper()
	ns := testenv.Namespace(t, "console")
	b := &bench{t: t}
	b.clock.Store(time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC).UnixMilli())
	b.now.Store(time.Now().UnixNano())
	so := testenv.StoreOptions()
	so.Now = b.clock.Load
	b.st = store.New(testenv.Redis(t, ns), ns, so)
	co := console.Options{
		Token: adminToken, Store: func() *store.Store { return b.st }, Namespace: ns,
		Now:    func() time.Time { return time.Unix(0, b.now.Load()) },
		Logger: quiet,
	}
	for _, o := range opts {
		o(&co)
	}
	b.api = httpapi.New(httpapi.Options{
		Publisher: nopPublisher{}, BodyLimit: 4096, PublishTimeout: time.Second,
		AdminToken: adminToken, Console: console.New(co), Logger: quiet,
	})
	return b
}

// do sends req to the api and returns the answer with its body read.
func (b *bench) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	if req.Host == "" || req.Host == "example.com" {
		req.Host = "lull.test"
	}
	resp, err := b.api.Test(req, 5000)
	require.NoError(b.t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return resp, string(body)
}

func request(method, path string, headers ...string) *http.Request {
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

// login posts the form with tok and returns the answer.
func (b *bench) login(tok string, headers ...string) *http.Response {
	b.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/console/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, _ := b.do(req)
	return resp
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == console.CookieName {
			return c
		}
	}
	return nil
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// session logs in and returns the cookie header and the page's CSRF token.
func (b *bench) session() (cookie, csrf string) {
	b.t.Helper()
	resp := b.login(token)
	require.Equal(b.t, http.StatusSeeOther, resp.StatusCode)
	c := sessionCookie(resp)
	require.NotNil(b.t, c, "login sets the session cookie")
	cookie = console.CookieName + "=" + c.Value
	page, body := b.do(request(http.MethodGet, "/console", "Cookie", cookie))
	require.Equal(b.t, http.StatusOK, page.StatusCode, body)
	m := csrfMeta.FindStringSubmatch(body)
	require.NotNil(b.t, m, "the page carries its CSRF token")
	return cookie, m[1]
}

func TestConsole_WithoutAdminTokenNothingExists(t *testing.T) {
	t.Parallel()
	b := newBench(t, "")
	require.Nil(t, console.New(console.Options{Store: func() *store.Store { return b.st }}))
	for _, r := range []*http.Request{
		request(http.MethodGet, "/console"),
		request(http.MethodGet, "/console/login"),
		request(http.MethodGet, "/console/assets/console.js"),
		request(http.MethodGet, "/console/api/overview", "Authorization", "Bearer "+token),
		request(http.MethodPost, "/console/api/replay?batch_id=a:1", "Authorization", "Bearer "+token),
	} {
		resp, _ := b.do(r)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s %s", r.Method, r.URL)
	}
}

func TestConsole_UnauthenticatedIsSentToLoginOrRefused(t *testing.T) {
	t.Parallel()
	b := newBench(t, token)
	resp, _ := b.do(request(http.MethodGet, "/console"))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console/login", resp.Header.Get("Location"))

	resp, body := b.do(request(http.MethodGet, "/console/login"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `name="token"`)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")

	for _, r := range []*http.Request{
		request(http.MethodGet, "/console/api/overview"),
		request(http.MethodGet, "/console/api/overview", "Authorization", "Bearer wrong-token-0123456789"),
		request(http.MethodGet, "/console/api/overview", "Cookie", console.CookieName+"=garbage"),
		request(http.MethodPost, "/console/api/flush?key=k"),
		request(http.MethodPost, "/console/api/replay?batch_id=k:1", "Authorization", "Bearer "+token+"x"),
	} {
		resp, _ := b.do(r)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s %v", r.Method, r.URL, r.Header)
	}

	resp, body = b.do(request(http.MethodGet, "/console/api/overview", "Authorization", "Bearer "+token))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
}

func TestConsole_LoginSetsAStrictHttpOnlySessionCookie(t *testing.T) {
	t.Parallel()
	b := newBench(t, token)
	resp := b.login("wrong-token-0123456789")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Nil(t, sessionCookie(resp), "a wrong token gets no session")

	resp = b.login(token, "Origin", "https://evil.example")
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a login posted from another site")
	require.Nil(t, sessionCookie(resp))

	resp = b.login(token, "Origin", "http://lull.test")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console", resp.Header.Get("Location"))
	c := sessionCookie(resp)
	require.NotNil(t, c)
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite)
	require.Equal(t, "/console", c.Path)
	require.False(t, c.Secure, "plain http: a Secure cookie would never come back")
	require.NotContains(t, c.Value, token)
	require.WithinDuration(t, time.Now().Add(console.DefaultSessionTTL), c.Expires, time.Minute)

	resp = b.login(token, "X-Forwarded-Proto", "https")
	c = sessionCookie(resp)
	require.NotNil(t, c)
	require.True(t, c.Secure, "behind TLS the cookie is Secure")
}

func TestConsole_SessionExpiresIsBoundToTheTokenAndEndsAtLogout(t *testing.T) {
	t.Parallel()
	b := newBench(t, token)
	cookie, csrf := b.session()
	overview := func(cookie string) int {
		resp, _ := b.do(request(http.MethodGet, "/console/api/overview", "Cookie", cookie))
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, overview(cookie))

	// Tampered: another expiry under the same signature.
	parts := strings.SplitN(strings.TrimPrefix(cookie, console.CookieName+"="), ".", 2)
	require.Equal(t, http.StatusUnauthorized, overview(console.CookieName+"=9999999999."+parts[1]))

	// Signed under another ADMIN_TOKEN.
	other := newBench(t, token+"-other")
	resp, _ := other.do(request(http.MethodGet, "/console/api/overview", "Cookie", cookie))
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a session of another admin token")

	// Logout needs the CSRF token, then ends the session for good.
	resp, _ = b.do(request(http.MethodPost, "/console/api/logout", "Cookie", cookie))
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = b.do(request(http.MethodPost, "/console/api/logout", "Cookie", cookie, console.HeaderCSRF, csrf))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console/login", resp.Header.Get("Location"))
	cleared := sessionCookie(resp)
	require.NotNil(t, cleared)
	require.Empty(t, cleared.Value)
	require.Equal(t, http.StatusUnauthorized, overview(cookie), "the old cookie after logout")

	// Expiry.
	cookie, _ = b.session()
	require.Equal(t, http.StatusOK, overview(cookie))
	b.now.Add(int64(console.DefaultSessionTTL + time.Second))
	require.Equal(t, http.StatusUnauthorized, overview(cookie), "after the session TTL")
	resp, _ = b.do(request(http.MethodGet, "/console", "Cookie", cookie))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

func TestConsole_ActionsNeedCSRFTokenAndSameOrigin(t *testing.T) {
	t.Parallel()
	b := newBench(t, token)
	cookie, csrf := b.session()
	_, err := b.st.Append(context.Background(), "k1", "m1", []byte(`{"id":"m1","text":"oi"}`), false)
	require.NoError(t, err)

	for name, headers := range map[string][]string{
		"no CSRF token":    {"Cookie", cookie},
		"wrong CSRF token": {"Cookie", cookie, console.HeaderCSRF, strings.Repeat("0", len(csrf))},
		"another origin":   {"Cookie", cookie, console.HeaderCSRF, csrf, "Origin", "https://evil.example"},
	} {
		resp, body := b.do(request(http.MethodPost, "/console/api/flush?key=k1", headers...))
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", name, body)
	}
	resp, _ := b.do(request(http.MethodGet, "/console/api/flush?key=k1", "Cookie", cookie, console.HeaderCSRF, csrf))
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "actions are POST only")
	c, err := b.st.Inspect(context.Background(), "k1", 10)
	require.NoError(t, err)
	require.Equal(t, "quiet", c.Meta["reason"], "no refused request flushed")

	resp, body := b.do(request(http.MethodPost, "/console/api/flush?key=k1", "Cookie", cookie, console.HeaderCSRF, csrf, "Origin", "http://lull.test"))
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	c, err = b.st.Inspect(context.Background(), "k1", 10)
	require.NoError(t, err)
	require.Equal(t, "manual", c.Meta["reason"])
	require.Equal(t, c.Now, c.Deadline, "due at once")

	// A tool's bearer token needs no CSRF token.
	resp, body = b.do(request(http.MethodPost, "/console/api/flush?key=nobody", "Authorization", "Bearer "+token))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "nothing buffered")
}

// overview is GET /console/api/overview, decoded.
type overview struct {
	Now       int64 `json:"now"`
	Limit     int   `json:"limit"`
	Buffering []struct {
		store.Buffering
		Source string `json:"source"`
	} `json:"buffering"`
	BufferingTotal int64               `json:"buffering_total"`
	InFlight       []store.Flight      `json:"in_flight"`
	InFlightTotal  int64               `json:"in_flight_total"`
	Dead           []store.DeadSummary `json:"dead"`
	DeadTotal      int64               `json:"dead_total"`
	Totals         map[string]int64    `json:"totals"`
}

func (b *bench) overview() overview {
	b.t.Helper()
	resp, body := b.do(request(http.MethodGet, "/console/api/overview", "Authorization", "Bearer "+token))
	require.Equal(b.t, http.StatusOK, resp.StatusCode, body)
	var ov overview
	require.NoError(b.t, json.Unmarshal([]byte(body), &ov), body)
	return ov
}

func (b *bench) append(key, id string) {
	b.t.Helper()
	_, err := b.st.Append(context.Background(), key, id, []byte(fmt.Sprintf(`{"id":%q,"text":"hi","received_at":"2026-11-25T20:00:00.000Z"}`, id)), false)
	require.NoError(b.t, err)
}

// claim flushes key, due by now, and returns its claim.
func (b *bench) claim(key string) *store.Claim {
	b.t.Helper()
	_, err := b.st.FlushNow(context.Background(), key)
	require.NoError(b.t, err)
	f := b.st.FlushDue(context.Background(), []string{key}, "worker-a")[0]
	require.NoError(b.t, f.Err)
	require.NotNil(b.t, f.Claim, "flush %s: %s", key, f.Result)
	return f.Claim
}

func TestConsole_OverviewListsTheSoonestAcrossShardsBounded(t *testing.T) {
	t.Parallel()
	b := newBench(t, token, func(o *console.Options) { o.Limit = 3 })
	quiet := testenv.StoreOptions().QuietWindow.Milliseconds()
	start := b.clock.Load()
	// Five conversations, in several shards, appended a second apart: the
	// later the append, the later the deadline. The first gets two messages.
	keys := []string{"c-0", "whatsapp:1555:5511", "c-2", "c-3", "c-4"}
	for i, k := range keys {
		b.append(k, "m-"+k)
		if i == 0 {
			b.append(k, "m-again")
		}
		b.clock.Add(1000)
	}
	ov := b.overview()
	require.Equal(t, 3, ov.Limit)
	require.Equal(t, int64(5), ov.BufferingTotal)
	require.Len(t, ov.Buffering, 3, "at most Limit")
	for i, got := range ov.Buffering {
		require.Equal(t, keys[i], got.Key, "soonest first")
		require.Equal(t, start+int64(i)*1000+quiet, got.Deadline)
		require.Equal(t, "quiet", got.Reason)
		require.False(t, got.AfterBatch)
	}
	require.Equal(t, int64(2), ov.Buffering[0].Messages)
	require.Positive(t, ov.Buffering[0].Bytes)
	require.Equal(t, "generic", ov.Buffering[0].Source)
	require.Equal(t, "whatsapp", ov.Buffering[1].Source)
	require.Equal(t, int64(6), ov.Totals["appended"])

	// c-0 claimed, one attempt failed; c-2 claimed and dead-lettered.
	ctx := context.Background()
	c0 := b.claim("c-0")
	require.NoError(t, c0.Failed(ctx, "POST http://bot: 503 Service Unavailable"))
	c2 := b.claim("c-2")
	require.NoError(t, c2.DeadLetter(ctx, "status 400"))
	b.append("c-0", "m-later") // waits for c-0's batch

	ov = b.overview()
	require.Equal(t, int64(4), ov.BufferingTotal)
	require.Equal(t, []string{"whatsapp:1555:5511", "c-3", "c-4"},
		[]string{ov.Buffering[0].Key, ov.Buffering[1].Key, ov.Buffering[2].Key}, "c-0's new deadline is the latest")
	all, err := b.st.Overview(ctx, 10)
	require.NoError(t, err)
	require.Len(t, all.Buffering, 4)
	require.Equal(t, "c-0", all.Buffering[3].Key)
	require.True(t, all.Buffering[3].AfterBatch, "c-0 has a batch in flight")
	require.Equal(t, int64(1), ov.InFlightTotal)
	require.Len(t, ov.InFlight, 1)
	f := ov.InFlight[0]
	require.Equal(t, c0.ID(), f.BatchID)
	require.Equal(t, int64(1), f.Attempt)
	require.Equal(t, "worker-a", f.Owner)
	require.Equal(t, "manual", f.Reason)
	require.Equal(t, b.clock.Load()+testenv.StoreOptions().Lease.Milliseconds(), f.LeaseUntil)
	require.Equal(t, "POST http://bot: 503 Service Unavailable", f.LastError)
	require.Positive(t, f.Bytes)
	require.Equal(t, int64(1), ov.DeadTotal)
	require.Len(t, ov.Dead, 1)
	d := ov.Dead[0]
	require.Equal(t, c2.ID(), d.BatchID)
	require.Equal(t, "c-2", d.Key)
	require.Equal(t, "status 400", d.Error)
	require.Equal(t, b.clock.Load(), d.DeadAt)
	require.Equal(t, int64(2), ov.Totals["flushed"])
	require.Equal(t, int64(1), ov.Totals["dead_lettered"])
}

func TestConsole_LookupShowsAConversationsWholeState(t *testing.T) {
	t.Parallel()
	b := newBench(t, token)
	ctx := context.Background()
	b.append("u1", "m1")
	dead := b.claim("u1")
	require.NoError(t, dead.DeadLetter(ctx, "status 400"))
	b.append("u1", "m2")
	b.append("u1", "m3")

	resp, body := b.do(request(http.MethodGet, "/console/api/conversation?key=u1", "Authorization", "Bearer "+token))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var got struct {
		Conversation store.Conversation `json:"conversation"`
		Source       string             `json:"source"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	c := got.Conversation
	require.Equal(t, "u1", c.Key)
	require.Equal(t, "generic", got.Source)
	require.Equal(t, int64(2), c.BufferLen)
	require.Len(t, c.Buffer, 2)
	require.JSONEq(t, `{"id":"m2","text":"hi","received_at":"2026-11-25T20:00:00.000Z"}`, string(c.Buffer[0]))
	require.Positive(t, c.BufferTTL)
	require.Equal(t, c.Meta["deadline"], fmt.Sprint(c.Deadline))
	require.Equal(t, int64(-1), c.LeaseUntil)
	require.Nil(t, c.Batch)
	require.Equal(t, int64(3), c.SeenCount)
	require.Len(t, c.Seen, 3)
	require.Equal(t, []store.Member{{Member: dead.ID(), Score: b.clock.Load()}}, c.DeadLetters)
	require.Contains(t, c.Keys["meta"], ":meta:u1")

	// The batch in flight, with its messages, and the dead letter in full.
	live := b.claim("u1")
	resp, body = b.do(request(http.MethodGet, "/console/api/conversation?key=u1", "Authorization", "Bearer "+token))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Equal(t, fmt.Sprint(live.Generation), got.Conversation.Batch["gen"])
	require.NotContains(t, got.Conversation.Batch, "messages")
	require.Contains(t, string(got.Conversation.BatchMessages), `"id":"m3"`)

	resp, body = b.do(request(http.MethodGet, "/console/api/dead-letter?batch_id="+url.QueryEscape(dead.ID()), "Authorization", "Bearer "+token))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `"error":"status 400"`)
	resp, _ = b.do(request(http.MethodGet, "/console/api/dead-letter?batch_id=u1:1", "Authorization", "Bearer "+token))
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestConsole_ReplayPutsTheDeadLetterBackInFlight(t *testing.T) {
	t.Parallel()
	b := newBench(t, token)
	b.append("u1", "m1")
	c := b.claim("u1")
	require.NoError(t, c.DeadLetter(context.Background(), "status 400"))

	replay := func(id string) (int, string) {
		resp, body := b.do(request(http.MethodPost, "/console/api/replay?batch_id="+url.QueryEscape(id), "Authorization", "Bearer "+token))
		return resp.StatusCode, body
	}
	status, body := replay(c.ID())
	require.Equal(t, http.StatusAccepted, status, body)
	ov := b.overview()
	require.Empty(t, ov.Dead)
	require.Len(t, ov.InFlight, 1)
	require.Equal(t, c.ID(), ov.InFlight[0].BatchID)
	require.Empty(t, ov.InFlight[0].Owner, "waiting for a reclaimer")
	require.Positive(t, ov.InFlight[0].ReplayedAt)

	status, _ = replay(c.ID())
	require.Equal(t, http.StatusNotFound, status, "replayed already")
}

func TestConsole_AssetsAndRedisNotConnected(t *testing.T) {
	t.Parallel()
	b := newBench(t, token, func(o *console.Options) { o.Store = func() *store.Store { return nil } })
	resp, body := b.do(request(http.MethodGet, "/console/assets/console.js"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "javascript")
	require.Contains(t, body, "/console/api/overview")
	resp, _ = b.do(request(http.MethodGet, "/console/assets/console.css"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = b.do(request(http.MethodGet, "/console/assets/console.html"))
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "templates are not served raw")

	resp, body = b.do(request(http.MethodGet, "/console/api/overview", "Authorization", "Bearer "+token))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	require.Contains(t, body, "redis not connected")
}
