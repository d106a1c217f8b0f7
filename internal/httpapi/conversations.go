package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/store"
)

// Conversations is the state the bot-facing /v1 API reads and changes.
type Conversations interface {
	ConversationStatus(ctx context.Context, key string) (store.Status, error)
	FlushNow(ctx context.Context, key string) (store.Rescheduled, error)
	Cancel(ctx context.Context, key string) ([]json.RawMessage, error)
	Pause(ctx context.Context, key string, d time.Duration) (store.Paused, error)
	Resume(ctx context.Context, key string) (store.Paused, error)
	BatchState(ctx context.Context, id string) (store.BatchStatus, error)
	Discard(ctx context.Context, id string) (store.Discarded, error)
}

// FlushWait bounds how long POST /v1/conversations/{key}/flush waits for
// the claim before it answers 202 instead of the batch id.
const FlushWait = 10 * time.Second

var errAPIToken = fiber.NewError(fiber.StatusUnauthorized, "missing or wrong API token (Authorization: Bearer <API_TOKEN>)")

// conversations registers /v1, guarded by API_TOKEN; without it the routes
// do not exist. Keys and batch ids are path segments, URL-escaped (a key may
// hold ':' and '/').
func (h *handlers) conversations(app *fiber.App) {
	if h.opts.APIToken == "" || h.opts.Conversations == nil {
		return
	}
	g := app.Group("/v1", func(c *fiber.Ctx) error {
		if !bearerIs(c, h.opts.APIToken) {
			return errAPIToken
		}
		return c.Next()
	})
	g.Get("/conversations/*", h.conversation)
	g.Post("/conversations/*", h.conversationAction)
	g.Get("/batches/*", h.batchState)
	g.Post("/batches/*", h.batchAction)
}

// target splits the raw path after prefix into the unescaped name and the
// action after it (the last segment, for POST).
func target(c *fiber.Ctx, prefix string, action bool) (name, verb string, err error) {
	raw := strings.TrimPrefix(string(c.Request().URI().PathOriginal()), prefix)
	if action {
		i := strings.LastIndexByte(raw, '/')
		if i < 0 {
			return "", "", fiber.ErrNotFound
		}
		raw, verb = raw[:i], raw[i+1:]
	}
	name, err = url.PathUnescape(raw)
	if err != nil || name == "" || strings.Contains(raw, "/") {
		return "", "", fiber.NewError(fiber.StatusBadRequest, "the key or batch id must be one URL-escaped path segment")
	}
	return name, verb, nil
}

// conversationJSON is GET /v1/conversations/{key}'s answer.
type conversationJSON struct {
	store.Status
	Deadline    *string `json:"deadline"`
	InFlight    *string `json:"in_flight"`
	PausedUntil *string `json:"paused_until"`
	LastBatchID *string `json:"last_batch_id"`
}

func timeOrNil(ms int64) *string {
	if ms < 0 {
		return nil
	}
	s := batch.FormatMillis(ms)
	return &s
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func viewOf(s store.Status) conversationJSON {
	v := conversationJSON{Status: s, Deadline: timeOrNil(s.Deadline), InFlight: strOrNil(s.InFlight), LastBatchID: strOrNil(s.LastBatchID)}
	if s.Paused {
		v.PausedUntil = timeOrNil(s.PausedUntil)
	}
	return v
}

func (h *handlers) conversation(c *fiber.Ctx) error {
	key, _, err := target(c, "/v1/conversations/", false)
	if err != nil {
		return err
	}
	s, err := h.opts.Conversations.ConversationStatus(c.UserContext(), key)
	if err != nil {
		return err
	}
	return c.JSON(viewOf(s))
}

func (h *handlers) conversationAction(c *fiber.Ctx) error {
	key, verb, err := target(c, "/v1/conversations/", true)
	if err != nil {
		return err
	}
	conv := h.opts.Conversations
	ctx := c.UserContext()
	switch verb {
	case "flush":
		return h.flushAndWait(c, key)
	case "cancel":
		dropped, err := conv.Cancel(ctx, key)
		if err != nil {
			return err
		}
		msgs := make([]batch.Message, 0, len(dropped))
		for _, raw := range dropped {
			var m batch.Message
			if json.Unmarshal(raw, &m) == nil {
				msgs = append(msgs, m)
			}
		}
		return c.JSON(fiber.Map{"key": key, "cancelled": len(dropped), "messages": msgs})
	case "pause":
		d, err := pauseFor(c.Body())
		if err != nil {
			return err
		}
		p, err := conv.Pause(ctx, key, d)
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"key": key, "paused": true, "paused_until": timeOrNil(p.Until)})
	case "resume":
		p, err := conv.Resume(ctx, key)
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"key": key, "paused": false, "was_paused": p.Changed, "deadline": timeOrNil(p.Deadline)})
	}
	return fiber.ErrNotFound
}

// pauseFor reads the optional {"for": "30m"} of a pause (0: until resumed).
func pauseFor(body []byte) (time.Duration, error) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return 0, nil
	}
	var p struct {
		For *string `json:"for"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return 0, fiber.NewError(fiber.StatusBadRequest, "body must be a JSON object like {\"for\": \"30m\"}")
	}
	if p.For == nil {
		return 0, nil
	}
	d, err := time.ParseDuration(*p.For)
	if err != nil || d <= 0 {
		return 0, fiber.NewError(fiber.StatusUnprocessableEntity, "for must be a positive duration such as \"30m\" or \"2h\"")
	}
	return d, nil
}

// flushAndWait makes the conversation due at once (reason manual) and
// answers once the buffer was claimed, with the batch id, or 202 after
// FlushWait.
func (h *handlers) flushAndWait(c *fiber.Ctx, key string) error {
	conv := h.opts.Conversations
	ctx := c.UserContext()
	before, err := conv.ConversationStatus(ctx, key)
	if err != nil {
		return err
	}
	if before.Paused {
		return fiber.NewError(fiber.StatusConflict, "the conversation is paused; resume it to flush what was kept")
	}
	if before.Buffered == 0 {
		return fiber.NewError(fiber.StatusNotFound, "nothing buffered to flush")
	}
	if _, err := conv.FlushNow(ctx, key); err != nil {
		return err
	}
	want := batch.ID(key, before.Generation)
	deadline := time.Now().Add(FlushWait)
	for time.Now().Before(deadline) {
		s, err := conv.ConversationStatus(ctx, key)
		if err != nil && !errors.Is(err, store.ErrUnknown) {
			return err
		}
		// The claim holds every message buffered at the flush: the batch
		// in flight or delivered has at least their generation.
		for _, id := range []string{s.InFlight, s.LastBatchID} {
			if id != "" && atLeast(id, before.Generation) {
				return c.JSON(fiber.Map{"key": key, "batch_id": id, "status": "claimed"})
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"key": key, "status": "flushing", "batch_id": want})
}

// atLeast reports whether batch id's generation is at least gen.
func atLeast(id string, gen int64) bool {
	i := strings.LastIndexByte(id, ':')
	if i < 0 {
		return false
	}
	g, err := strconv.ParseInt(id[i+1:], 10, 64)
	return err == nil && g >= gen
}

func (h *handlers) batchState(c *fiber.Ctx) error {
	id, _, err := target(c, "/v1/batches/", false)
	if err != nil {
		return err
	}
	s, err := h.opts.Conversations.BatchState(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(s)
}

func (h *handlers) batchAction(c *fiber.Ctx) error {
	id, verb, err := target(c, "/v1/batches/", true)
	if err != nil {
		return err
	}
	if verb != "discard" {
		return fiber.ErrNotFound
	}
	d, err := h.opts.Conversations.Discard(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"batch_id": id, "status": "discarded", "messages": d.Messages, "deadline": timeOrNil(d.Deadline)})
}
