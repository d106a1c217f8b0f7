package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
)

func TestLoad_ConversationControl(t *testing.T) {
	c := load(t, "QUIET_WINDOW_WHATSAPP", "3s", "MAX_WAIT_GENERIC", "20s", "QUIET_WINDOW_MODE", "adaptive",
		"API_TOKEN", "bot-api-token-0123456789", "PUBLIC_URL", "https://lull.example.com/base/", "FLUSH_WORDS", "pronto, é isso")
	o := c.StoreOptions(nil)
	require.Equal(t, map[string]store.Window{"whatsapp": {Quiet: 3 * time.Second}, "generic": {MaxWait: 20 * time.Second}}, o.Windows)
	require.Equal(t, &store.Adaptive{Min: 2 * time.Second, K: 4}, o.Adaptive)
	require.Equal(t, 30*time.Second, o.MediaQuietWindow)
	require.Equal(t, time.Hour, o.KeepDelivered, "kept for a discard with the API")
	require.Equal(t, "https://lull.example.com/base/v1/batches/", o.StatusURL)
	require.Equal(t, []string{"pronto", " é isso"}, c.FlushWords)
}

func TestLoad_NoConversationAPINothingKept(t *testing.T) {
	plain := load(t).StoreOptions(nil)
	require.Zero(t, plain.KeepDelivered, "nothing kept without the API")
	require.Empty(t, plain.StatusURL)
	require.Nil(t, plain.Adaptive)
	require.Equal(t, "/v1/batches/", load(t, "API_TOKEN", "bot-api-token-0123456789").StatusURLPrefix(), "relative without PUBLIC_URL")
}

func TestLoad_ConversationControlRefusals(t *testing.T) {
	for _, kv := range [][]string{
		{"QUIET_WINDOW_MODE", "smart"},
		{"QUIET_WINDOW_MODE", "adaptive", "QUIET_WINDOW_MIN", "1m"},
		{"QUIET_WINDOW_MODE", "adaptive", "QUIET_WINDOW_K", "0"},
		{"QUIET_WINDOW_TWILIO", "-1s"},
		{"MAX_WAIT_EVOLUTION", "-1s"},
		{"QUIET_WINDOW_MEDIA", "0s"},
		{"FLUSH_WORDS", "pronto", "CANCEL_WORDS", "PRONTO!"},
		{"API_TOKEN", "short"},
		{"DISCARD_WINDOW", "10ms"},
	} {
		t.Run(kv[len(kv)-2], func(t *testing.T) {
			err := loadErr(t, kv...)
			require.Error(t, err, "%v", kv)
			require.Contains(t, err.Error(), kv[len(kv)-2], "%v names the variable", kv)
		})
	}
}
