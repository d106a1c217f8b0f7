package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
)

// Z-API's burst, with the token in the path, is one ordered batch; without
// the token nothing is stored.
func TestZAPI_TokenedBurstBecomesOneOrderedBatch(t *testing.T) {
	const token = "e2e-zapi-token-0123"
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow, Env: map[string]string{"ZAPI_TOKEN": token}})
	received := func(id string, ms int64, content string) []byte {
		return []byte(fmt.Sprintf(`{"type":"ReceivedCallback","instanceId":"INST1","messageId":%q,"phone":"5511900000001","fromMe":false,"momment":%d,"connectedPhone":"5511999990000","senderName":"Cliente",%s}`, id, ms, content))
	}
	status, _ := b.PostTo("/webhook/zapi/wrong-token-000000", "application/json", received("Z0", 1700000000000, `"text":{"message":"x"}`))
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = b.PostTo("/webhook/zapi", "application/json", received("Z0", 1700000000000, `"text":{"message":"x"}`))
	require.Equal(t, http.StatusUnauthorized, status)

	bodies := [][]byte{
		received("Z1", 1700000000000, `"text":{"message":"oi"}`),
		[]byte(`{"type":"PresenceChatCallback","phone":"5511900000001","status":"COMPOSING","instanceId":"INST1"}`),
		received("Z2", 1700000000500, `"audio":{"ptt":true,"audioUrl":"https://z.invalid/a.ogg","mimeType":"audio/ogg"}`),
		received("Z3", 1700000001000, `"text":{"message":"é o 4471"}`),
	}
	for i, body := range bodies {
		path, headers := "/webhook/zapi/"+token, []string(nil)
		if i%2 == 1 {
			path, headers = "/webhook/zapi", []string{"Z-Api-Token", token}
		}
		status, answer := b.PostTo(path, "application/json", body, headers...)
		require.Equal(t, http.StatusOK, status, answer)
	}
	got := b.WaitBatches(1, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1, harness.Describe(got))
	bt := got[0].Batch
	assert.Equal(t, "zapi:INST1:5511900000001", bt.Key)
	assert.Equal(t, []string{"Z1", "Z2", "Z3"}, harness.IDs(bt))
	require.NotNil(t, bt.Messages[1].Media)
	assert.True(t, bt.Messages[1].Media.Voice)
}
