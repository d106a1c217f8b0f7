package httpapi

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/testenv"
)

// An unexpected error is logged with its route, never its path: a path can
// carry a secret (Z-API's /webhook/zapi/<token>).
func TestErrorHandler_LogsTheRouteNotThePath(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	app := fiber.New(fiber.Config{ErrorHandler: errorHandler(logs.Logger())})
	app.Post("/webhook/zapi/*", func(*fiber.Ctx) error { return errors.New("boom") })
	resp, err := app.Test(httptest.NewRequest("POST", "/webhook/zapi/s3cr3t-token/on-message", nil))
	require.NoError(t, err)
	require.Equal(t, fiber.StatusInternalServerError, resp.StatusCode)
	out := logs.String()
	require.Contains(t, out, "request failed")
	require.Contains(t, out, "route=/webhook/zapi/*")
	require.NotContains(t, out, "s3cr3t-token")
}
