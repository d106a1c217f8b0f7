package zapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/lullhq/lull/internal/provider"
)

// TokenHeaders may carry the token instead of the path: Z-API's own
// z-api-token (when ZAPI_TOKEN is the instance's token), or lull's.
var TokenHeaders = []string{"Z-Api-Token", "X-Lull-Token"}

// ErrToken means a request carries neither the token in its path nor in a
// header.
var ErrToken = errors.New("zapi: missing or wrong token")

// VerifyToken checks the token of a request: the first path segment after
// /webhook/zapi (suffix "/<token>[/…]") or one of TokenHeaders must equal
// token, compared in constant time. Z-API signs nothing, so this is all
// that tells its requests from anyone's.
func VerifyToken(suffix string, header func(string) string, token string) error {
	if token == "" {
		return fmt.Errorf("%w: no token is configured", ErrToken)
	}
	seg, _, _ := strings.Cut(strings.TrimPrefix(suffix, "/"), "/")
	candidates := []string{seg}
	for _, h := range TokenHeaders {
		candidates = append(candidates, header(h))
	}
	ok := 0
	for _, c := range candidates {
		if c != "" {
			ok |= subtle.ConstantTimeCompare([]byte(c), []byte(token))
		}
	}
	if ok != 1 {
		return fmt.Errorf("%w: expected /webhook/zapi/<ZAPI_TOKEN> or a %s header", ErrToken, TokenHeaders[0])
	}
	return nil
}

// Webhook serves Z-API's webhooks, at /webhook/zapi/<token> (or
// /webhook/zapi with the token in a header).
type Webhook struct{ token string }

// New is the webhook for a token (ZAPI_TOKEN; empty: the route answers 503).
func New(token string) *Webhook { return &Webhook{token: token} }

// Info implements provider.Webhook.
func (w *Webhook) Info() provider.Info {
	info := provider.Info{
		Source: Source, Subpaths: true,
		AuthStatus: http.StatusUnauthorized, AuthMessage: "missing or invalid Z-API token",
		Doc: provider.Doc{
			Name:   "Z-API",
			Routes: "`POST /webhook/zapi/<token>`, `/webhook/zapi`",
			Auth:   "`ZAPI_TOKEN` (required) in the path or a `Z-Api-Token` / `X-Lull-Token` header",
			Key:    "`zapi:<instanceId>:<phone>`",
			Typing: "`PresenceChatCallback` `COMPOSING`, `RECORDING`",
		},
	}
	if w.token == "" {
		info.Disabled = "zapi webhook not configured: set ZAPI_TOKEN"
		info.Notice = "/webhook/zapi is disabled (ZAPI_TOKEN unset): it answers 503"
	}
	return info
}

// Authenticate implements provider.Webhook.
func (w *Webhook) Authenticate(r provider.Request) error {
	if err := VerifyToken(r.Suffix, r.Header, w.token); err != nil {
		return fmt.Errorf("%w: %w", provider.ErrUnauthorized, err)
	}
	return nil
}

// Parse implements provider.Webhook.
func (w *Webhook) Parse(r provider.Request) (provider.Result, error) { return Parse(r.Body, r.Now) }
