package chatwoot

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/provider"
)

// Headers Chatwoot signs a webhook with.
const (
	SignatureHeader = "X-Chatwoot-Signature"
	TimestampHeader = "X-Chatwoot-Timestamp"
	DeliveryHeader  = "X-Chatwoot-Delivery"
)

// MaxAge is how far a request's timestamp may lie from now, either way:
// an older request, as a replayed one, is refused.
const MaxAge = 5 * time.Minute

// ErrSignature means a request is not signed with the secret, or not now.
var ErrSignature = errors.New("chatwoot: invalid signature")

// Sign is X-Chatwoot-Signature for body sent at timestamp (Unix seconds):
// "sha256=" + hex HMAC-SHA256(secret, "<timestamp>.<body>").
func Sign(secret, timestamp string, body []byte) string {
	return hmacsig.Sign(secret, signed(timestamp, body))
}

func signed(timestamp string, body []byte) []byte {
	return append([]byte(timestamp+"."), body...)
}

// VerifySignature checks the signature over the timestamp and the raw
// body, in constant time, and that the timestamp is within MaxAge of now.
func VerifySignature(body []byte, signature, timestamp, secret string, now time.Time) error {
	if secret == "" {
		return fmt.Errorf("%w: no secret is configured", ErrSignature)
	}
	timestamp = strings.TrimSpace(timestamp)
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is missing or not Unix seconds", ErrSignature, TimestampHeader)
	}
	if err := hmacsig.Verify(signed(timestamp, body), signature, secret); err != nil {
		return fmt.Errorf("%w: %s %w", ErrSignature, SignatureHeader, err)
	}
	if age := now.Unix() - sec; age > int64(MaxAge/time.Second) || -age > int64(MaxAge/time.Second) {
		return fmt.Errorf("%w: %s is more than %s from now", ErrSignature, TimestampHeader, MaxAge)
	}
	return nil
}

// Webhook serves Chatwoot's webhooks.
type Webhook struct{ secret string }

// New is the webhook for the webhook's secret (CHATWOOT_WEBHOOK_SECRET;
// empty: the route answers 503).
func New(secret string) *Webhook { return &Webhook{secret: secret} }

// Info implements provider.Webhook.
func (w *Webhook) Info() provider.Info {
	info := provider.Info{
		Source: Source, AuthStatus: http.StatusUnauthorized, AuthMessage: "missing, invalid or stale " + SignatureHeader,
		Doc: provider.Doc{
			Name:   "Chatwoot",
			Routes: "`POST /webhook/chatwoot`",
			Auth:   "`X-Chatwoot-Signature` over `X-Chatwoot-Timestamp` and the body with `CHATWOOT_WEBHOOK_SECRET` (required), at most 5 minutes old",
			Key:    "`chatwoot:<account.id>:<conversation.id>`",
			Typing: "—; status `open` pauses, `pending` resumes",
		},
	}
	if w.secret == "" {
		info.Disabled = "chatwoot webhook not configured: set CHATWOOT_WEBHOOK_SECRET"
		info.Notice = "/webhook/chatwoot is disabled (CHATWOOT_WEBHOOK_SECRET unset): it answers 503"
	}
	return info
}

// Authenticate implements provider.Webhook.
func (w *Webhook) Authenticate(r provider.Request) error {
	if err := VerifySignature(r.Body, r.Header(SignatureHeader), r.Header(TimestampHeader), w.secret, r.Now); err != nil {
		return fmt.Errorf("%w: %w", provider.ErrUnauthorized, err)
	}
	return nil
}

// Parse implements provider.Webhook.
func (w *Webhook) Parse(r provider.Request) (provider.Result, error) { return Parse(r.Body, r.Now) }
