package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stretchr/testify/require"
)

// Sent is a message the api answered 2xx, with when it was posted.
type Sent struct {
	Key, ID, Text string
	Start, End    time.Time // the POST's start and the answer's arrival
	Timestamped   bool      // it carried a provider timestamp, which orders it instead
}

// Ref names the message.
func (s Sent) Ref() Ref { return Ref{s.Key, s.ID} }

// Ref names a message: its conversation key and its id.
type Ref struct{ Key, ID string }

// MsgText is the text of message i of key, unique across the suite's keys.
func MsgText(key string, i int) string { return fmt.Sprintf("%s says #%d", key, i) }

// SentTexts lists the texts of sent messages.
func SentTexts(sent []Sent) []string {
	out := make([]string, len(sent))
	for i, s := range sent {
		out[i] = s.Text
	}
	return out
}

// Keys is n conversation keys, fmt.Sprintf(format, i) for i from 0.
func Keys(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// Post sends a webhook {"unique_id": key, "message": text, ...fields} and
// returns the status. A 2xx'd message is recorded as sent, under the
// message_id the api answered with. Safe to call from any goroutine.
func (d *Deployment) Post(key, text string, fields map[string]any) int {
	return d.PostSince(time.Now(), key, text, fields)
}

// PostSince is Post for a retry: the message counts as sent from start,
// its first attempt, which the api may have stored without answering.
func (d *Deployment) PostSince(start time.Time, key, text string, fields map[string]any) int {
	payload := map[string]any{"unique_id": key, "message": text}
	for k, v := range fields {
		payload[k] = v
	}
	body, err := json.Marshal(payload)
	if err != nil {
		d.TB.Errorf("encode payload: %v", err)
		return 0
	}
	status, resp := d.PostRaw("application/json", body)
	if status/100 != 2 {
		return status
	}
	var accepted struct {
		UniqueID  string `json:"unique_id"`
		MessageID string `json:"message_id"`
	}
	if err := json.Unmarshal(resp, &accepted); err != nil || accepted.MessageID == "" || accepted.UniqueID != key {
		d.TB.Errorf("POST /webhook %d: answer %s does not name the message (%v)", status, resp, err)
	}
	d.mu.Lock()
	_, timestamped := fields["timestamp"]
	d.sent = append(d.sent, Sent{Key: key, ID: accepted.MessageID, Text: text, Start: start, End: time.Now(), Timestamped: timestamped})
	d.mu.Unlock()
	return status
}

// Send posts a message and fails the test (without stopping it, so it is
// safe in goroutines) unless the api answers 202.
func (d *Deployment) Send(key, text string) {
	if status := d.Post(key, text, nil); status != http.StatusAccepted {
		d.TB.Errorf("POST /webhook %s %q: status %d, want 202", key, text, status)
	}
}

// SendN sends messages MsgText(key, 0) to MsgText(key, n-1), one after
// the other.
func (d *Deployment) SendN(key string, n int) {
	for i := range n {
		d.Send(key, MsgText(key, i))
	}
}

// SendConcurrently sends messages MsgText(key, 0) to MsgText(key, n-1)
// from n goroutines released at the same moment, and returns once every
// POST was answered.
func (d *Deployment) SendConcurrently(key string, n int) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d.Send(key, MsgText(key, i))
		}()
	}
	close(start)
	wg.Wait()
}

// SendEach sends each messages to every key (MsgText(key, 0) to
// MsgText(key, each-1), in order), from senders goroutines that take the
// keys one at a time, and returns once every POST was answered.
func (d *Deployment) SendEach(keys []string, each, senders int) {
	queue := make(chan string, len(keys))
	for _, k := range keys {
		queue <- k
	}
	close(queue)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range queue {
				d.SendN(key, each)
			}
		}()
	}
	wg.Wait()
}

// Stream posts to keys round-robin, one message every gap per sender, until
// stop is closed. Like a real sender it retries a POST that was not
// answered 2xx with the same message_id (the api dedupes it), for up to
// 15s. wait returns how many retries there were.
func (d *Deployment) Stream(keys []string, senders int, gap time.Duration, stop <-chan struct{}) (wait func() int64) {
	var retries atomic.Int64
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(gap):
				}
				key := keys[(s+i*senders)%len(keys)]
				text, id := fmt.Sprintf("%s from %d #%d", key, s, i), fmt.Sprintf("s%d-%d", s, i)
				first := time.Now()
				for d.PostSince(first, key, text, map[string]any{"message_id": id})/100 != 2 {
					if time.Since(first) > 15*time.Second {
						d.TB.Errorf("POST %s %s: not accepted within 15s", key, id)
						return
					}
					retries.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return func() int64 { wg.Wait(); return retries.Load() }
}

// PostRaw POSTs body to /webhook with contentType and returns the status
// and answer (status 0 and the error when the request failed).
func (d *Deployment) PostRaw(contentType string, body []byte) (int, []byte) {
	resp, err := d.Client.Post(d.URL("/webhook"), contentType, bytes.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, answer
}

// PostTo POSTs body to path with the given headers (name, value, ...) and
// returns the status and answer; a request that fails fails the test.
func (d *Deployment) PostTo(path, contentType string, body []byte, headers ...string) (int, string) {
	d.TB.Helper()
	req, err := http.NewRequest(http.MethodPost, d.URL(path), bytes.NewReader(body))
	require.NoError(d.TB, err)
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := d.Client.Do(req)
	require.NoError(d.TB, err)
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// SentSoFar is a copy of the messages sent so far.
func (d *Deployment) SentSoFar() []Sent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Sent(nil), d.sent...)
}
