package evolution

import (
	"fmt"
	"net/http"

	"github.com/lullhq/lull/internal/provider"
)

// Webhook serves Evolution's webhook, at /webhook/evolution and, for
// byEvents, every /webhook/evolution/<event> (the event is read from the
// body).
type Webhook struct{ auth Auth }

// New is the webhook with its checks (the zero Auth accepts everything).
func New(auth Auth) *Webhook { return &Webhook{auth: auth} }

// Info implements provider.Webhook.
func (w *Webhook) Info() provider.Info {
	info := provider.Info{
		Source: Source, Subpaths: true,
		AuthStatus: http.StatusUnauthorized, AuthMessage: "missing or invalid Evolution webhook credentials",
		Doc: provider.Doc{
			Name:   "Evolution API v2",
			Routes: "`POST /webhook/evolution`, `/webhook/evolution/<event>`",
			Auth:   "`EVOLUTION_HEADER` and/or `EVOLUTION_JWT_KEY` (optional)",
			Key:    "`evolution:<instance>:<chat JID>`",
			Typing: "`presence.update` `composing`, `recording`",
		},
	}
	if !w.auth.Enabled() {
		info.Notice = "/webhook/evolution is unauthenticated (EVOLUTION_HEADER and EVOLUTION_JWT_KEY unset)"
	}
	return info
}

// Authenticate implements provider.Webhook.
func (w *Webhook) Authenticate(r provider.Request) error {
	if err := w.auth.Verify(r.Header, r.Now); err != nil {
		return fmt.Errorf("%w: %w", provider.ErrUnauthorized, err)
	}
	return nil
}

// Parse implements provider.Webhook.
func (w *Webhook) Parse(r provider.Request) (provider.Result, error) { return Parse(r.Body, r.Now) }
