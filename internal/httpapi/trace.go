package httpapi

import (
	"github.com/gofiber/fiber/v2"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/tracectx"
)

// keepTrace stamps the request's W3C traceparent, when valid, on every
// message of envs; the batch carries it on to the sinks. An invalid one is
// ignored (not refused), as the Trace Context specification asks.
func keepTrace(c *fiber.Ctx, envs []ingest.Envelope) {
	tp, ok := tracectx.Parse(c.Get(tracectx.Header))
	if !ok {
		return
	}
	for i := range envs {
		if envs[i].Kind == ingest.KindMessage {
			envs[i].Message.Traceparent = tp
		}
	}
}
