package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/provider/telegram"
)

// A Telegram burst with an album, sent with the secret token, is one
// ordered batch; Telegram's retry of an update is stored once.
func TestTelegram_BurstWithAlbumBecomesOneOrderedBatch(t *testing.T) {
	const secret = "e2e_telegram-secret"
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow, Env: map[string]string{"TELEGRAM_SECRET_TOKEN": secret}})
	update := func(id, date int, content string) []byte {
		return []byte(fmt.Sprintf(`{"update_id":%d,"message":{"message_id":%d,"from":{"id":111,"is_bot":false,"first_name":"Cliente"},"chat":{"id":111,"type":"private"},"date":%d,%s}}`, id, id, date, content))
	}
	post := func(body []byte, secret string) (int, string) {
		return b.PostTo("/webhook/telegram", "application/json", body, telegram.SecretHeader, secret)
	}
	first := update(501, 1700000000, `"text":"oi"`)
	status, _ := post(first, "wrong")
	require.Equal(t, http.StatusUnauthorized, status)

	photo := func(id int, file string) []byte {
		return update(id, 1700000001, `"media_group_id":"ALB1","photo":[{"file_id":"`+file+`_s","file_unique_id":"u","width":90,"height":90},{"file_id":"`+file+`","file_unique_id":"v","width":900,"height":900}]`)
	}
	for _, body := range [][]byte{first, photo(502, "P1"), photo(503, "P2"), update(504, 1700000002, `"text":"são essas"`), first} {
		status, answer := post(body, secret)
		require.Equal(t, http.StatusOK, status, answer)
	}
	got := b.WaitBatches(1, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1, harness.Describe(got))
	bt := got[0].Batch
	assert.Equal(t, "telegram:111", bt.Key)
	assert.Equal(t, []string{"501", "502", "503", "504"}, harness.IDs(bt))
	assert.Equal(t, "P1", bt.Messages[1].Media.ID, "the largest photo size")
	assert.Equal(t, "P2", bt.Messages[2].Media.ID)
}
