package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/sink"
)

// ReceiverOptions make the receiver misbehave on purpose.
type ReceiverOptions struct {
	FailFirst int  // answer 503 to the first FailFirst requests
	HoldFirst bool // hold the first request open, unanswered, until its client goes away
	// FailShare is the share (0 to 1) of requests answered 503, picked at
	// random; the seed is logged.
	FailShare float64
	// Latency delays each 2xx answer by a random pause up to Latency, as a
	// receiver doing real work would (a sender that goes away meanwhile
	// still counts as delivered: the receiver took the batch).
	Latency time.Duration
	// Decide, when set, answers each well-formed batch in place of the
	// receiver's own rules: the status and headers to answer with (a
	// status 0 falls back to the rules). It runs before the answer, as a
	// bot holding the request would (it may post messages, ask lull).
	Decide func(b batch.Batch) (status int, header http.Header)
}

// StatusDropped records a request whose connection the receiver closed
// without answering (see Receiver.SetDown).
const StatusDropped = -1

// Received is one request the receiver got: a batch the http sink posted.
type Received struct {
	Batch  batch.Batch
	Body   []byte
	Header http.Header
	At     time.Time // arrival
	Status int       // the receiver's answer; 0 = held and never answered; StatusDropped
}

// OK reports whether the receiver accepted the request.
func (r Received) OK() bool { return r.Status/100 == 2 }

// Receiver is the http sink's CALLBACK_URL: it records every request,
// decodes the batch and, when a secret is set, verifies the signature.
type Receiver struct {
	srv     *httptest.Server
	secret  string
	opts    ReceiverOptions
	held    chan struct{} // closed when the held request arrived
	release chan struct{} // closed when the test ends

	mu       sync.Mutex
	reqs     []Received
	problems []string // malformed requests: the test fails at its end
	rng      *rand.Rand
	down     bool            // SetDown: every request fails
	rejected map[string]bool // Reject: keys whose batches get 400
	holdNext chan struct{}   // armed by HoldOne; closed when it held a request
}

// NewReceiver starts a receiver that closes when tb ends and fails tb if any
// request was not a well-formed, correctly signed batch.
func NewReceiver(tb testing.TB, secret string, opts ReceiverOptions) *Receiver {
	r := &Receiver{secret: secret, opts: opts, held: make(chan struct{}), release: make(chan struct{}), rejected: map[string]bool{}}
	if opts.FailShare > 0 {
		seed := rand.Uint64()
		tb.Logf("receiver: answering 503 to %.0f%% of requests (seed %d)", 100*opts.FailShare, seed)
		r.rng = rand.New(rand.NewPCG(seed, seed))
	}
	r.srv = httptest.NewServer(r)
	tb.Cleanup(func() {
		close(r.release)
		r.srv.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			tb.Errorf("receiver: %s", p)
		}
	})
	return r
}

// URL is where the http sink posts.
func (r *Receiver) URL() string { return r.srv.URL + "/batches" }

// ServeHTTP records and answers one request.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	d := Received{Header: req.Header.Clone(), At: time.Now()}
	body, err := io.ReadAll(req.Body)
	d.Body = body
	problem := ""
	switch {
	case err != nil:
		problem = fmt.Sprintf("read body: %v", err)
	case req.Method != http.MethodPost || req.URL.Path != "/batches":
		problem = fmt.Sprintf("unexpected %s %s", req.Method, req.URL.Path)
	case !strings.HasPrefix(req.Header.Get("Content-Type"), "application/json"):
		problem = fmt.Sprintf("Content-Type %q, want application/json", req.Header.Get("Content-Type"))
	case json.Unmarshal(body, &d.Batch) != nil:
		problem = fmt.Sprintf("body is not a batch: %.200s", body)
	case r.secret != "" && hmacsig.Verify(body, req.Header.Get(sink.HeaderSignature), r.secret) != nil:
		problem = fmt.Sprintf("batch %s: %s %q does not verify", d.Batch.BatchID, sink.HeaderSignature, req.Header.Get(sink.HeaderSignature))
	}

	r.mu.Lock()
	n := len(r.reqs)
	held := r.held
	switch {
	case problem != "":
		d.Status = http.StatusBadRequest
		r.problems = append(r.problems, problem)
	case n < r.opts.FailFirst:
		d.Status = http.StatusServiceUnavailable
	case n == 0 && r.opts.HoldFirst:
		d.Status = 0
	case r.rejected[d.Batch.Key]:
		d.Status = http.StatusBadRequest
	case r.down && n%2 == 0:
		d.Status = http.StatusServiceUnavailable
	case r.down:
		d.Status = StatusDropped
	case r.holdNext != nil:
		d.Status = 0
		held, r.holdNext = r.holdNext, nil
	case r.rng != nil && r.rng.Float64() < r.opts.FailShare:
		d.Status = http.StatusServiceUnavailable
	default:
		d.Status = http.StatusOK
	}
	decide := r.opts.Decide
	r.mu.Unlock()
	var answerHeader http.Header
	if decide != nil && problem == "" {
		if status, h := decide(d.Batch); status != 0 {
			d.Status, answerHeader = status, h
		}
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, d)
	r.mu.Unlock()

	if d.Status == http.StatusOK && r.opts.Latency > 0 {
		time.Sleep(rand.N(r.opts.Latency))
	}

	if d.Status == StatusDropped {
		// As if the receiver crashed: the connection closes, no answer.
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if d.Status == 0 {
		close(held)
		select {
		case <-req.Context().Done(): // the sender went away
		case <-r.release:
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	for k, vs := range answerHeader {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(d.Status)
}

// All is every request so far, in arrival order.
func (r *Receiver) All() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.reqs...)
}

// Accepted is every 2xx'd request so far (redeliveries included), in
// arrival order.
func (r *Receiver) Accepted() []Received {
	var out []Received
	for _, d := range r.All() {
		if d.OK() {
			out = append(out, d)
		}
	}
	return out
}

// Held is closed once the request ReceiverOptions.HoldFirst holds arrived.
func (r *Receiver) Held() <-chan struct{} { return r.held }

// SetDown makes every request fail while down holds: every other one gets
// 503, the rest have their connection closed unanswered (StatusDropped).
func (r *Receiver) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// Reject answers 400 (a permanent failure) to every batch of keys, until
// AcceptAll.
func (r *Receiver) Reject(keys ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		r.rejected[k] = true
	}
}

// AcceptAll undoes Reject for every key.
func (r *Receiver) AcceptAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.rejected)
}

// HoldOne makes the receiver hold the next request it would accept open,
// unanswered, until its client goes away; the channel closes when it does.
func (r *Receiver) HoldOne() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holdNext = make(chan struct{})
	return r.holdNext
}

// Distinct keeps the first request of each batch_id, in arrival order.
func Distinct(rs []Received) []Received {
	seen := map[string]bool{}
	var out []Received
	for _, d := range rs {
		if !seen[d.Batch.BatchID] {
			seen[d.Batch.BatchID] = true
			out = append(out, d)
		}
	}
	return out
}

// IDs lists the message ids of a batch, in batch order.
func IDs(b batch.Batch) []string {
	out := make([]string, len(b.Messages))
	for i, m := range b.Messages {
		out[i] = m.ID
	}
	return out
}

// Texts lists the message texts of a batch.
func Texts(b batch.Batch) []string {
	out := make([]string, len(b.Messages))
	for i, m := range b.Messages {
		out[i] = m.Text
	}
	return out
}

// Describe summarises received requests for a failure message.
func Describe(rs []Received) string {
	if len(rs) == 0 {
		return "(no deliveries)"
	}
	var sb strings.Builder
	for _, d := range rs {
		fmt.Fprintf(&sb, "\n  %s status=%d batch=%s reason=%s attempt=%s messages=%d",
			d.At.Format("15:04:05.000"), d.Status, d.Batch.BatchID, d.Batch.Reason,
			d.Header.Get(sink.HeaderAttempt), len(d.Batch.Messages))
	}
	return sb.String()
}
