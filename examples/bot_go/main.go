// Command bot_go is a bot on lull's http sink that never answers a stale
// burst: it "thinks" about each batch (an LLM call would go here), then asks
// lull whether the batch is still the conversation's last word before it
// sends its answer. When the user wrote again meanwhile, it throws its answer
// away and tells lull so (409 + X-Lull-Discard): lull puts the batch's
// messages back in front of the conversation's buffer, and the next batch
// holds them first, then the newer ones, with "replaces" naming this batch.
//
// Standard library only. Run it beside lull (both with the same API_TOKEN):
//
//	LULL_URL=http://127.0.0.1:8000 API_TOKEN=change-me-please-16 CALLBACK_SECRET=change-me \
//	  go run ./examples/bot_go                      # listens on :8090
//	# lull: SINKS=http CALLBACK_URL=http://127.0.0.1:8090/batches CALLBACK_SECRET=change-me \
//	#       API_TOKEN=change-me-please-16 (api and worker)
//
// Answers lull reads: 200 = handled (answered, or a redelivery already
// handled); 409 with X-Lull-Discard: 1 = stale, discarded; 503 = try again.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// batch is the part of lull's batch JSON this bot reads.
type batch struct {
	BatchID   string   `json:"batch_id"`
	Key       string   `json:"key"`
	StatusURL string   `json:"status_url"`
	Replaces  []string `json:"replaces"`
	Messages  []struct {
		ID   string `json:"id"`
		Text string `json:"text"`
	} `json:"messages"`
}

// status is GET /v1/batches/{id}.
type status struct {
	State         string `json:"state"`
	Current       bool   `json:"current"`
	NewerMessages int    `json:"newer_messages"`
}

type bot struct {
	lull, token, secret string
	think               time.Duration
	client              *http.Client

	mu       sync.Mutex
	answered map[string]bool // batch ids answered (lull may redeliver one)
}

func main() {
	think, err := time.ParseDuration(env("THINK", "2s"))
	if err != nil {
		log.Fatalf("THINK: %v", err)
	}
	b := &bot{
		lull: strings.TrimRight(env("LULL_URL", "http://127.0.0.1:8000"), "/"), token: os.Getenv("API_TOKEN"),
		secret: os.Getenv("CALLBACK_SECRET"), think: think,
		client: &http.Client{Timeout: 5 * time.Second}, answered: map[string]bool{},
	}
	addr := env("LISTEN", ":8090")
	log.Printf("bot listening on %s, lull at %s", addr, b.lull)
	log.Fatal(http.ListenAndServe(addr, b))
}

func (b *bot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, "read", http.StatusServiceUnavailable)
		return
	}
	if b.secret != "" && !signed(body, r.Header.Get("X-Lull-Signature"), b.secret) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var bt batch
	if err := json.Unmarshal(body, &bt); err != nil {
		http.Error(w, "not a batch", http.StatusBadRequest)
		return
	}
	if b.done(bt.BatchID) {
		w.WriteHeader(http.StatusOK) // a redelivery of a batch already answered
		return
	}
	answer := b.compose(r.Context(), bt) // the slow part: an LLM call, say

	// Is the batch still the conversation's last word?
	st, err := b.status(r.Context(), bt)
	if err != nil {
		log.Printf("%s: status: %v", bt.BatchID, err)
		http.Error(w, "status unavailable", http.StatusServiceUnavailable) // lull retries
		return
	}
	if !st.Current {
		log.Printf("%s: stale (%d newer messages): discarding my answer", bt.BatchID, st.NewerMessages)
		w.Header().Set("X-Lull-Discard", "1")
		w.WriteHeader(http.StatusConflict)
		return
	}
	log.Printf("%s: answering %q", bt.BatchID, answer) // send it to the user here
	b.mark(bt.BatchID)
	w.WriteHeader(http.StatusOK)
}

// compose stands for the bot's thinking.
func (b *bot) compose(ctx context.Context, bt batch) string {
	select {
	case <-time.After(b.think):
	case <-ctx.Done():
	}
	var words []string
	for _, m := range bt.Messages {
		words = append(words, m.Text)
	}
	return "you said: " + strings.Join(words, " / ")
}

// status asks lull about bt (status_url is relative unless lull's PUBLIC_URL is set).
func (b *bot) status(ctx context.Context, bt batch) (status, error) {
	u := bt.StatusURL
	if strings.HasPrefix(u, "/") {
		u = b.lull + u
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return status{}, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := b.client.Do(req)
	if err != nil {
		return status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return status{}, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var st status
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (b *bot) done(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.answered[id]
}

func (b *bot) mark(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.answered[id] = true
}

// signed checks X-Lull-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>.
func signed(body []byte, header, secret string) bool {
	got, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(got), []byte(want))
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
