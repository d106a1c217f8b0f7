// Package httpapi is lull's HTTP front: it validates webhooks and answers 2xx
// only once the message is durable in RabbitMQ.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/google/uuid"

	"github.com/lullhq/lull/internal/console"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/jsonenc"
	"github.com/lullhq/lull/internal/logthrottle"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/valutil"
)

// Publisher makes an encoded envelope durable (a confirmed publish).
type Publisher interface {
	Publish(ctx context.Context, messageID string, body []byte) error
	Ready() bool
}

// Options configure the API. BodyLimit and PublishTimeout are required: New
// panics without them.
type Options struct {
	Publisher Publisher
	RedisPing func(ctx context.Context) error // for /readyz
	// BodyLimit is the largest POST /webhook body, in bytes (BODY_LIMIT).
	BodyLimit int
	// PublishTimeout bounds the wait for the broker's confirms of one
	// request (PUBLISH_TIMEOUT).
	PublishTimeout time.Duration
	Logger         *slog.Logger     // nil: slog.Default()
	Now            func() time.Time // tests only; nil: time.Now

	// Limits bound each accepted message (METADATA_MAX_BYTES, MAX_BATCH_BYTES).
	Limits ingest.Limits
	// Rules marks messages that flush at once (IMMEDIATE_FLUSH[_<SOURCE>]).
	Rules ingest.RuleSet
	// Providers configures /webhook/<provider>.
	Providers ProviderOptions

	// Buffered reads a conversation's buffer level, checked against the
	// caps below before a message is published (nil: no check). While Redis
	// cannot answer, messages are taken: the cap bounds Redis, it is not a
	// reason to refuse ingest when Redis is down.
	Buffered            func(ctx context.Context, key string) (store.Level, error)
	MaxBufferedMessages int64 // MAX_BUFFERED_MESSAGES
	MaxBufferedBytes    int64 // MAX_BUFFERED_BYTES

	// WebhookToken, when set, is required on POST /webhook (WEBHOOK_TOKEN),
	// as a bearer token or in X-Lull-Token. DisableGeneric removes the
	// route (WEBHOOK_GENERIC=false) for deployments fed only by providers.
	WebhookToken   string
	DisableGeneric bool

	// The admin endpoints exist only when both are set.
	AdminToken string
	Admin      Admin
	// The bot-facing /v1 API exists only when both are set (API_TOKEN).
	APIToken      string
	Conversations Conversations

	// Console is the operators' console at /console (nil: none; it is
	// nil without ADMIN_TOKEN).
	Console *console.Console

	// Metrics counts the webhook requests and the messages accepted. Nil
	// counts nothing.
	Metrics Metrics

	// PublishFailureLog aggregates the "publish failed" line: a broker
	// that refuses everything, with senders retrying, would otherwise log
	// a line per request. Nil: one line per second per Logger.
	PublishFailureLog *logthrottle.Throttle
}

// ProviderBodyLimit is the least body size the provider endpoints accept,
// whatever BODY_LIMIT says: Meta batches up to 3 MB in one POST, and answers
// anything but 200 with retries for days.
const ProviderBodyLimit = 4 << 20

// RetryAfterSeconds is what a 503 asks the sender to wait.
const RetryAfterSeconds = "2"

var (
	errUnsupportedMedia = errors.New("content type must be application/json")
	errEncoding         = errors.New("compressed bodies are not accepted (Content-Encoding must be identity)")
	errUnavailable      = errors.New("broker unavailable, retry later")
)

// Server is the Fiber app, with the count of requests under way that a
// shutdown waits for.
type Server struct {
	*fiber.App
	inflight atomic.Int64
	// publishFailures is the throttle of the publish-failure line, flushed
	// by Drain so that the failures of the last second are told.
	publishFailures *logthrottle.Throttle
}

// Timeouts of the HTTP server's connections.
const (
	readTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
	idleTimeout  = 60 * time.Second
)

// New builds the Fiber app. Options it cannot work with (see Options and
// ProviderOptions) are a programmer error: it panics, naming the option.
func New(opts Options) *Server {
	opts.mustValidate()
	opts.Logger = valutil.ValOrDefault(opts.Logger, slog.Default())
	opts.Metrics = valutil.ValOrDefault[Metrics](opts.Metrics, noMetrics{})
	if opts.Now == nil {
		opts.Now = time.Now
	}
	app := fiber.New(fiber.Config{
		AppName:               "lull",
		BodyLimit:             max(opts.BodyLimit, ProviderBodyLimit),
		ReadTimeout:           readTimeout,
		WriteTimeout:          writeTimeout,
		IdleTimeout:           idleTimeout,
		DisableStartupMessage: true,
		JSONEncoder:           jsonenc.Marshal,
		ErrorHandler:          errorHandler(opts.Logger),
	})
	srv := &Server{App: app, publishFailures: opts.publishFailureLog()}
	app.Use(recover.New(), func(c *fiber.Ctx) error {
		srv.inflight.Add(1)
		defer srv.inflight.Add(-1)
		return c.Next()
	}, identityOnly)
	h := &handlers{opts: opts}
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	app.Get("/readyz", h.ready)
	if !opts.DisableGeneric {
		app.Post("/webhook", h.counted(sourceGeneric), h.webhookToken, h.generic)
	}
	h.providers(app)
	h.admin(app)
	h.conversations(app)
	opts.Console.Register(app)
	return srv
}

// mustValidate panics on options New cannot work with: config.Load
// checks the variables they come from, so only a caller's bug gets here.
func (o Options) mustValidate() {
	if o.Publisher == nil {
		panic("httpapi: Options.Publisher is required")
	}
	if o.BodyLimit < 1 {
		panic(fmt.Sprintf("httpapi: Options.BodyLimit %d must be positive (BODY_LIMIT)", o.BodyLimit))
	}
	if o.PublishTimeout <= 0 {
		panic(fmt.Sprintf("httpapi: Options.PublishTimeout %s must be positive (PUBLISH_TIMEOUT)", o.PublishTimeout))
	}
}

// Drain stops accepting connections and returns once every request under
// way has been answered (each waits for its publisher confirm), or when ctx
// ends. Unlike Fiber's Shutdown it does not wait for idle connections that
// never send a request.
func (s *Server) Drain(ctx context.Context) error {
	defer s.publishFailures.Flush()
	done := make(chan error, 1)
	go func() { done <- s.ShutdownWithContext(ctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var idleSince time.Time
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			switch {
			case s.inflight.Load() > 0:
				idleSince = time.Time{}
			case idleSince.IsZero():
				idleSince = now
			case now.Sub(idleSince) >= 200*time.Millisecond:
				return nil
			}
		}
	}
}

type handlers struct {
	opts Options
}

func (h *handlers) generic(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	body := c.Body()
	if len(body) > h.opts.BodyLimit {
		return fiber.ErrRequestEntityTooLarge
	}
	env, err := ingest.ParseGeneric(body, h.opts.Now(), newID)
	if err != nil {
		return err
	}
	return h.accept(c, env)
}

// accept publishes env and answers 202 once the broker confirmed it.
func (h *handlers) accept(c *fiber.Ctx, env ingest.Envelope) error {
	envs := []ingest.Envelope{env}
	keepTrace(c, envs)
	if err := h.publish(c.UserContext(), envs); err != nil {
		return err
	}
	h.opts.Metrics.MessagesAccepted(sourceGeneric, len(envs))
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{
		"status":     "accepted",
		"unique_id":  env.Key,
		"message_id": env.Message.ID,
	})
}

// publish applies the immediate-flush rules to envs and makes them durable.
// The envelopes of one conversation are published one after another, in
// order, each after the previous one's confirm, so a provider batch keeps
// its order in the queue; conversations go concurrently, a few at a time.
// It returns errUnavailable unless the broker confirmed every one (a
// sender's retry is deduped by message id).
func (h *handlers) publish(ctx context.Context, envs []ingest.Envelope) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.PublishTimeout)
	defer cancel()
	var order []string
	byKey := map[string][]queued{}
	// Every envelope is checked and encoded before the first publish, so a
	// request with one bad message publishes nothing.
	for _, env := range envs {
		h.opts.Rules.Apply(&env)
		body, err := h.opts.Limits.Prepare(env)
		if err != nil {
			return err
		}
		if _, ok := byKey[env.Key]; !ok {
			order = append(order, env.Key)
		}
		byKey[env.Key] = append(byKey[env.Key], queued{env: env, body: body})
	}
	for _, key := range order {
		if err := h.checkRoom(ctx, key); err != nil {
			return err
		}
	}
	var failed atomic.Bool
	var wg sync.WaitGroup
	slots := make(chan struct{}, publishConcurrency)
	for _, key := range order {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			for _, q := range byKey[key] {
				if err := h.publishOne(ctx, q.env, q.body); err != nil {
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() {
		return errUnavailable
	}
	return nil
}

// errFull: the conversation's buffer reached MAX_BUFFERED_MESSAGES or
// MAX_BUFFERED_BYTES (its receiver is slow or down while the user keeps
// writing). Answered 429 with Retry-After, for that conversation only.
var errFull = errors.New("conversation buffer is full; retry later")

// FullRetryAfterSeconds is what a 429 for a full conversation asks to wait.
const FullRetryAfterSeconds = "5"

// checkRoom refuses a message for a conversation whose buffer is at its
// cap. Messages already accepted are always stored, so a buffer can pass
// the cap only by what was in the queue for it when the cap was reached.
func (h *handlers) checkRoom(ctx context.Context, key string) error {
	if h.opts.Buffered == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	lvl, err := h.opts.Buffered(ctx, key)
	if err != nil {
		return nil // fail open: see Options.Buffered
	}
	if (h.opts.MaxBufferedMessages > 0 && lvl.Messages >= h.opts.MaxBufferedMessages) ||
		(h.opts.MaxBufferedBytes > 0 && lvl.Bytes >= h.opts.MaxBufferedBytes) {
		return errFull
	}
	return nil
}

// publishConcurrency bounds the conversations one request publishes at once.
const publishConcurrency = 8

// queued is an envelope with its checked queue body.
type queued struct {
	env  ingest.Envelope
	body []byte
}

func (h *handlers) publishOne(ctx context.Context, env ingest.Envelope, body []byte) error {
	err := h.opts.Publisher.Publish(ctx, env.Message.ID, body)
	if err != nil {
		h.opts.publishFailureLog().Log(ctx, h.opts.Logger, slog.LevelWarn, "publish failed",
			slog.String("conversation", env.Key), slog.String("message_id", env.Message.ID), slog.Any("err", err))
	}
	return err
}

func (h *handlers) ready(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), time.Second)
	defer cancel()
	// The reason tells an operator looking at a 503 what to fix: a
	// blocked broker (memory or disk alarm), confirms that stopped coming
	// (a half-open link), no connection, or Redis.
	broker, brokerWhy := brokerHealth(h.opts.Publisher)
	var reasons []string
	if !broker {
		reasons = append(reasons, "broker: "+brokerWhy)
	}
	redis := true
	if h.opts.RedisPing != nil {
		// The error itself (addresses, the URL's host) stays out of a
		// body this port serves to anyone.
		if err := h.opts.RedisPing(ctx); err != nil {
			redis = false
			reasons = append(reasons, "redis: not reachable")
		}
	}
	body := fiber.Map{"ready": broker && redis, "broker": broker, "redis": redis}
	status := fiber.StatusOK
	if !broker || !redis {
		status = fiber.StatusServiceUnavailable
		c.Set(fiber.HeaderRetryAfter, RetryAfterSeconds)
		body["reason"] = strings.Join(reasons, "; ")
	}
	return c.Status(status).JSON(body)
}

// identityOnly refuses compressed bodies: Fiber would inflate them without
// a bound (BODY_LIMIT counts the compressed bytes), before any signature
// check. No provider compresses its webhooks.
func identityOnly(c *fiber.Ctx) error {
	if ce := strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)); ce != "" && !strings.EqualFold(ce, "identity") {
		return errEncoding
	}
	return c.Next()
}

func requireJSON(c *fiber.Ctx) error {
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || (mt != fiber.MIMEApplicationJSON && !strings.HasSuffix(mt, "+json")) {
		return errUnsupportedMedia
	}
	return nil
}

func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// errorHandler maps every error to its status and a JSON body, in one place.
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		status, body := fiber.StatusInternalServerError, fiber.Map{"error": "internal error"}
		var fe *ingest.FieldError
		var fiberErr *fiber.Error
		switch {
		case errors.As(err, &fe):
			status, body = fiber.StatusUnprocessableEntity, fiber.Map{"error": fe.Error(), "field": fe.Field}
		case errors.Is(err, ingest.ErrTooLarge):
			status, body = fiber.StatusRequestEntityTooLarge, fiber.Map{"error": err.Error()}
		case errors.Is(err, ingest.ErrMalformed):
			status, body = fiber.StatusBadRequest, fiber.Map{"error": err.Error()}
		case errors.Is(err, errEncoding):
			status, body = fiber.StatusUnsupportedMediaType, fiber.Map{"error": err.Error()}
		case errors.Is(err, errUnsupportedMedia):
			status, body = fiber.StatusUnsupportedMediaType, fiber.Map{"error": err.Error()}
		case errors.Is(err, errUnauthorized):
			status, body = fiber.StatusUnauthorized, fiber.Map{"error": err.Error()}
		case errors.Is(err, store.ErrUnknown):
			status, body = fiber.StatusNotFound, fiber.Map{"error": "lull holds nothing of it"}
		case errors.Is(err, store.ErrConflict):
			status, body = fiber.StatusConflict, fiber.Map{"error": err.Error()}
		case errors.Is(err, store.ErrNotFound):
			status, body = fiber.StatusNotFound, fiber.Map{"error": "no such dead letter"}
		case errors.Is(err, store.ErrBusy):
			status, body = fiber.StatusConflict, fiber.Map{"error": "the conversation has a batch in flight; replay once it is delivered"}
		case errors.Is(err, errFull):
			status, body = fiber.StatusTooManyRequests, fiber.Map{"error": err.Error()}
			c.Set(fiber.HeaderRetryAfter, FullRetryAfterSeconds)
		case errors.Is(err, errUnavailable):
			status, body = fiber.StatusServiceUnavailable, fiber.Map{"error": err.Error()}
			c.Set(fiber.HeaderRetryAfter, RetryAfterSeconds)
		case errors.As(err, &fiberErr):
			status, body = fiberErr.Code, fiber.Map{"error": fiberErr.Message}
		default:
			// The route, not the path: a path can carry a secret
			// (/webhook/zapi/<token>). A request no route took has none
			// (Fiber's stand-in route then holds the path, and no handler).
			route := "-"
			if r := c.Route(); len(r.Handlers) > 0 {
				route = r.Path
			}
			log.Error("request failed", "method", c.Method(), "route", route, "err", err)
		}
		return c.Status(status).JSON(body)
	}
}

// publishFailureLogs holds one throttle per logger for servers whose
// Options name none: the api has one server and one logger, and servers
// of tests, each with a logger of its own, do not silence one another.
var publishFailureLogs sync.Map // *slog.Logger -> *logthrottle.Throttle

// publishFailureLog is the throttle of the publish-failure line.
func (o *Options) publishFailureLog() *logthrottle.Throttle {
	if o.PublishFailureLog != nil {
		return o.PublishFailureLog
	}
	if t, ok := publishFailureLogs.Load(o.Logger); ok {
		return t.(*logthrottle.Throttle)
	}
	t, _ := publishFailureLogs.LoadOrStore(o.Logger, logthrottle.New(time.Second))
	return t.(*logthrottle.Throttle)
}
