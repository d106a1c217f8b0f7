// Package console is the operators' console: a live page at /console,
// served by the api from embedded assets, that shows what lull is doing
// (rates, conversations buffering, batches in flight, dead letters), looks
// up one conversation, and flushes or replays behind a confirm. It exists
// only with ADMIN_TOKEN; see auth.go for who may use it.
package console

import (
	"errors"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/valutil"
)

// Defaults of Options.
const (
	DefaultLimit       = 100
	DefaultSessionTTL  = 12 * time.Hour
	DefaultRefresh     = time.Second
	DefaultBufferLimit = 100
)

// totals is store.Totals as the page reads it: cumulative counters, summed
// over the shards, from which it charts rates by differencing successive
// polls.
type totals struct {
	Appended     int64 `json:"appended"`
	Duplicates   int64 `json:"duplicates"`
	Flushed      int64 `json:"flushed"`
	LatenessMs   int64 `json:"lateness_ms"` // sum over flushes of claim time - deadline
	Delivered    int64 `json:"delivered"`
	DeadLettered int64 `json:"dead_lettered"`
}

// Options configure the console. Token and Store are required.
type Options struct {
	Token string // ADMIN_TOKEN; empty: New returns nil, no route exists
	// Store is the namespace's store, nil while Redis is not connected
	// (the api connects in the background); calls then answer 503.
	Store     func() *store.Store
	Namespace string // shown in the page's title
	// Limit is how many conversations, batches in flight and dead letters
	// the page lists (each the soonest or newest); DefaultLimit when 0.
	Limit int
	// BufferLimit is how many buffered messages a lookup shows.
	BufferLimit int
	SessionTTL  time.Duration    // DefaultSessionTTL when 0
	Refresh     time.Duration    // how often the page polls; DefaultRefresh when 0
	Logger      *slog.Logger     // slog.Default() when nil
	Now         func() time.Time // tests only; time.Now when nil
}

// Console serves /console.
type Console struct {
	opts     Options
	log      *slog.Logger
	sessions *sessions
}

// Prefix is where the console lives.
const Prefix = "/console"

// New returns the console, or nil without a token: then nothing of it
// exists. It panics without a Store, a programmer error.
func New(opts Options) *Console {
	if opts.Token == "" {
		return nil
	}
	if opts.Store == nil {
		panic("console: Options.Store is required")
	}
	opts.Limit = valutil.ValOrDefault(opts.Limit, DefaultLimit)
	opts.BufferLimit = valutil.ValOrDefault(opts.BufferLimit, DefaultBufferLimit)
	opts.SessionTTL = valutil.ValOrDefault(opts.SessionTTL, DefaultSessionTTL)
	opts.Refresh = valutil.ValOrDefault(opts.Refresh, DefaultRefresh)
	opts.Logger = valutil.ValOrDefault(opts.Logger, slog.Default())
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Console{opts: opts, log: opts.Logger.With("component", "console"), sessions: newSessions(opts.Token, opts.SessionTTL, opts.Now)}
}

func (cn *Console) path(p string) string { return Prefix + p }

// Register adds the console's routes to r. A nil console adds none.
func (cn *Console) Register(r fiber.Router) {
	if cn == nil {
		return
	}
	g := r.Group(Prefix, securityHeaders)
	g.Get("/login", func(c *fiber.Ctx) error { return cn.loginForm(c, "") })
	g.Post("/login", cn.login)
	g.Get("/assets/:name", asset)
	g.Get("/", cn.requirePage, cn.page)
	api := g.Group("/api", cn.requireAPI, noStore)
	api.Get("/overview", cn.overview)
	api.Get("/conversation", cn.conversation)
	api.Get("/dead-letter", cn.deadLetter)
	api.Post("/flush", cn.flush)
	api.Post("/replay", cn.replay)
	api.Post("/logout", cn.logout)
}

var errNoRedis = errors.New("redis not connected yet")

func (cn *Console) store() (*store.Store, error) {
	if s := cn.opts.Store(); s != nil {
		return s, nil
	}
	return nil, errNoRedis
}

// overviewReply is what the page polls.
type overviewReply struct {
	store.Overview
	Buffering []bufferingView `json:"buffering"`
	Totals    totals          `json:"totals"`
	Limit     int             `json:"limit"`
}

type bufferingView struct {
	store.Buffering
	Source string `json:"source"`
}

func (cn *Console) overview(c *fiber.Ctx) error {
	st, err := cn.store()
	if err != nil {
		return cn.answerErr(c, err)
	}
	ov, err := st.Overview(c.UserContext(), cn.opts.Limit)
	if err != nil {
		return cn.answerErr(c, err)
	}
	out := overviewReply{Overview: ov, Limit: cn.opts.Limit, Buffering: make([]bufferingView, len(ov.Buffering))}
	for i, b := range ov.Buffering {
		out.Buffering[i] = bufferingView{Buffering: b, Source: ingest.SourceOf(b.Key)}
	}
	t, err := st.Totals(c.UserContext())
	if err != nil {
		return cn.answerErr(c, err)
	}
	out.Totals = totals(t)
	return c.JSON(out)
}

func (cn *Console) conversation(c *fiber.Ctx) error {
	key := c.Query("key")
	if key == "" {
		return fail(c, fiber.StatusBadRequest, "key query parameter is required")
	}
	st, err := cn.store()
	if err != nil {
		return cn.answerErr(c, err)
	}
	conv, err := st.Inspect(c.UserContext(), key, cn.opts.BufferLimit)
	if err != nil {
		return cn.answerErr(c, err)
	}
	return c.JSON(fiber.Map{"conversation": conv, "source": ingest.SourceOf(key)})
}

func (cn *Console) deadLetter(c *fiber.Ctx) error {
	id := c.Query("batch_id")
	if id == "" {
		return fail(c, fiber.StatusBadRequest, "batch_id query parameter is required")
	}
	st, err := cn.store()
	if err != nil {
		return cn.answerErr(c, err)
	}
	d, err := st.DeadLetterByID(c.UserContext(), id)
	if err != nil {
		return cn.answerErr(c, err)
	}
	return c.JSON(d)
}

// flush makes conversation ?key= due now (reason manual).
func (cn *Console) flush(c *fiber.Ctx) error {
	key := c.Query("key")
	if key == "" {
		return fail(c, fiber.StatusBadRequest, "key query parameter is required")
	}
	st, err := cn.store()
	if err != nil {
		return cn.answerErr(c, err)
	}
	r, err := st.FlushNow(c.UserContext(), key)
	if err != nil {
		return cn.answerErr(c, err)
	}
	cn.log.Info("console flush", "conversation", key, "by", c.Locals(whoKey), "ip", c.IP(), "buffered", r.Deadline >= 0)
	if r.Deadline < 0 {
		return c.JSON(fiber.Map{"status": "nothing buffered", "key": key})
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"status": "flushing", "key": key})
}

// replay puts dead letter ?batch_id= back in flight.
func (cn *Console) replay(c *fiber.Ctx) error {
	id := c.Query("batch_id")
	if id == "" {
		return fail(c, fiber.StatusBadRequest, "batch_id query parameter is required")
	}
	st, err := cn.store()
	if err != nil {
		return cn.answerErr(c, err)
	}
	if err := st.Replay(c.UserContext(), id); err != nil {
		return cn.answerErr(c, err)
	}
	cn.log.Info("console replay", "batch_id", id, "by", c.Locals(whoKey), "ip", c.IP())
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"status": "replaying", "batch_id": id})
}

// answerErr maps a store error to its status; anything unexpected is logged.
func (cn *Console) answerErr(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fail(c, fiber.StatusNotFound, "no such dead letter")
	case errors.Is(err, store.ErrBusy):
		return fail(c, fiber.StatusConflict, "the conversation has a batch in flight; replay once it is delivered")
	case errors.Is(err, errNoRedis):
		c.Set(fiber.HeaderRetryAfter, "2")
		return fail(c, fiber.StatusServiceUnavailable, err.Error())
	}
	cn.log.Error("console request failed", "method", c.Method(), "path", c.Path(), "err", err)
	return fail(c, fiber.StatusInternalServerError, "internal error (logged)")
}

func fail(c *fiber.Ctx, status int, msg string) error {
	return c.Status(status).JSON(fiber.Map{"error": msg})
}
