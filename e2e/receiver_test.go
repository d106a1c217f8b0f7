package e2e

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
	"github.com/lullhq/lull/internal/sink"
)

// receiverOptions make the receiver misbehave on purpose.
type receiverOptions struct {
	FailFirst int  // answer 503 to the first FailFirst requests
	HoldFirst bool // hold the first request open, unanswered, until its client goes away
	// FailShare is the share (0 to 1) of requests answered 503, picked at
	// random; the seed is logged.
	FailShare float64
	// Latency delays each 2xx answer by a random pause up to Latency, as a
	// receiver doing real work would (a sender that goes away meanwhile
	// still counts as delivered: the receiver took the batch).
	Latency time.Duration
}

// statusDropped records a request whose connection the receiver closed
// without answering (see setDown).
const statusDropped = -1

// delivery is one request the receiver got.
type delivery struct {
	Batch  batch.Batch
	Body   []byte
	Header http.Header
	At     time.Time // arrival
	Status int       // the receiver's answer; 0 = held and never answered
}

// ok reports whether the receiver accepted the delivery.
func (d delivery) ok() bool { return d.Status/100 == 2 }

// receiver is the http sink's CALLBACK_URL: it records every request,
// decodes the batch and, when a secret is set, verifies the signature.
type receiver struct {
	srv     *httptest.Server
	secret  string
	opts    receiverOptions
	held    chan struct{} // closed when the held request arrived
	release chan struct{} // closed when the test ends

	mu       sync.Mutex
	reqs     []delivery
	problems []string // malformed requests: the test fails at its end
	rng      *rand.Rand
	down     bool            // setDown: every request fails
	rejected map[string]bool // reject: keys whose batches get 400
	holdNext chan struct{}   // armed by holdOne; closed when it held a request
}

// newReceiver starts a receiver that closes when tb ends and fails tb if any
// request was not a well-formed, correctly signed batch.
func newReceiver(tb testing.TB, secret string, opts receiverOptions) *receiver {
	r := &receiver{secret: secret, opts: opts, held: make(chan struct{}), release: make(chan struct{}), rejected: map[string]bool{}}
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
func (r *receiver) URL() string { return r.srv.URL + "/batches" }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	d := delivery{Header: req.Header.Clone(), At: time.Now()}
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
	case r.secret != "" && !sink.VerifySignature(r.secret, body, req.Header.Get(sink.HeaderSignature)):
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
		d.Status = statusDropped
	case r.holdNext != nil:
		d.Status = 0
		held, r.holdNext = r.holdNext, nil
	case r.rng != nil && r.rng.Float64() < r.opts.FailShare:
		d.Status = http.StatusServiceUnavailable
	default:
		d.Status = http.StatusOK
	}
	r.reqs = append(r.reqs, d)
	r.mu.Unlock()

	if d.Status == http.StatusOK && r.opts.Latency > 0 {
		time.Sleep(rand.N(r.opts.Latency))
	}

	if d.Status == statusDropped {
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
	w.WriteHeader(d.Status)
}

// all is every request so far, in arrival order.
func (r *receiver) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.reqs...)
}

// accepted is every 2xx'd request so far (redeliveries included), in
// arrival order.
func (r *receiver) accepted() []delivery {
	var out []delivery
	for _, d := range r.all() {
		if d.ok() {
			out = append(out, d)
		}
	}
	return out
}

// distinct keeps the first delivery of each batch_id, in arrival order.
func distinct(ds []delivery) []delivery {
	seen := map[string]bool{}
	var out []delivery
	for _, d := range ds {
		if !seen[d.Batch.BatchID] {
			seen[d.Batch.BatchID] = true
			out = append(out, d)
		}
	}
	return out
}

// ids lists the message ids of a batch, in batch order.
func ids(b batch.Batch) []string {
	out := make([]string, len(b.Messages))
	for i, m := range b.Messages {
		out[i] = m.ID
	}
	return out
}

// describe summarises deliveries for a failure message.
func describe(ds []delivery) string {
	if len(ds) == 0 {
		return "(no deliveries)"
	}
	var sb strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&sb, "\n  %s status=%d batch=%s reason=%s attempt=%s messages=%d",
			d.At.Format("15:04:05.000"), d.Status, d.Batch.BatchID, d.Batch.Reason,
			d.Header.Get(sink.HeaderAttempt), len(d.Batch.Messages))
	}
	return sb.String()
}
