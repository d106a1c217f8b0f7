package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider/chatwoot"
)

// A signed Chatwoot burst is one ordered batch; an agent's message never
// is one. Opening the conversation (a human took over) holds the next
// messages back; handing it back (pending) delivers them as one batch.
func TestChatwoot_SignedBurstAndHumanHandoff(t *testing.T) {
	const secret = "e2e-chatwoot-secret"
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow, Env: map[string]string{"CHATWOOT_WEBHOOK_SECRET": secret}})
	post := func(body []byte, secret string) (int, string) {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		return b.PostTo("/webhook/chatwoot", "application/json", body,
			chatwoot.SignatureHeader, chatwoot.Sign(secret, ts, body), chatwoot.TimestampHeader, ts)
	}
	message := func(id int, typ, text string) []byte {
		return []byte(fmt.Sprintf(`{"event":"message_created","id":%d,"content":%q,"created_at":%d,"message_type":%q,"private":false,"sender":{"id":42,"type":"contact"},"conversation":{"id":77,"status":"pending"},"account":{"id":3},"inbox":{"id":5}}`,
			id, text, 1700000000+id, typ))
	}
	status := func(s string) []byte {
		return []byte(fmt.Sprintf(`{"event":"conversation_status_changed","id":77,"status":%q,"account_id":3,"inbox_id":5}`, s))
	}
	code, _ := post(message(1, "incoming", "forged"), "wrong")
	require.Equal(t, http.StatusUnauthorized, code)

	for _, body := range [][]byte{message(1, "incoming", "oi"), message(2, "outgoing", "resposta do bot"), message(3, "incoming", "tudo bem?"), message(1, "incoming", "oi")} {
		code, answer := post(body, secret)
		require.Equal(t, http.StatusOK, code, answer)
	}
	got := b.WaitBatches(1, 10*time.Second)
	require.Len(t, got, 1, harness.Describe(got))
	assert.Equal(t, "chatwoot:3:77", got[0].Batch.Key)
	assert.Equal(t, []string{"1", "3"}, harness.IDs(got[0].Batch), "the bot's own message is not delivered")

	// Handoff: open pauses (sent twice: a redelivery changes nothing).
	for _, body := range [][]byte{status("open"), status("open"), message(4, "incoming", "quero falar com alguém"), message(5, "incoming", "alô?")} {
		code, answer := post(body, secret)
		require.Equal(t, http.StatusOK, code, answer)
	}
	b.RequireNoNewRequests(3 * harness.BurstWindow)
	code, answer := post(status("pending"), secret)
	require.Equal(t, http.StatusOK, code, answer)
	got = b.WaitBatches(2, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 2, harness.Describe(got))
	bt := got[1].Batch
	assert.Equal(t, []string{"4", "5"}, harness.IDs(bt))
	assert.True(t, bt.Paused)
	assert.Equal(t, batch.ReasonResumed, bt.Reason)
}
