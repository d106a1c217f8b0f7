package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
)

// The providers added with the plug-in table have their own flush
// defaults; Telegram refuses the media rule (it would split an album).
func TestLoad_NewProvidersFlushRules(t *testing.T) {
	rs := load(t, "IMMEDIATE_FLUSH", "media").MustFlushRules()
	photo := func(source string) ingest.Envelope {
		return ingest.Envelope{Key: "k", Message: batch.Message{ID: "1", Type: batch.TypeImage, Source: source, Media: &batch.Media{ID: "f"}}}
	}
	for source, flushes := range map[string]bool{"whatsapp": true, "waha": false, "zapi": false, "telegram": false, "chatwoot": false} {
		e := photo(source)
		rs.Apply(&e)
		require.Equal(t, flushes, e.FlushNow, source)
	}

	require.ErrorContains(t, loadErr(t, "IMMEDIATE_FLUSH_TELEGRAM", "command,MEDIA"), "config: IMMEDIATE_FLUSH_TELEGRAM: media is refused")
	require.NoError(t, loadErr(t, "IMMEDIATE_FLUSH_TELEGRAM", "none", "IMMEDIATE_FLUSH_WAHA", "media"))
}

func TestLoad_NewProviderSecretsAndWindows(t *testing.T) {
	c := load(t, "WAHA_HMAC_KEY", "k", "ZAPI_TOKEN", "zapi-token-0123456789", "TELEGRAM_SECRET_TOKEN", "Abc_123-x",
		"CHATWOOT_WEBHOOK_SECRET", "s", "QUIET_WINDOW_TELEGRAM", "3s", "MAX_WAIT_CHATWOOT", "30s")
	require.Equal(t, "k", c.WAHAHMACKey)
	require.Equal(t, "zapi-token-0123456789", c.ZAPIToken)
	require.Equal(t, "Abc_123-x", c.TelegramSecretToken)
	require.Equal(t, "s", c.ChatwootWebhookSecret)
	require.Equal(t, 3*time.Second, c.QuietWindowTelegram)
	require.Equal(t, 30*time.Second, c.MaxWaitChatwoot)

	require.ErrorContains(t, loadErr(t, "TELEGRAM_SECRET_TOKEN", "has spaces"), "config: TELEGRAM_SECRET_TOKEN:")
	require.ErrorContains(t, loadErr(t, "ZAPI_TOKEN", "short"), "config: ZAPI_TOKEN: must be at least 16 characters")
	require.ErrorContains(t, loadErr(t, "QUIET_WINDOW_WAHA", "-1s"), "config: QUIET_WINDOW_WAHA:")
	require.ErrorContains(t, loadErr(t, "MAX_WAIT_ZAPI", "-1s"), "config: MAX_WAIT_ZAPI:")
}
