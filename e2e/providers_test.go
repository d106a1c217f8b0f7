package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider/twilio"
	"github.com/lullhq/lull/internal/provider/whatsapp"
)

// postTo POSTs body to path with the given headers and returns the status
// and answer.
func (b *bundle) postTo(path, contentType string, body []byte, headers ...string) (int, string) {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url(path), bytes.NewReader(body))
	require.NoError(b.tb, err)
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.client.Do(req)
	require.NoError(b.tb, err)
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

func TestWhatsApp_SignedBatchOfMessagesBecomesOneBatch(t *testing.T) {
	const secret = "e2e-app-secret"
	b := setup(t, options{QuietWindow: burstWindow, Env: map[string]string{"WHATSAPP_APP_SECRET": secret, "WHATSAPP_VERIFY_TOKEN": "e2e-verify"}})

	resp, err := b.client.Get(b.url("/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=e2e-verify&hub.challenge=1158201444"))
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

	status, _ := b.postTo("/webhook/whatsapp", "application/json", first, whatsapp.SignatureHeader, "sha256=0000")
	require.Equal(t, http.StatusUnauthorized, status, "a wrong signature stores nothing")
	for _, body := range [][]byte{first, second, first} {
		status, answer := b.postTo("/webhook/whatsapp", "application/json", body, whatsapp.SignatureHeader, whatsapp.Sign(secret, body))
		require.Equal(t, http.StatusOK, status, answer)
	}

	got := b.waitBatches(1, 10*time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	require.Len(t, got, 1)
	bt := got[0].Batch
	assert.Equal(t, "whatsapp:200000000000002:5511900000001", bt.Key)
	require.Len(t, bt.Messages, 3, "the retried POST is deduped on wamid")
	assert.Equal(t, []string{"wamid.E2E1", "wamid.E2E2", "wamid.E2E3"}, ids(bt), "ordered by provider timestamp")
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
	b := setup(t, options{QuietWindow: window, MaxWait: 10 * time.Second, Env: map[string]string{"EVOLUTION_HEADER": "X-Lull-Token: e2e-token"}})
	upsert := func(id, text string) []byte {
		return []byte(fmt.Sprintf(`{"event":"messages.upsert","instance":"bot-01","data":{"key":{"remoteJid":"5511900000001@s.whatsapp.net","fromMe":false,"id":%q},"pushName":"Cliente","message":{"conversation":%q},"messageType":"conversation","messageTimestamp":1700000000}}`, id, text))
	}
	typing := []byte(`{"event":"presence.update","instance":"bot-01","data":{"id":"5511900000001@s.whatsapp.net","presences":{"5511900000001@s.whatsapp.net":{"lastKnownPresence":"composing"}}}}`)
	post := func(body []byte) {
		status, answer := b.postTo("/webhook/evolution", "application/json", body, "X-Lull-Token", "e2e-token")
		require.Equal(t, http.StatusOK, status, answer)
	}
	status, _ := b.postTo("/webhook/evolution", "application/json", upsert("X", "no token"))
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

	got := b.waitBatches(1, 10*time.Second)
	b.requireNoNewRequests(window + 2*pollInterval)
	require.Len(t, got, 1, "typing kept the burst open: one batch")
	bt := got[0].Batch
	assert.Equal(t, "evolution:bot-01:5511900000001@s.whatsapp.net", bt.Key)
	assert.Equal(t, []string{"EVO1", "EVO2"}, ids(bt))
	assert.Equal(t, batch.ReasonQuiet, bt.Reason)
	assert.True(t, got[0].At.After(lastTyping.Add(window)), "flushed a quiet window after the last message, not after the first")
}

func TestTwilio_SignedFormBecomesBatch(t *testing.T) {
	const token = "e2e-auth-token"
	b := setup(t, options{QuietWindow: burstWindow, Env: map[string]string{"TWILIO_AUTH_TOKEN": token}})
	form := func(sid, body string) url.Values {
		return url.Values{"MessageSid": {sid}, "From": {"whatsapp:+5511900000001"}, "To": {"whatsapp:+15550001111"},
			"Body": {body}, "NumMedia": {"0"}, "WaId": {"5511900000001"}, "ProfileName": {"Cliente"}}
	}
	post := func(f url.Values, sig string) (int, string) {
		return b.postTo("/webhook/twilio", "application/x-www-form-urlencoded", []byte(f.Encode()), "X-Twilio-Signature", sig)
	}
	fullURL := b.url("/webhook/twilio")
	status, _ := post(form("SM0", "forged"), twilio.Signature("wrong", fullURL, form("SM0", "forged")))
	require.Equal(t, http.StatusForbidden, status)
	for i, text := range []string{"oi", "tudo bem?", "é o 4471"} {
		f := form(fmt.Sprint("SM", i+1), text)
		status, answer := post(f, twilio.Signature(token, fullURL, f))
		require.Equal(t, http.StatusOK, status, answer)
		require.True(t, strings.Contains(answer, "<Response"), answer)
		time.Sleep(50 * time.Millisecond)
	}
	got := b.waitBatches(1, 10*time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	require.Len(t, got, 1)
	bt := got[0].Batch
	assert.Equal(t, "twilio:whatsapp:+15550001111:whatsapp:+5511900000001", bt.Key)
	assert.Equal(t, []string{"oi", "tudo bem?", "é o 4471"}, texts(bt))
	assert.Equal(t, []string{"SM1", "SM2", "SM3"}, ids(bt))
}

func TestImmediateFlush_CommandDoesNotWaitForTheWindow(t *testing.T) {
	b := setup(t, options{QuietWindow: 10 * time.Second, MaxWait: 20 * time.Second})
	const key = "5511999990077"
	b.send(key, "oi")
	start := time.Now()
	b.send(key, "/reset")
	got := b.waitBatches(1, 5*time.Second)
	require.Len(t, got, 1)
	assert.Less(t, got[0].At.Sub(start), 3*time.Second, "a /command flushes at once (IMMEDIATE_FLUSH default)")
	assert.Equal(t, batch.ReasonImmediate, got[0].Batch.Reason)
	assert.Equal(t, []string{"oi", "/reset"}, texts(got[0].Batch), "with what was buffered before it")
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
}
