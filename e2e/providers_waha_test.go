package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider/waha"
)

// A signed WAHA burst — a group's text, an image, typing, the session's own
// reply (skipped) and a retry — is one batch, ordered, deduped.
func TestWAHA_SignedBurstBecomesOneOrderedBatch(t *testing.T) {
	const key = "e2e-waha-key"
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow, Env: map[string]string{"WAHA_HMAC_KEY": key}})
	msg := func(event, id string, ts int, fromMe bool, extra string) []byte {
		return []byte(fmt.Sprintf(`{"event":%q,"session":"default","me":{"id":"5511999990000@c.us"},"engine":"NOWEB","payload":{"id":%q,"timestamp":%d,"from":"120363000000000009@g.us","participant":"5511900000001@c.us","fromMe":%t,%s}}`,
			event, id, ts, fromMe, extra))
	}
	post := func(body []byte, sig string) (int, string) {
		return b.PostTo("/webhook/waha", "application/json", body, waha.SignatureHeader, sig, waha.AlgorithmHeader, "sha512")
	}
	first := msg("message", "W1", 1700000000, false, `"body":"oi grupo","hasMedia":false`)
	status, _ := post(first, waha.Sign("wrong", first))
	require.Equal(t, http.StatusUnauthorized, status, "a wrong signature stores nothing")

	typing := []byte(`{"event":"presence.update","session":"default","payload":{"id":"120363000000000009@g.us","presences":[{"participant":"5511900000001@c.us","lastKnownPresence":"typing"}]}}`)
	for _, body := range [][]byte{
		first,
		msg("message", "W2", 1700000001, false, `"body":"olha","hasMedia":true,"media":{"url":"http://waha.invalid/f.jpg","mimetype":"image/jpeg"}`),
		typing,
		msg("message.any", "W3", 1700000002, true, `"body":"resposta do bot"`),
		msg("message.any", "W4", 1700000003, false, `"body":"e aí?"`),
		first, // a retry
	} {
		status, answer := post(body, waha.Sign(key, body))
		require.Equal(t, http.StatusOK, status, answer)
	}

	got := b.WaitBatches(1, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1, harness.Describe(got))
	bt := got[0].Batch
	assert.Equal(t, "waha:default:120363000000000009@g.us", bt.Key)
	assert.Equal(t, []string{"W1", "W2", "W4"}, harness.IDs(bt), "ordered, fromMe skipped, the retry deduped")
	assert.Equal(t, batch.TypeImage, bt.Messages[1].Type)
	for _, m := range bt.Messages {
		assert.Equal(t, "waha", m.Source)
		assert.Equal(t, "5511900000001@c.us", m.From, "the participant")
	}
}
