package whatsapp

import (
	"fmt"
	"net/http"

	"github.com/lullhq/lull/internal/provider"
)

// Webhook serves Meta's webhook: the GET handshake and signed POSTs.
type Webhook struct {
	verifyToken string
	secrets     []string
}

// New is the webhook for a verify token (WHATSAPP_VERIFY_TOKEN; empty
// refuses every handshake) and the app secrets (WHATSAPP_APP_SECRET; none:
// POSTs are accepted unsigned).
func New(verifyToken string, secrets []string) *Webhook {
	return &Webhook{verifyToken: verifyToken, secrets: secrets}
}

// Info implements provider.Webhook.
func (w *Webhook) Info() provider.Info {
	info := provider.Info{
		Source: Source, AuthStatus: http.StatusUnauthorized, AuthMessage: "missing or invalid " + SignatureHeader,
		Doc: provider.Doc{
			Name:   "Meta WhatsApp Cloud API",
			Routes: "`GET`, `POST /webhook/whatsapp`",
			Auth:   "`X-Hub-Signature-256` with `WHATSAPP_APP_SECRET`; handshake `WHATSAPP_VERIFY_TOKEN`",
			Key:    "`whatsapp:<phone_number_id>:<sender>`",
			Typing: "—",
		},
	}
	if len(w.secrets) == 0 {
		info.Warning = "WHATSAPP_APP_SECRET is not set: /webhook/whatsapp accepts unsigned POSTs; set it in production"
	}
	return info
}

// Authenticate implements provider.Webhook.
func (w *Webhook) Authenticate(r provider.Request) error {
	if len(w.secrets) == 0 {
		return nil
	}
	if err := VerifySignature(r.Body, r.Header(SignatureHeader), w.secrets...); err != nil {
		return fmt.Errorf("%w: %w", provider.ErrUnauthorized, err)
	}
	return nil
}

// Parse implements provider.Webhook.
func (w *Webhook) Parse(r provider.Request) (provider.Result, error) { return Parse(r.Body, r.Now) }

// Handshake implements provider.Handshaker.
func (w *Webhook) Handshake(r provider.Request) (string, error) {
	return VerifyChallenge(r.Query("hub.mode"), r.Query("hub.verify_token"), r.Query("hub.challenge"), w.verifyToken)
}
