package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/testenv"
)

func TestInvalidRequests_StoreNothing(t *testing.T) {
	// No worker yet: whatever the api publishes stays in the queue to be counted.
	b := setup(t, options{NoWorkers: true, Env: map[string]string{"BODY_LIMIT": "2048"}})
	const key = "5511999990008"
	cases := []struct {
		name, contentType, body string
		status                  int
		field                   string // the field a 422 must name
	}{
		{"malformed JSON", "application/json", `{"unique_id": "` + key + `", "message": `, http.StatusBadRequest, ""},
		{"not an object", "application/json", `["` + key + `", "hi"]`, http.StatusBadRequest, ""},
		{"missing unique_id", "application/json", `{"message": "hi"}`, http.StatusUnprocessableEntity, "unique_id"},
		{"empty unique_id", "application/json", `{"unique_id": "", "message": "hi"}`, http.StatusUnprocessableEntity, "unique_id"},
		{"missing message", "application/json", `{"unique_id": "` + key + `"}`, http.StatusUnprocessableEntity, "message"},
		{"empty message", "application/json", `{"unique_id": "` + key + `", "message": ""}`, http.StatusUnprocessableEntity, "message"},
		{"blank message", "application/json", `{"unique_id": "` + key + `", "message": "  \n "}`, http.StatusUnprocessableEntity, "message"},
		{"wrong content type", "text/plain", `{"unique_id": "` + key + `", "message": "hi"}`, http.StatusUnsupportedMediaType, ""},
		{"no content type", "", `{"unique_id": "` + key + `", "message": "hi"}`, http.StatusUnsupportedMediaType, ""},
		{"body over BODY_LIMIT", "application/json", `{"unique_id": "` + key + `", "message": "` + strings.Repeat("a", 4096) + `"}`, http.StatusRequestEntityTooLarge, ""},
	}
	for _, c := range cases {
		status, answer := b.postRaw(c.contentType, []byte(c.body))
		if !assert.Equal(t, c.status, status, "%s: answer %s", c.name, answer) {
			continue
		}
		var body struct {
			Error string `json:"error"`
			Field string `json:"field"`
		}
		if assert.NoError(t, json.Unmarshal(answer, &body), "%s: answer %q is not JSON", c.name, answer) {
			assert.NotEmpty(t, body.Error, "%s: answer %s has no error", c.name, answer)
		}
		if c.field != "" {
			assert.Equal(t, c.field, body.Field, "%s: the 422 names the field", c.name)
			assert.Contains(t, body.Error, c.field, "%s: the error message names the field", c.name)
		}
	}

	messages, _, err := b.queueState()
	require.NoError(t, err)
	assert.Zero(t, messages, "rejected requests reached the inbound queue")

	// Now a worker: it must find nothing to buffer or deliver.
	b.startWorker()
	b.waitConsumers(1)
	b.requireNoNewRequests(3 * b.opts.QuietWindow)
	assert.Empty(t, testenv.Keys(t.Context(), b.redis, b.ns), "rejected requests left Redis keys")

	// The control: the same deployment does deliver a valid message.
	b.send(key, "hi")
	got := b.waitDelivered(10 * time.Second)
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
	assert.Len(t, got, 1)
}

func TestProviderTimestamps_OrderTheBatch(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow})
	const key = "5511999990015"
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	sends := []struct {
		text string
		ts   any // absent when nil
	}{
		{"third", base.Add(3 * time.Second).In(time.FixedZone("BRT", -3*3600)).Format(time.RFC3339)},
		{"first", base.Add(time.Second).Format(time.RFC3339Nano)},
		{"second", base.Add(2 * time.Second).Unix()}, // Unix seconds, as a number
		{"last, by receipt", nil},
	}
	for _, s := range sends {
		fields := map[string]any{}
		if s.ts != nil {
			fields["timestamp"] = s.ts
		}
		require.Equal(t, http.StatusAccepted, b.post(key, s.text, fields))
	}
	got := b.waitDelivered(10 * time.Second)
	require.Len(t, got, 1)
	bt := got[0].Batch
	assert.Equal(t, []string{"first", "second", "third", "last, by receipt"}, texts(bt), "ordered by provider timestamp")
	wantTS := []string{batch.FormatTime(base.Add(time.Second)), batch.FormatTime(base.Add(2 * time.Second)), batch.FormatTime(base.Add(3 * time.Second)), ""}
	for i, m := range bt.Messages {
		assert.Equal(t, wantTS[i], m.Timestamp, "message %q: timestamp in UTC, milliseconds", m.Text)
	}
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
}

func TestNumericUniqueID_SameConversationAsString(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow})
	require.Equal(t, http.StatusAccepted, b.post("5511999990017", "as a string", nil))
	status, answer := b.postRaw("application/json", []byte(`{"unique_id": 5511999990017, "message": "as a number"}`))
	require.Equal(t, http.StatusAccepted, status, "answer %s", answer)
	got := b.waitBatches(1, 10*time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	require.Len(t, got, 1, "one conversation, one batch:%s", describe(got))
	assert.Equal(t, "5511999990017", got[0].Batch.Key)
	assert.Equal(t, []string{"as a string", "as a number"}, texts(got[0].Batch))
}
