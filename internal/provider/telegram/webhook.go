package telegram

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"

	"github.com/lullhq/lull/internal/provider"
)

// SecretHeader echoes the secret_token the bot registered with setWebhook.
const SecretHeader = "X-Telegram-Bot-Api-Secret-Token"

// ErrSecret means a request does not carry the secret token.
var ErrSecret = errors.New("telegram: missing or wrong secret token")

// VerifySecret compares the header with the secret token in constant time.
func VerifySecret(header, secret string) error {
	if secret == "" || header == "" {
		return fmt.Errorf("%w: %s is missing", ErrSecret, SecretHeader)
	}
	if subtle.ConstantTimeCompare([]byte(header), []byte(secret)) != 1 {
		return fmt.Errorf("%w: %s does not match", ErrSecret, SecretHeader)
	}
	return nil
}

// Webhook serves a bot's webhook.
type Webhook struct{ secret string }

// New is the webhook for the bot's secret token (TELEGRAM_SECRET_TOKEN;
// empty: the route answers 503).
func New(secret string) *Webhook { return &Webhook{secret: secret} }

// Info implements provider.Webhook.
func (w *Webhook) Info() provider.Info {
	info := provider.Info{
		Source: Source, AuthStatus: http.StatusUnauthorized, AuthMessage: "missing or invalid " + SecretHeader,
		Doc: provider.Doc{
			Name:   "Telegram Bot API",
			Routes: "`POST /webhook/telegram`",
			Auth:   "`X-Telegram-Bot-Api-Secret-Token` equal to `TELEGRAM_SECRET_TOKEN` (required)",
			Key:    "`telegram:<chat.id>`",
			Typing: "—",
		},
	}
	if w.secret == "" {
		info.Disabled = "telegram webhook not configured: set TELEGRAM_SECRET_TOKEN"
		info.Notice = "/webhook/telegram is disabled (TELEGRAM_SECRET_TOKEN unset): it answers 503"
	}
	return info
}

// Authenticate implements provider.Webhook.
func (w *Webhook) Authenticate(r provider.Request) error {
	if err := VerifySecret(r.Header(SecretHeader), w.secret); err != nil {
		return fmt.Errorf("%w: %w", provider.ErrUnauthorized, err)
	}
	return nil
}

// Parse implements provider.Webhook.
func (w *Webhook) Parse(r provider.Request) (provider.Result, error) { return Parse(r.Body, r.Now) }
