package httpapi

import "github.com/gofiber/fiber/v2"

// Metrics counts what the webhook routes do (metrics.API is one). Its
// methods are called on the request's goroutine: they must be quick.
type Metrics interface {
	// WebhookRequest: one request to a webhook route of source
	// ("generic" for POST /webhook, else the provider) was answered with
	// status.
	WebhookRequest(source string, status int)
	// MessagesAccepted: the broker confirmed n messages (typing events
	// included) of source.
	MessagesAccepted(source string, n int)
}

type noMetrics struct{}

func (noMetrics) WebhookRequest(string, int)   {}
func (noMetrics) MessagesAccepted(string, int) {}

// sourceGeneric is the source of POST /webhook.
const sourceGeneric = "generic"

// counted is the first handler of every webhook route of source: it counts
// the request with the status it is answered. An error is answered here,
// by the app's error handler, so that its status is known.
func (h *handlers) counted(source string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := c.Next(); err != nil {
			if err := c.App().ErrorHandler(c, err); err != nil {
				_ = c.SendStatus(fiber.StatusInternalServerError)
			}
		}
		h.opts.Metrics.WebhookRequest(source, c.Response().StatusCode())
		return nil
	}
}
