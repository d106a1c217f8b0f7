//go:build faults

package e2e

// The network faults' tools: a Toxiproxy server run inside the test binary
// (github.com/Shopify/toxiproxy/v2 as a library), proxies placed between
// lull's processes and Redis or RabbitMQ, and a record of every POST the
// test client made, to judge the api's answers while a link is broken.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
)

// toxiServer is a Toxiproxy server of one test's own. Its proxies are
// stopped (every connection through them closed) when the test ends.
type toxiServer struct {
	t   *testing.T
	srv *toxiproxy.ApiServer
	log *memLog
}

// startToxiproxy starts a Toxiproxy server in-process. Call it before setup,
// so its proxies outlive the processes talking through them. Its warnings
// (a connection reset, a write to a closed peer) are printed if the test
// fails.
func startToxiproxy(t *testing.T) *toxiServer {
	t.Helper()
	l := &memLog{max: 200}
	logger := zerolog.New(l).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	s := &toxiServer{t: t, srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), logger), log: l}
	t.Cleanup(func() {
		_ = s.srv.Collection.Clear()
		if t.Failed() {
			t.Log("toxiproxy:\n" + l.String())
		}
	})
	return s
}

// proxy starts a proxy named name on a free 127.0.0.1 port, forwarding to
// upstream (host:port).
func (s *toxiServer) proxy(name, upstream string) *toxicProxy {
	s.t.Helper()
	p := toxiproxy.NewProxy(s.srv, name, "127.0.0.1:0", upstream)
	require.NoError(s.t, s.srv.Collection.Add(p, true), "start toxiproxy %s -> %s", name, upstream)
	s.t.Logf("toxiproxy %s: %s -> %s", name, p.Listen, upstream)
	return &toxicProxy{t: s.t, p: p}
}

// toxicProxy is one proxy, with the faults the scenarios inject on it.
type toxicProxy struct {
	t *testing.T
	p *toxiproxy.Proxy
}

// addr is where the proxy listens, host:port.
func (p *toxicProxy) addr() string { return p.p.Listen }

// url is rawURL (a redis:// or amqp:// URL) with its host and port
// replaced by the proxy's.
func (p *toxicProxy) url(rawURL string) string {
	p.t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(p.t, err)
	u.Host = p.addr()
	return u.String()
}

// add adds a toxic of type kind to stream ("upstream": from lull to the
// server, "downstream": the server's replies) of every connection, open
// or new, until remove.
func (p *toxicProxy) add(name, kind, stream string, attributes map[string]any) {
	p.t.Helper()
	body, err := json.Marshal(map[string]any{
		"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes,
	})
	require.NoError(p.t, err)
	_, err = p.p.Toxics.AddToxicJson(bytes.NewReader(body))
	require.NoError(p.t, err, "add toxic %s to %s", name, p.p.Name)
}

// remove removes the toxic name.
func (p *toxicProxy) remove(name string) {
	p.t.Helper()
	require.NoError(p.t, p.p.Toxics.RemoveToxic(context.Background(), name), "remove toxic %s from %s", name, p.p.Name)
}

// latency delays every chunk of stream by d until remove(name).
func (p *toxicProxy) latency(name, stream string, d time.Duration) {
	p.add(name, "latency", stream, map[string]any{"latency": d.Milliseconds(), "jitter": d.Milliseconds() / 5})
}

// resetReplies resets (RST) every connection as soon as the server sends it
// anything, dropping that reply, until remove(name): the command ran, its
// answer never arrived.
func (p *toxicProxy) resetReplies(name string) {
	p.add(name, "reset_peer", "downstream", map[string]any{"timeout": 0})
}

// halfOpen makes every connection, open or new, a black hole in both
// directions, without closing anything: a peer that vanished without a FIN,
// a dead NAT entry. heal ends it; the connections that were cut are closed
// then (Toxiproxy closes what a timeout toxic held when it is removed), as
// the keepalive or heartbeat of a real stack would close them eventually,
// and new ones go through.
func (p *toxicProxy) halfOpen() {
	p.add("blackhole_up", "timeout", "upstream", map[string]any{"timeout": 0})
	p.add("blackhole_down", "timeout", "downstream", map[string]any{"timeout": 0})
}

func (p *toxicProxy) heal() {
	p.remove("blackhole_up")
	p.remove("blackhole_down")
}

// disable closes every connection and refuses new ones until enable.
func (p *toxicProxy) disable() { p.p.Stop() }

func (p *toxicProxy) enable() {
	p.t.Helper()
	require.NoError(p.t, p.p.Start(), "restart toxiproxy %s on %s", p.p.Name, p.p.Listen)
}

// upstreamOf is the host:port of rawURL.
func upstreamOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	return u.Host
}

// memLog keeps the last max lines written to it.
type memLog struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (l *memLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimRight(string(p), "\n"))
	if len(l.lines) > l.max {
		l.lines = l.lines[len(l.lines)-l.max:]
	}
	return len(p), nil
}

func (l *memLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// postRecord is one POST /webhook of the test client: when it started,
// when the answer came, the status (0: no answer) and Retry-After.
type postRecord struct {
	Start, End time.Time
	Status     int
	RetryAfter string
}

func (r postRecord) took() time.Duration { return r.End.Sub(r.Start) }

// postLog records the POSTs of a deployment's client (it wraps its transport).
type postLog struct {
	next http.RoundTripper

	mu    sync.Mutex
	posts []postRecord
}

// recordPosts starts recording b's POSTs; call it before the load starts.
func recordPosts(b *harness.Deployment) *postLog {
	l := &postLog{next: b.Client.Transport}
	b.Client.Transport = l
	return l
}

func (l *postLog) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := l.next.RoundTrip(req)
	if req.Method != http.MethodPost || req.URL.Path != "/webhook" {
		return resp, err
	}
	r := postRecord{Start: start, End: time.Now()}
	if err == nil {
		r.Status = resp.StatusCode
		r.RetryAfter = resp.Header.Get("Retry-After")
	}
	l.mu.Lock()
	l.posts = append(l.posts, r)
	l.mu.Unlock()
	return resp, err
}

func (l *postLog) all() []postRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]postRecord(nil), l.posts...)
}

// assertRefusedWhileCut checks the POSTs made entirely within [from, to],
// while no confirm could reach the api: none was accepted, each was
// refused with 503 and Retry-After, each within limit. It returns how many
// there were.
func (l *postLog) assertRefusedWhileCut(t *testing.T, from, to time.Time, limit time.Duration) int {
	t.Helper()
	n, bad := 0, 0
	for _, r := range l.all() {
		if r.Start.Before(from) || r.End.After(to) {
			continue
		}
		n++
		ok := r.Status == http.StatusServiceUnavailable && r.RetryAfter != "" && r.took() <= limit
		if !ok && bad < 10 {
			t.Errorf("POST at %s while the broker could confirm nothing: status %d, Retry-After %q, took %s (want 503 with Retry-After within %s)",
				r.Start.Format("15:04:05.000"), r.Status, r.RetryAfter, r.took().Round(time.Millisecond), limit)
		}
		if !ok {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d POSTs made while the broker could confirm nothing were not a prompt 503 with Retry-After", bad, n)
	}
	assert.Positive(t, n, "no POST was made while the broker could confirm nothing")
	return n
}

// assertPrompt checks that every POST got an answer within limit, fault or
// not, and returns the slowest.
func (l *postLog) assertPrompt(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	slowest, late := time.Duration(0), 0
	for _, r := range l.all() {
		slowest = max(slowest, r.took())
		if r.took() > limit {
			late++
		}
	}
	assert.Zero(t, late, "POSTs answered after more than %s (or never); the slowest took %s", limit, slowest)
	return slowest
}

// assertRefusedThenAccepted checks the api's answers around a fault that let
// no confirm reach it from from to to (at to, ended: "the link came back"):
// the POSTs made meanwhile were refused (assertRefusedWhileCut), every POST
// was answered within PUBLISH_TIMEOUT and a margin (assertPrompt), and one
// begun after to was accepted within recoveryBound. It returns a summary
// to log.
func (l *postLog) assertRefusedThenAccepted(t *testing.T, from, to time.Time, ended string) string {
	t.Helper()
	limit := publishTimeout + answerMargin
	n := l.assertRefusedWhileCut(t, from, to, limit)
	slowest := l.assertPrompt(t, limit)
	took, ok := l.recoveredAfter(to)
	if assert.True(t, ok, "no POST accepted after "+ended) {
		assert.LessOrEqual(t, took, recoveryBound, "the api accepted again only %s after "+ended, took)
	}
	return fmt.Sprintf("%d POSTs refused meanwhile; slowest answer %s; first 202 %s after %s",
		n, slowest.Round(time.Millisecond), took.Round(time.Millisecond), ended)
}

// recoveredAfter is how long after healed the first POST begun after it
// was accepted; false if none was.
func (l *postLog) recoveredAfter(healed time.Time) (time.Duration, bool) {
	best, found := time.Duration(0), false
	for _, r := range l.all() {
		if r.Status/100 == 2 && !r.Start.Before(healed) {
			if d := r.End.Sub(healed); !found || d < best {
				best, found = d, true
			}
		}
	}
	return best, found
}

// statusSummary counts the POSTs made within [from, to] by status.
func (l *postLog) statusSummary(from, to time.Time) string {
	counts := map[int]int{}
	for _, r := range l.all() {
		if !r.Start.Before(from) && !r.End.After(to) {
			counts[r.Status]++
		}
	}
	return fmt.Sprint(counts)
}
