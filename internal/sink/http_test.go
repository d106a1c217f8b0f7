package sink

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/hmacsig"
)

// received is one request as the receiver saw it.
type received struct {
	method string
	path   string
	header http.Header
	body   []byte
}

// httpBundle is a real receiver that records every request and answers with
// the test's handler.
type httpBundle struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []received
}

func setupHTTP(t *testing.T, handler http.HandlerFunc) *httpBundle {
	t.Helper()
	hb := &httpBundle{}
	hb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		hb.mu.Lock()
		hb.reqs = append(hb.reqs, received{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body})
		hb.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(hb.srv.Close)
	return hb
}

func (hb *httpBundle) newSink(t *testing.T, opts HTTPOptions) *HTTP {
	t.Helper()
	opts.URL = hb.srv.URL + "/hook"
	if opts.Timeout == 0 {
		opts.Timeout = testHTTPTimeout
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = testMaxConns
	}
	h, err := NewHTTP(opts)
	require.NoError(t, err)
	return h
}

func (hb *httpBundle) requests() []received {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return append([]received(nil), hb.reqs...)
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

func TestHTTP_PostsBodyWithHeaders(t *testing.T) {
	t.Parallel()
	hb := setupHTTP(t, status(http.StatusOK))
	h := hb.newSink(t, HTTPOptions{Secret: "s3cret"})
	b, body := sampleBatch(t)
	b.Attempt = 2

	require.NoError(t, h.Deliver(context.Background(), b, body))

	reqs := hb.requests()
	require.Len(t, reqs, 1)
	got := reqs[0]
	require.Equal(t, http.MethodPost, got.method)
	require.Equal(t, "/hook", got.path)
	require.Equal(t, body, got.body)
	require.Equal(t, "application/json", got.header.Get("Content-Type"))
	require.Equal(t, "lull", got.header.Get("User-Agent"))
	require.Equal(t, "5511999990000:17", got.header.Get("Idempotency-Key"))
	require.Equal(t, "5511999990000:17", got.header.Get("X-Lull-Batch-Id"))
	require.Equal(t, "2", got.header.Get("X-Lull-Attempt"))

	sig := got.header.Get("X-Lull-Signature")
	require.Equal(t, hmacsig.Sign("s3cret", body), sig)
	require.Regexp(t, `^sha256=[0-9a-f]{64}$`, sig)
	require.True(t, verify("s3cret", got.body, sig))
	require.False(t, verify("wrong", got.body, sig))
	require.False(t, verify("s3cret", append([]byte(" "), got.body...), sig))
}

func TestHTTP_NoSignatureWithoutSecret(t *testing.T) {
	t.Parallel()
	hb := setupHTTP(t, status(http.StatusNoContent))
	h := hb.newSink(t, HTTPOptions{})
	b, body := sampleBatch(t)

	require.NoError(t, h.Deliver(context.Background(), b, body))
	reqs := hb.requests()
	require.Len(t, reqs, 1)
	_, present := reqs[0].header["X-Lull-Signature"]
	require.False(t, present)
}

func TestHTTP_ClassifiesStatus(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(2 * time.Minute).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		code       int
		retryAfter string
		wantOK     bool
		permanent  bool
		after      time.Duration // exact hint; -1 means none
		afterAbout bool          // hint from an HTTP-date: about two minutes
		discard    string        // X-Lull-Discard of the answer
	}{
		{name: "200", code: 200, wantOK: true},
		{name: "204", code: 204, wantOK: true},
		{name: "400", code: 400, permanent: true, after: -1},
		{name: "404", code: 404, permanent: true, after: -1},
		{name: "422 ignores Retry-After", code: 422, retryAfter: "3", permanent: true, after: -1},
		{name: "308 not followed", code: 308, permanent: true, after: -1},
		{name: "408", code: 408, after: -1},
		{name: "409 idempotency key in use", code: 409, retryAfter: "1", after: time.Second},
		{name: "409 discarded as stale", code: 409, discard: "1", after: -1},
		{name: "409 discard: true", code: 409, discard: "true", after: -1},
		{name: "409 discard: no", code: 409, discard: "no", after: -1},
		{name: "500 discard ignored", code: 500, discard: "1", after: -1},
		{name: "429 seconds", code: 429, retryAfter: "3", after: 3 * time.Second},
		{name: "429 http-date", code: 429, retryAfter: future, afterAbout: true},
		{name: "429 garbage Retry-After", code: 429, retryAfter: "soon", after: -1},
		{name: "500", code: 500, after: -1},
		{name: "503 seconds", code: 503, retryAfter: "7", after: 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hb := setupHTTP(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if tt.code/100 == 3 {
					w.Header().Set("Location", "/elsewhere")
				}
				if tt.discard != "" {
					w.Header().Set(HeaderDiscard, tt.discard)
				}
				w.WriteHeader(tt.code)
			})
			h := hb.newSink(t, HTTPOptions{})
			b, body := sampleBatch(t)

			err := h.Deliver(context.Background(), b, body)
			if tt.wantOK {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), "http sink: POST "+hb.srv.URL+"/hook: status "+tt.name[:3])
			require.Equal(t, tt.permanent, IsPermanent(err), "%v", err)
			require.Equal(t, tt.code == 409 && discardRequested(tt.discard), IsDiscard(err), "%v", err)
			d, ok := RetryAfterOf(err)
			switch {
			case tt.afterAbout:
				require.True(t, ok)
				require.Greater(t, d, 100*time.Second)
				require.LessOrEqual(t, d, 2*time.Minute)
			case tt.after < 0:
				require.False(t, ok, "unexpected Retry-After %s", d)
			default:
				require.True(t, ok)
				require.Equal(t, tt.after, d)
			}
			require.Len(t, hb.requests(), 1, "one POST, redirects not followed")
		})
	}
}

func TestHTTP_ErrorQuotesBoundedResponse(t *testing.T) {
	t.Parallel()
	hb := setupHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "database\n  is down\x1b[31m")
		_, _ = io.WriteString(w, strings.Repeat("x", 1<<20))
	})
	h := hb.newSink(t, HTTPOptions{})
	b, body := sampleBatch(t)

	err := h.Deliver(context.Background(), b, body)
	require.Error(t, err)
	require.Contains(t, err.Error(), `status 500: database is down\u001b[31mxxx`)
	require.Less(t, len(err.Error()), 400)
	require.False(t, IsPermanent(err))
}

func TestHTTP_ClosedServerIsRetryable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(status(http.StatusOK))
	url := srv.URL
	srv.Close()
	h, err := NewHTTP(HTTPOptions{URL: url, Timeout: testHTTPTimeout, MaxConns: testMaxConns})
	require.NoError(t, err)
	b, body := sampleBatch(t)

	err = h.Deliver(context.Background(), b, body)
	require.Error(t, err)
	require.Contains(t, err.Error(), "http sink: POST "+url)
	require.False(t, IsPermanent(err))
	_, ok := RetryAfterOf(err)
	require.False(t, ok)
}

func TestHTTP_TimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	hb := setupHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	h := hb.newSink(t, HTTPOptions{Timeout: 50 * time.Millisecond})
	b, body := sampleBatch(t)

	start := time.Now()
	err := h.Deliver(context.Background(), b, body)
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, IsPermanent(err))
}

func TestHTTP_RespectsContextCancel(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	hb := setupHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	h := hb.newSink(t, HTTPOptions{})
	b, body := sampleBatch(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-arrived
		cancel()
	}()

	err := h.Deliver(ctx, b, body)
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, IsPermanent(err))
}

func TestHTTP_InvalidBatchIDIsPermanent(t *testing.T) {
	t.Parallel()
	hb := setupHTTP(t, status(http.StatusOK))
	h := hb.newSink(t, HTTPOptions{})
	b, body := sampleBatch(t)
	b.BatchID = "evil\r\nX-Injected: 1:17"

	err := h.Deliver(context.Background(), b, body)
	require.True(t, IsPermanent(err), "%v", err)
	require.Empty(t, hb.requests())
}

func TestHTTP_ErrorsRedactPassword(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(status(http.StatusOK))
	srv.Close()
	h, err := NewHTTP(HTTPOptions{URL: strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1), Timeout: testHTTPTimeout, MaxConns: testMaxConns})
	require.NoError(t, err)
	b, body := sampleBatch(t)

	err = h.Deliver(context.Background(), b, body)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	require.Contains(t, err.Error(), "http://xxxxx@", "the whole userinfo is masked")
}

func TestNewHTTP_Validates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     HTTPOptions
		contains string
	}{
		{"empty url", HTTPOptions{Timeout: testHTTPTimeout, MaxConns: testMaxConns}, "URL is required"},
		{"relative", HTTPOptions{URL: "/hook", Timeout: testHTTPTimeout, MaxConns: testMaxConns}, "absolute http"},
		{"ftp", HTTPOptions{URL: "ftp://example.com/x", Timeout: testHTTPTimeout, MaxConns: testMaxConns}, "absolute http"},
		{"unparsable", HTTPOptions{URL: "http://[::1", Timeout: testHTTPTimeout, MaxConns: testMaxConns}, "http sink: URL"},
		{"negative timeout", HTTPOptions{URL: "http://example.com", Timeout: -time.Second}, "must be positive (CALLBACK_TIMEOUT)"},
		{"no timeout", HTTPOptions{URL: "http://example.com"}, "must be positive (CALLBACK_TIMEOUT)"},
		{"no max conns", HTTPOptions{URL: "http://example.com", Timeout: testHTTPTimeout}, "MaxConns 0: must be positive (DELIVERY_CONCURRENCY)"},
		{"negative max conns", HTTPOptions{URL: "http://example.com", Timeout: testHTTPTimeout, MaxConns: -1}, "must be positive (DELIVERY_CONCURRENCY)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := NewHTTP(tt.opts)
			require.Nil(t, h)
			require.ErrorContains(t, err, tt.contains)
		})
	}

	h, err := NewHTTP(HTTPOptions{URL: "https://example.com/hook", Timeout: testHTTPTimeout, MaxConns: testMaxConns})
	require.NoError(t, err)
	require.Equal(t, testHTTPTimeout, h.timeout)
}

func TestNewHTTP_DoesNotChangeCallersClient(t *testing.T) {
	t.Parallel()
	c := &http.Client{}
	_, err := NewHTTP(HTTPOptions{URL: "https://example.com/hook", Timeout: testHTTPTimeout, MaxConns: testMaxConns, Client: c})
	require.NoError(t, err)
	require.Nil(t, c.CheckRedirect)
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"soon", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"0", 0, true},
		{" 3 ", 3 * time.Second, true},
		{"99999999999999999999", 0, false}, // overflows uint64
		{"999999999999", maxRetryAfter, true},
		{"Wed, 25 Nov 2026 20:00:30 GMT", 30 * time.Second, true}, // IMF-fixdate
		{"Wednesday, 25-Nov-26 20:01:00 GMT", time.Minute, true},  // RFC 850
		{"Wed Nov 25 20:00:05 2026", 5 * time.Second, true},       // asctime
		{"Wed, 25 Nov 2026 19:00:00 GMT", 0, true},                // past: now
		{"Thu, 25 Nov 2027 20:00:00 GMT", maxRetryAfter, true},    // capped
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		require.Equal(t, tt.ok, ok, "%q", tt.in)
		require.Equal(t, tt.want, got, "%q", tt.in)
	}
}

// testHTTPTimeout is the tests' HTTPOptions.Timeout (CALLBACK_TIMEOUT's
// default).
const testHTTPTimeout = 10 * time.Second

// testMaxConns is the tests' HTTPOptions.MaxConns.
const testMaxConns = 4

// verify is how a receiver checks X-Lull-Signature.
func verify(secret string, body []byte, header string) bool {
	return hmacsig.Verify(body, header, secret) == nil
}

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	body := []byte(`{"batch_id":"k:1"}`)
	good := hmacsig.Sign("s3cret", body)
	tests := []struct {
		name   string
		secret string
		header string
		want   bool
	}{
		{"valid", "s3cret", good, true},
		{"surrounding space", "s3cret", " " + good + " ", true},
		{"uppercase hex", "s3cret", "sha256=" + strings.ToUpper(strings.TrimPrefix(good, "sha256=")), true},
		{"wrong secret", "other", good, false},
		{"empty secret", "", hmacsig.Sign("", body), false},
		{"no prefix", "s3cret", strings.TrimPrefix(good, "sha256="), false},
		{"other algorithm", "s3cret", "sha1=" + strings.TrimPrefix(good, "sha256="), false},
		{"truncated", "s3cret", good[:len(good)-2], false},
		{"not hex", "s3cret", "sha256=zz", false},
		{"empty", "s3cret", "", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, verify(tt.secret, body, tt.header), tt.name)
	}
	// A known vector, so receivers in other languages can check themselves.
	require.Equal(t, "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
		hmacsig.Sign("key", []byte("The quick brown fox jumps over the lazy dog")))
}

// FuzzVerifySignature checks that a signature always verifies under its own
// secret and body, and that nothing else verifies.
func FuzzVerifySignature(f *testing.F) {
	f.Add("s3cret", []byte(`{"batch_id":"k:1"}`), "sha256=00")
	f.Add("k", []byte{}, "")
	f.Fuzz(func(t *testing.T, secret string, body []byte, header string) {
		if secret != "" && !verify(secret, body, hmacsig.Sign(secret, body)) {
			t.Fatalf("own signature does not verify")
		}
		if verify(secret, body, header) {
			got := strings.ToLower(strings.TrimSpace(header))
			if got != hmacsig.Sign(secret, body) {
				t.Fatalf("header %q verified but is not the signature", header)
			}
		}
	})
}

// TestHTTP_ErrorsDoNotShowTheURLsSecrets: a token in CALLBACK_URL's query
// (or userinfo) never reaches an error, so neither a log line nor a dead
// letter's error holds it.
func TestHTTP_ErrorsDoNotShowTheURLsSecrets(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(status(http.StatusServiceUnavailable))
	t.Cleanup(srv.Close)
	b, body := sampleBatch(t)
	for _, url := range []string{
		srv.URL + "/hook?token=hunter2",
		strings.Replace(srv.URL, "http://", "http://bot:hunter2@", 1) + "/hook",
	} {
		h, err := NewHTTP(HTTPOptions{URL: url, Timeout: testHTTPTimeout, MaxConns: testMaxConns})
		require.NoError(t, err)
		err = h.Deliver(context.Background(), b, body)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "hunter2")
	}
	srv.Close()
	h, err := NewHTTP(HTTPOptions{URL: srv.URL + "/hook?token=hunter2", Timeout: testHTTPTimeout, MaxConns: testMaxConns})
	require.NoError(t, err)
	err = h.Deliver(context.Background(), b, body)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2", "network errors too")
	_, err = NewHTTP(HTTPOptions{URL: "ftp://bot:hunter2@x/?token=hunter2", Timeout: testHTTPTimeout, MaxConns: testMaxConns})
	require.NotContains(t, err.Error(), "hunter2")
}
