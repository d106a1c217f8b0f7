package waha

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/lullhq/lull/internal/provider"
)

// Headers WAHA signs a webhook with, when the webhook has an hmac key.
const (
	SignatureHeader = "X-Webhook-Hmac"
	AlgorithmHeader = "X-Webhook-Hmac-Algorithm"
)

// ErrSignature means a request is not signed with the key.
var ErrSignature = errors.New("waha: invalid signature")

// Sign is X-Webhook-Hmac for body: hex HMAC-SHA512 of the raw body.
func Sign(key string, body []byte) string {
	mac := hmac.New(sha512.New, []byte(key))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks X-Webhook-Hmac (hex, either case) against the raw
// body in constant time; the algorithm header, when present, must say
// sha512.
func VerifySignature(body []byte, header, algorithm, key string) error {
	if algorithm != "" && !strings.EqualFold(strings.TrimSpace(algorithm), "sha512") {
		return fmt.Errorf("%w: %s %q is not sha512", ErrSignature, AlgorithmHeader, provider.Truncate(algorithm, 32))
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return fmt.Errorf("%w: %s is missing", ErrSignature, SignatureHeader)
	}
	got, err := hex.DecodeString(header)
	if err != nil || len(got) != sha512.Size {
		return fmt.Errorf("%w: %s is not a hex HMAC-SHA512", ErrSignature, SignatureHeader)
	}
	mac := hmac.New(sha512.New, []byte(key))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%w: %s does not match the body", ErrSignature, SignatureHeader)
	}
	return nil
}

// Webhook serves WAHA's webhook.
type Webhook struct{ key string }

// New is the webhook for an HMAC key (WAHA_HMAC_KEY; empty: requests are
// accepted unsigned).
func New(key string) *Webhook { return &Webhook{key: key} }

// Info implements provider.Webhook.
func (w *Webhook) Info() provider.Info {
	info := provider.Info{
		Source: Source, AuthStatus: http.StatusUnauthorized, AuthMessage: "missing or invalid " + SignatureHeader,
		Doc: provider.Doc{
			Name:   "WAHA",
			Routes: "`POST /webhook/waha`",
			Auth:   "`X-Webhook-Hmac` (HMAC-SHA512) with `WAHA_HMAC_KEY`",
			Key:    "`waha:<session>:<chat id>`",
			Typing: "`presence.update` `typing`, `recording`",
		},
	}
	if w.key == "" {
		info.Warning = "WAHA_HMAC_KEY is not set: /webhook/waha accepts unsigned POSTs; set it in production"
	}
	return info
}

// Authenticate implements provider.Webhook.
func (w *Webhook) Authenticate(r provider.Request) error {
	if w.key == "" {
		return nil
	}
	if err := VerifySignature(r.Body, r.Header(SignatureHeader), r.Header(AlgorithmHeader), w.key); err != nil {
		return fmt.Errorf("%w: %w", provider.ErrUnauthorized, err)
	}
	return nil
}

// Parse implements provider.Webhook.
func (w *Webhook) Parse(r provider.Request) (provider.Result, error) { return Parse(r.Body, r.Now) }
