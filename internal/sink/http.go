package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/redact"
	"github.com/lullhq/lull/internal/tracectx"
)

// HTTP request headers the http sink sends with every batch.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderBatchID        = "X-Lull-Batch-Id"
	HeaderAttempt        = "X-Lull-Attempt"
	HeaderSignature      = "X-Lull-Signature"
	// HeaderDiscard on a 409 answer: the receiver discards the batch as
	// stale (see Discard); a 409 without it is retried, as a receiver that
	// implements Idempotency-Key answers while it still processes an earlier
	// attempt.
	HeaderDiscard = "X-Lull-Discard"
)

// discardRequested reads an X-Lull-Discard value: "1" or "true".
func discardRequested(v string) bool {
	v = strings.TrimSpace(v)
	return v == "1" || strings.EqualFold(v, "true")
}

// maxRetryAfter caps a receiver's Retry-After hint.
const maxRetryAfter = 24 * time.Hour

// responseReadLimit is how much of a response body is read (for the error
// message, and so the connection can be reused) before it is closed.
const responseReadLimit = 4 << 10

// HTTPOptions configures the http sink.
type HTTPOptions struct {
	// URL receives the POSTs (CALLBACK_URL); absolute http or https.
	URL string
	// Secret, when set, signs each body (CALLBACK_SECRET).
	Secret string
	// Timeout bounds one POST, response included (CALLBACK_TIMEOUT);
	// required, positive.
	Timeout time.Duration
	// MaxConns is how many connections the sink keeps open to the
	// receiver, busy or idle: at least as many as batches are delivered at
	// once (DELIVERY_CONCURRENCY), so that each delivery reuses a
	// kept-alive connection instead of dialing a new one. Required,
	// positive.
	MaxConns int
	// Client sends the requests; nil means a new http.Client. The sink
	// works on a copy that never follows redirects. A Client without a
	// Transport gets the sink's own (sized by MaxConns); a Client with one
	// keeps it, and Close leaves it alone.
	Client *http.Client
}

// HTTP POSTs each batch's JSON to a callback URL (the README's "Batch JSON").
//
// Outcomes: 2xx is delivered. 408, 409, 425, 429, 5xx, network errors and
// timeouts are retryable, carrying any Retry-After hint (RetryAfterOf).
// Redirects and every other 4xx are Permanent.
type HTTP struct {
	url      string
	redacted string
	secret   string
	timeout  time.Duration
	client   *http.Client
	own      *http.Transport // the sink's own transport, nil when the caller's Client brought one
	closed   atomic.Bool
}

// CheckCallbackURL is the http sink's check of its URL (CALLBACK_URL):
// required, an absolute http:// or https:// URL. Its errors show the URL
// redacted and read after the URL's name ("URL is required").
func CheckCallbackURL(raw string) error {
	if raw == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: not a URL", redact.URL(raw))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an absolute http:// or https:// URL", redact.URL(raw))
	}
	return nil
}

// NewHTTP returns an http sink, checking the options.
func NewHTTP(opts HTTPOptions) (*HTTP, error) {
	if err := CheckCallbackURL(opts.URL); err != nil {
		return nil, fmt.Errorf("http sink: URL %w (CALLBACK_URL)", err)
	}
	if opts.Timeout <= 0 {
		return nil, fmt.Errorf("http sink: Timeout %s: must be positive (CALLBACK_TIMEOUT)", opts.Timeout)
	}
	if opts.MaxConns <= 0 {
		return nil, fmt.Errorf("http sink: MaxConns %d: must be positive (DELIVERY_CONCURRENCY)", opts.MaxConns)
	}
	var client http.Client
	if opts.Client != nil {
		client = *opts.Client
	}
	var own *http.Transport
	if client.Transport == nil {
		own = newTransport(opts.MaxConns)
		client.Transport = own
	}
	// A redirected POST may become a GET without a body, or carry the
	// signature to another host: report it instead of following it.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &HTTP{
		url:      opts.URL,
		redacted: redact.URL(opts.URL), // a token in the query must not reach logs or dead letters
		secret:   opts.Secret,
		timeout:  opts.Timeout,
		client:   &client,
		own:      own,
	}, nil
}

// newTransport is the sink's own transport: http.DefaultTransport's dialer,
// proxy and TLS settings, keeping up to maxConns connections to the
// receiver alive between batches. Go's default keeps only 2 idle
// connections per host, so with more deliveries at once most batches would
// dial (and, for https, handshake) anew. The total per host is capped at
// maxConns too, so a burst cannot open more; HTTP/2 is used when a TLS
// receiver offers it.
func newTransport(maxConns int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxConns
	t.MaxIdleConnsPerHost = maxConns
	t.MaxConnsPerHost = maxConns
	t.IdleConnTimeout = 90 * time.Second
	t.DisableKeepAlives = false
	t.ForceAttemptHTTP2 = true
	return t
}

// Close closes the sink's kept-alive connections (its own transport's; a
// caller's Client is left alone). Deliver fails after Close; call it after
// the last delivery finished.
func (h *HTTP) Close(context.Context) error {
	h.closed.Store(true)
	if h.own != nil {
		h.own.CloseIdleConnections()
	}
	return nil
}

// Name is "http".
func (h *HTTP) Name() string { return NameHTTP }

// Deliver POSTs body to the URL and classifies the answer.
func (h *HTTP) Deliver(ctx context.Context, b batch.Batch, body []byte) error {
	if h.closed.Load() {
		return fmt.Errorf("http sink: POST %s: sink closed", h.redacted)
	}
	if !validHeaderValue(b.BatchID) {
		return Permanent(fmt.Errorf("http sink: batch %q: id is not a valid HTTP header value", b.BatchID))
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("http sink: POST %s: %w", h.redacted, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lull")
	req.Header.Set(HeaderIdempotencyKey, b.BatchID)
	req.Header.Set(HeaderBatchID, b.BatchID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(b.Attempt))
	if tp := b.Traceparent(); tp != "" && validHeaderValue(tp) {
		req.Header.Set(tracectx.Header, tp)
	}
	if h.secret != "" {
		req.Header.Set(HeaderSignature, hmacsig.Sign(h.secret, body))
	}

	resp, err := h.client.Do(req)
	if err != nil {
		// *url.Error repeats method and URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("http sink: POST %s: %w", h.redacted, err)
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, responseReadLimit))
	_ = resp.Body.Close()
	return h.classify(resp, snippet)
}

// classify turns a response into Deliver's result.
func (h *HTTP) classify(resp *http.Response, body []byte) error {
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return nil
	}
	err := fmt.Errorf("http sink: POST %s: status %d", h.redacted, code)
	if msg := summary(body); msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	switch {
	case code == http.StatusConflict && discardRequested(resp.Header.Get(HeaderDiscard)):
		return Discard(fmt.Errorf("%w (%s: the receiver discarded the batch as stale)", err, HeaderDiscard))
	case code >= 300 && code <= 399:
		return Permanent(fmt.Errorf("%w (redirect to %q not followed; point the URL at the final address)",
			err, resp.Header.Get("Location")))
	case retryableStatus(code):
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return withRetryAfter(err, d)
		}
		return err
	case code >= 400 && code <= 499:
		return Permanent(err)
	default:
		return err
	}
}

// retryableStatus reports whether a non-2xx status may succeed later.
// 409 and 425 are included: a receiver implementing Idempotency-Key answers
// 409 while it is still processing an earlier attempt of the same batch.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return code >= 500 && code <= 599
}

// parseRetryAfter reads a Retry-After value, either delay-seconds or an
// HTTP-date (relative to now). Dates in the past mean zero; hints are
// capped at maxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		if secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	return min(max(d, 0), maxRetryAfter), true
}

// summary flattens the start of a response body into a short one-line
// message.
func summary(body []byte) string {
	s := escape(strings.Join(strings.Fields(string(body)), " "))
	const limit = 200
	if len(s) > limit {
		cut := limit
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func isRuneStart(c byte) bool { return c&0xC0 != 0x80 }

// validHeaderValue reports whether v can be sent as an HTTP header value
// (no control characters other than tab).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
