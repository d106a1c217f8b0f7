package httpapi

import "github.com/gofiber/fiber/v2"

// ProviderOptions configures the provider webhooks.
type ProviderOptions struct{}

// providers registers /webhook/<provider>.
func (h *handlers) providers(app *fiber.App) {}
