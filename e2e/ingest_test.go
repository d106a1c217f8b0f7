package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/provider/twilio"
	"github.com/lullhq/lull/internal/provider/whatsapp"
	"github.com/lullhq/lull/internal/testenv"
)

func TestInvalidRequests_StoreNothing(t *testing.T) {
	// No worker yet: whatever the api publishes stays in the queue to be counted.
	b := harness.Setup(t, harness.Options{NoWorkers: true, Env: map[string]string{"BODY_LIMIT": "2048"}})
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
		status, answer := b.PostRaw(c.contentType, []byte(c.body))
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

	messages, _, err := b.QueueState()
	require.NoError(t, err)
	assert.Zero(t, messages, "rejected requests reached the inbound queue")

	// Now a worker: it must find nothing to buffer or deliver.
	b.StartWorker()
	b.WaitConsumers(1)
	b.RequireNoNewRequests(3 * b.Opts.QuietWindow)
	// The processes record SHARDS (<ns>:shards) when they start; nothing else may be there.
	left := slices.DeleteFunc(testenv.Keys(t.Context(), b.Redis, b.NS), func(k string) bool { return k == keys.New(b.NS).ShardsKey() })
	assert.Empty(t, left, "rejected requests left Redis keys")

	// The control: the same deployment does deliver a valid message.
	b.Send(key, "hi")
	got := b.WaitDelivered(10 * time.Second)
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
	assert.Len(t, got, 1)
}

func TestProviderTimestamps_OrderTheBatch(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
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
		require.Equal(t, http.StatusAccepted, b.Post(key, s.text, fields))
	}
	got := b.WaitDelivered(10 * time.Second)
	require.Len(t, got, 1)
	bt := got[0].Batch
	assert.Equal(t, []string{"first", "second", "third", "last, by receipt"}, harness.Texts(bt), "ordered by provider timestamp")
	wantTS := []string{batch.FormatTime(base.Add(time.Second)), batch.FormatTime(base.Add(2 * time.Second)), batch.FormatTime(base.Add(3 * time.Second)), ""}
	for i, m := range bt.Messages {
		assert.Equal(t, wantTS[i], m.Timestamp, "message %q: timestamp in UTC, milliseconds", m.Text)
	}
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
}

func TestNumericUniqueID_SameConversationAsString(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
	require.Equal(t, http.StatusAccepted, b.Post("5511999990017", "as a string", nil))
	status, answer := b.PostRaw("application/json", []byte(`{"unique_id": 5511999990017, "message": "as a number"}`))
	require.Equal(t, http.StatusAccepted, status, "answer %s", answer)
	got := b.WaitBatches(1, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1, "one conversation, one batch:%s", harness.Describe(got))
	assert.Equal(t, "5511999990017", got[0].Batch.Key)
	assert.Equal(t, []string{"as a string", "as a number"}, harness.Texts(got[0].Batch))
}

func TestWhatsApp_SignedBatchOfMessagesBecomesOneBatch(t *testing.T) {
	const secret = "e2e-app-secret"
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow, Env: map[string]string{"WHATSAPP_APP_SECRET": secret, "WHATSAPP_VERIFY_TOKEN": "e2e-verify"}})

	resp, err := b.Client.Get(b.URL("/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=e2e-verify&hub.challenge=1158201444"))
	require.NoError(t, err)
	challenge, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "1158201444", string(challenge))

	// Meta batches: one POST with a text and a voice note, one with a reply
	// (and a status, which is ignored), and a retry of the first POST.
	first := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"200000000000002"},"contacts":[{"profile":{"name":"Cliente"},"wa_id":"5511900000001"}],"messages":[` +
		`{"from":"5511900000001","id":"wamid.E2E1","timestamp":"1700000000","type":"text","text":{"body":"oi"}},` +
		`{"from":"5511900000001","id":"wamid.E2E2","timestamp":"1700000003","type":"audio","audio":{"mime_type":"audio/ogg; codecs=opus","id":"300000000000003","voice":true}}]}}]}]}`)
	second := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"200000000000002"},` +
		`"statuses":[{"id":"wamid.OUT1","status":"read","timestamp":"1700000004","recipient_id":"5511900000001"}],"messages":[` +
		`{"from":"5511900000001","id":"wamid.E2E3","timestamp":"1700000005","type":"text","text":{"body":"é o 4471"},"context":{"from":"15550001111","id":"wamid.OUT1"}}]}}]}]}`)

	status, _ := b.PostTo("/webhook/whatsapp", "application/json", first, whatsapp.SignatureHeader, "sha256=0000")
	require.Equal(t, http.StatusUnauthorized, status, "a wrong signature stores nothing")
	for _, body := range [][]byte{first, second, first} {
		status, answer := b.PostTo("/webhook/whatsapp", "application/json", body, whatsapp.SignatureHeader, hmacsig.Sign(secret, body))
		require.Equal(t, http.StatusOK, status, answer)
	}

	got := b.WaitBatches(1, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1)
	bt := got[0].Batch
	assert.Equal(t, "whatsapp:200000000000002:5511900000001", bt.Key)
	require.Len(t, bt.Messages, 3, "the retried POST is deduped on wamid")
	assert.Equal(t, []string{"wamid.E2E1", "wamid.E2E2", "wamid.E2E3"}, harness.IDs(bt), "ordered by provider timestamp")
	assert.Equal(t, batch.TypeAudio, bt.Messages[1].Type)
	require.NotNil(t, bt.Messages[1].Media)
	assert.True(t, bt.Messages[1].Media.Voice)
	assert.Equal(t, "wamid.OUT1", bt.Messages[2].ReplyTo)
	for _, m := range bt.Messages {
		assert.Equal(t, "whatsapp", m.Source)
		assert.Equal(t, "5511900000001", m.From)
	}
}

func TestEvolution_TypingExtendsTheQuietWindow(t *testing.T) {
	const window = time.Second
	b := harness.Setup(t, harness.Options{QuietWindow: window, MaxWait: 10 * time.Second, Env: map[string]string{"EVOLUTION_HEADER": "X-Lull-Token: e2e-token"}})
	upsert := func(id, text string) []byte {
		return []byte(fmt.Sprintf(`{"event":"messages.upsert","instance":"bot-01","data":{"key":{"remoteJid":"5511900000001@s.whatsapp.net","fromMe":false,"id":%q},"pushName":"Cliente","message":{"conversation":%q},"messageType":"conversation","messageTimestamp":1700000000}}`, id, text))
	}
	typing := []byte(`{"event":"presence.update","instance":"bot-01","data":{"id":"5511900000001@s.whatsapp.net","presences":{"5511900000001@s.whatsapp.net":{"lastKnownPresence":"composing"}}}}`)
	post := func(body []byte) {
		status, answer := b.PostTo("/webhook/evolution", "application/json", body, "X-Lull-Token", "e2e-token")
		require.Equal(t, http.StatusOK, status, answer)
	}
	status, _ := b.PostTo("/webhook/evolution", "application/json", upsert("X", "no token"))
	require.Equal(t, http.StatusUnauthorized, status)

	post(upsert("EVO1", "queria saber do meu pedido"))
	// The user keeps typing for two windows without sending anything (a
	// typing event every quarter window: margin for a loaded machine).
	var lastTyping time.Time
	for range 8 {
		time.Sleep(window / 4)
		post(typing)
		lastTyping = time.Now()
	}
	post(upsert("EVO2", "é o 4471"))

	got := b.WaitBatches(1, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1, "typing kept the burst open: one batch")
	bt := got[0].Batch
	assert.Equal(t, "evolution:bot-01:5511900000001@s.whatsapp.net", bt.Key)
	assert.Equal(t, []string{"EVO1", "EVO2"}, harness.IDs(bt))
	assert.Equal(t, batch.ReasonQuiet, bt.Reason)
	assert.True(t, got[0].At.After(lastTyping.Add(window)), "flushed a quiet window after the last message, not after the first")
}

func TestTwilio_SignedFormBecomesBatch(t *testing.T) {
	const token = "e2e-auth-token"
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow, Env: map[string]string{"TWILIO_AUTH_TOKEN": token}})
	form := func(sid, body string) url.Values {
		return url.Values{"MessageSid": {sid}, "From": {"whatsapp:+5511900000001"}, "To": {"whatsapp:+15550001111"},
			"Body": {body}, "NumMedia": {"0"}, "WaId": {"5511900000001"}, "ProfileName": {"Cliente"}}
	}
	post := func(f url.Values, sig string) (int, string) {
		return b.PostTo("/webhook/twilio", "application/x-www-form-urlencoded", []byte(f.Encode()), "X-Twilio-Signature", sig)
	}
	fullURL := b.URL("/webhook/twilio")
	status, _ := post(form("SM0", "forged"), twilio.Signature("wrong", fullURL, form("SM0", "forged")))
	require.Equal(t, http.StatusForbidden, status)
	for i, text := range []string{"oi", "tudo bem?", "é o 4471"} {
		f := form(fmt.Sprint("SM", i+1), text)
		status, answer := post(f, twilio.Signature(token, fullURL, f))
		require.Equal(t, http.StatusOK, status, answer)
		require.True(t, strings.Contains(answer, "<Response"), answer)
		time.Sleep(50 * time.Millisecond)
	}
	got := b.WaitBatches(1, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1)
	bt := got[0].Batch
	assert.Equal(t, "twilio:whatsapp:+15550001111:whatsapp:+5511900000001", bt.Key)
	assert.Equal(t, []string{"oi", "tudo bem?", "é o 4471"}, harness.Texts(bt))
	assert.Equal(t, []string{"SM1", "SM2", "SM3"}, harness.IDs(bt))
}

func TestImmediateFlush_CommandDoesNotWaitForTheWindow(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: 10 * time.Second, MaxWait: 20 * time.Second})
	const key = "5511999990077"
	b.Send(key, "oi")
	start := time.Now()
	b.Send(key, "/reset")
	got := b.WaitBatches(1, 5*time.Second)
	require.Len(t, got, 1)
	assert.Less(t, got[0].At.Sub(start), 3*time.Second, "a /command flushes at once (IMMEDIATE_FLUSH default)")
	assert.Equal(t, batch.ReasonImmediate, got[0].Batch.Reason)
	assert.Equal(t, []string{"oi", "/reset"}, harness.Texts(got[0].Batch), "with what was buffered before it")
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
}
