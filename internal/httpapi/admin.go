package httpapi

import (
	"context"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/lullhq/lull/internal/store"
)

// Admin is the state the admin endpoints read and change: the dead-letter
// store, and manual flushes.
type Admin interface {
	DeadLetters(ctx context.Context) ([]store.Dead, error)
	DeadLetterByID(ctx context.Context, id string) (store.Dead, error)
	Replay(ctx context.Context, id string) error
	FlushNow(ctx context.Context, key string) (store.Rescheduled, error)
}

var errUnauthorized = errors.New("missing or wrong admin token")

// admin registers the admin endpoints, guarded by a bearer token. Without a
// token they do not exist.
func (h *handlers) admin(app *fiber.App) {
	if h.opts.AdminToken == "" || h.opts.Admin == nil {
		return
	}
	g := app.Group("/admin", h.authorize)
	g.Get("/dead-letters", h.listDead)
	g.Post("/dead-letters/replay", h.replayDead)
	g.Post("/flush", h.flush)
}

// flush makes the conversation named by ?unique_id= due at once (reason "manual").
func (h *handlers) flush(c *fiber.Ctx) error {
	key := c.Query("unique_id")
	if key == "" {
		return fiber.NewError(fiber.StatusBadRequest, "unique_id query parameter is required")
	}
	r, err := h.opts.Admin.FlushNow(c.UserContext(), key)
	if err != nil {
		return err
	}
	if r.Deadline < 0 {
		return c.JSON(fiber.Map{"status": "nothing buffered", "unique_id": key})
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"status": "flushing", "unique_id": key})
}

func (h *handlers) authorize(c *fiber.Ctx) error {
	if !bearerIs(c, h.opts.AdminToken) {
		return errUnauthorized
	}
	return c.Next()
}

// listDead answers every dead letter, or the one named by ?batch_id=.
func (h *handlers) listDead(c *fiber.Ctx) error {
	if id := c.Query("batch_id"); id != "" {
		d, err := h.opts.Admin.DeadLetterByID(c.UserContext(), id)
		if err != nil {
			return err
		}
		return c.JSON(d)
	}
	all, err := h.opts.Admin.DeadLetters(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"dead_letters": all, "count": len(all)})
}

// replayDead puts the batch named by ?batch_id= back in flight, unchanged.
func (h *handlers) replayDead(c *fiber.Ctx) error {
	id := c.Query("batch_id")
	if id == "" {
		return fiber.NewError(fiber.StatusBadRequest, "batch_id query parameter is required")
	}
	if err := h.opts.Admin.Replay(c.UserContext(), id); err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"status": "replaying", "batch_id": id})
}
