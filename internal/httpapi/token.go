package httpapi

import (
	"crypto/subtle"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// HeaderWebhookToken carries WEBHOOK_TOKEN for senders that cannot set an
// Authorization header (many no-code tools can only add a custom header).
const HeaderWebhookToken = "X-Lull-Token"

var errWebhookToken = fiber.NewError(fiber.StatusUnauthorized,
	"missing or wrong webhook token (Authorization: Bearer <WEBHOOK_TOKEN>, or "+HeaderWebhookToken+")")

// bearerIs reports whether the request carries "Authorization: Bearer
// <want>", compared in constant time.
func bearerIs(c *fiber.Ctx, want string) bool {
	got, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
	return ok && equalSecret(got, want)
}

// equalSecret compares a presented secret with the configured one in
// constant time; an empty configured secret never matches.
func equalSecret(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// webhookToken guards POST /webhook when WEBHOOK_TOKEN is set.
func (h *handlers) webhookToken(c *fiber.Ctx) error {
	tok := h.opts.WebhookToken
	if tok == "" || bearerIs(c, tok) || equalSecret(c.Get(HeaderWebhookToken), tok) {
		return c.Next()
	}
	return errWebhookToken
}
