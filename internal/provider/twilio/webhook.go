package twilio

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/redact"
)

// Webhook serves Twilio's form-encoded webhook, signed over the URL it
// called and the form.
type Webhook struct{ authToken string }

// New is the webhook for an Auth Token (TWILIO_AUTH_TOKEN; empty: the route
// answers 503).
func New(authToken string) *Webhook { return &Webhook{authToken: authToken} }

// Info implements provider.Webhook.
func (w *Webhook) Info() provider.Info {
	info := provider.Info{
		Source: Source, Form: true,
		AuthStatus: http.StatusForbidden, AuthMessage: "missing or invalid " + SignatureHeader,
		Reply: TwiML, ReplyType: "text/xml; charset=utf-8",
		Doc: provider.Doc{
			Name:   "Twilio (WhatsApp and SMS)",
			Routes: "`POST /webhook/twilio` (form-encoded)",
			Auth:   "`X-Twilio-Signature` with `TWILIO_AUTH_TOKEN` (required), over `PUBLIC_URL`",
			Key:    "`twilio:<To>:<From>`",
			Typing: "—",
		},
	}
	if w.authToken == "" {
		info.Disabled = "twilio webhook not configured: set TWILIO_AUTH_TOKEN"
		info.Notice = "/webhook/twilio is disabled (TWILIO_AUTH_TOKEN unset): it answers 503"
	}
	return info
}

// Authenticate implements provider.Webhook: the signature is checked over
// the raw body before any field of it is read.
func (w *Webhook) Authenticate(r provider.Request) error {
	_, err := Authenticate(w.authToken, r.URL, r.Body, r.Header(SignatureHeader))
	switch {
	case errors.Is(err, ErrSignature):
		return fmt.Errorf("%w: %w (url %s)", provider.ErrUnauthorized, err, redact.URL(r.URL))
	case err != nil:
		return fmt.Errorf("%w: %v", ingest.ErrMalformed, err)
	}
	return nil
}

// Parse implements provider.Webhook; the body passed Authenticate, so it
// decodes.
func (w *Webhook) Parse(r provider.Request) (provider.Result, error) {
	form, err := url.ParseQuery(string(r.Body))
	if err != nil {
		return provider.Result{}, fmt.Errorf("%w: %v", ingest.ErrMalformed, err)
	}
	return Parse(form, r.Now)
}
