package httpapi

import (
	"errors"
	"log/slog"
	"mime"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/provider/chatwoot"
	"github.com/lullhq/lull/internal/provider/evolution"
	"github.com/lullhq/lull/internal/provider/telegram"
	"github.com/lullhq/lull/internal/provider/twilio"
	"github.com/lullhq/lull/internal/provider/waha"
	"github.com/lullhq/lull/internal/provider/whatsapp"
	"github.com/lullhq/lull/internal/provider/zapi"
)

// ProviderOptions configures the provider webhooks under /webhook/<provider>
// (see the README, "Provider webhooks").
type ProviderOptions struct {
	// WhatsAppVerifyToken answers Meta's GET handshake (WHATSAPP_VERIFY_TOKEN).
	// Empty: every handshake is refused (403).
	WhatsAppVerifyToken string
	// WhatsAppAppSecret checks X-Hub-Signature-256 (WHATSAPP_APP_SECRET);
	// several secrets, comma separated, are tried in turn. Empty: POSTs are
	// accepted unsigned, and a warning is logged once at startup.
	WhatsAppAppSecret string
	// EvolutionJWTKey, when set, requires "Authorization: Bearer <HS256 JWT>"
	// signed with it (EVOLUTION_JWT_KEY: the webhook's jwt_key header).
	EvolutionJWTKey string
	// EvolutionHeader, "Name: value", when set, requires that header
	// (EVOLUTION_HEADER: one of the webhook's static headers). New panics
	// when evolution.ParseHeader refuses it.
	EvolutionHeader string
	// TwilioAuthToken checks X-Twilio-Signature (TWILIO_AUTH_TOKEN). Empty:
	// /webhook/twilio answers 503, not configured.
	TwilioAuthToken string
	// PublicURL is the scheme://host[/prefix] Twilio calls (PUBLIC_URL); the
	// signed URL is PublicURL + path + query. Empty: rebuilt from
	// X-Forwarded-Proto / X-Forwarded-Host / Host.
	PublicURL string
	// WAHAHMACKey checks X-Webhook-Hmac (WAHA_HMAC_KEY). Empty: POSTs are
	// accepted unsigned, and a warning is logged once at startup.
	WAHAHMACKey string
	// ZAPIToken is required in the path (/webhook/zapi/<token>) or a header
	// (ZAPI_TOKEN). Empty: /webhook/zapi answers 503.
	ZAPIToken string
	// TelegramSecretToken is required in X-Telegram-Bot-Api-Secret-Token
	// (TELEGRAM_SECRET_TOKEN). Empty: /webhook/telegram answers 503.
	TelegramSecretToken string
	// ChatwootWebhookSecret checks X-Chatwoot-Signature
	// (CHATWOOT_WEBHOOK_SECRET). Empty: /webhook/chatwoot answers 503.
	ChatwootWebhookSecret string
}

// Providers is the table of providers: adding one is a package
// implementing provider.Webhook and a line here. The README's provider
// table is made of their Info().Doc (TestREADME_ProviderTable).
func Providers(o ProviderOptions) []provider.Webhook {
	return []provider.Webhook{
		whatsapp.New(o.WhatsAppVerifyToken, splitSecrets(o.WhatsAppAppSecret)),
		evolution.New(mustEvolutionAuth(o)),
		twilio.New(o.TwilioAuthToken),
		waha.New(o.WAHAHMACKey),
		zapi.New(o.ZAPIToken),
		telegram.New(o.TelegramSecretToken),
		chatwoot.New(o.ChatwootWebhookSecret),
	}
}

func splitSecrets(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func mustEvolutionAuth(o ProviderOptions) evolution.Auth {
	a := evolution.Auth{JWTKey: []byte(o.EvolutionJWTKey)}
	if o.EvolutionHeader != "" {
		var err error
		a.HeaderName, a.HeaderValue, err = evolution.ParseHeader(o.EvolutionHeader)
		if err != nil {
			// config.Load refuses such an EVOLUTION_HEADER.
			panic("httpapi: ProviderOptions.EvolutionHeader: " + err.Error())
		}
	}
	return a
}

// errFormRequired answers a form provider's request of another content type.
var errFormRequired = fiber.NewError(fiber.StatusUnsupportedMediaType, "content type must be application/x-www-form-urlencoded")

// errVerifyRefused answers a refused GET handshake.
var errVerifyRefused = fiber.NewError(fiber.StatusForbidden, "verification refused")

// providers registers /webhook/<source> (and /webhook/<source>/* for
// Subpaths) for every provider of the table.
func (h *handlers) providers(app *fiber.App) {
	for _, w := range Providers(h.opts.Providers) {
		info := w.Info()
		if info.Warning != "" {
			h.opts.Logger.Warn(info.Warning)
		}
		if info.Notice != "" {
			h.opts.Logger.Info(info.Notice)
		}
		route := "/webhook/" + info.Source
		p := &providerRoute{h: h, w: w, info: info, route: route}
		if hs, ok := w.(provider.Handshaker); ok {
			app.Get(route, h.counted(info.Source), p.handshake(hs))
		}
		app.Post(route, h.counted(info.Source), p.serve)
		if info.Subpaths {
			app.Post(route+"/*", h.counted(info.Source), p.serve)
		}
	}
}

// providerRoute is the HTTP handling every provider shares.
type providerRoute struct {
	h     *handlers
	w     provider.Webhook
	info  provider.Info
	route string
}

// serve checks, in order: configured (503), content type (415), the
// provider's authentication (401/403), the body (400/422); it publishes
// only when all pass, and answers 2xx only once every envelope is durable
// (503 otherwise, so the provider retries and the retry is deduped).
func (p *providerRoute) serve(c *fiber.Ctx) error {
	if p.info.Disabled != "" {
		return fiber.NewError(fiber.StatusServiceUnavailable, p.info.Disabled)
	}
	if err := p.requireContentType(c); err != nil {
		return err
	}
	r := p.request(c)
	if err := p.w.Authenticate(r); err != nil {
		if errors.Is(err, provider.ErrUnauthorized) {
			p.h.opts.Logger.Warn(p.info.Source+" webhook rejected", "err", err)
			return fiber.NewError(p.info.AuthStatus, p.info.AuthMessage)
		}
		return err
	}
	res, err := p.w.Parse(r)
	if err != nil {
		return err
	}
	if err := p.publish(c, res); err != nil {
		return err
	}
	if p.info.Reply == "" {
		return c.Status(fiber.StatusOK).JSON(fiber.Map{"status": "ok"})
	}
	c.Set(fiber.HeaderContentType, p.info.ReplyType)
	return c.Status(fiber.StatusOK).SendString(p.info.Reply)
}

// handshake answers a GET subscription handshake with the challenge,
// verbatim, as text/plain.
func (p *providerRoute) handshake(hs provider.Handshaker) fiber.Handler {
	return func(c *fiber.Ctx) error {
		challenge, err := hs.Handshake(p.request(c))
		if err != nil {
			p.h.opts.Logger.Warn(p.info.Source+" verification refused", "err", err)
			return errVerifyRefused
		}
		c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
		return c.Status(fiber.StatusOK).SendString(challenge)
	}
}

func (p *providerRoute) requireContentType(c *fiber.Ctx) error {
	if !p.info.Form {
		return requireJSON(c)
	}
	if mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType)); err != nil || mt != fiber.MIMEApplicationForm {
		return errFormRequired
	}
	return nil
}

// request is what the provider sees of c.
func (p *providerRoute) request(c *fiber.Ctx) provider.Request {
	return provider.Request{
		Body:   c.Body(),
		Header: func(name string) string { return c.Get(name) },
		Query:  func(name string) string { return c.Query(name) },
		Suffix: strings.TrimPrefix(c.Path(), p.route),
		URL:    p.calledURL(c),
		Now:    p.h.opts.Now(),
	}
}

// calledURL is the URL the provider called: PUBLIC_URL + path + query when
// set, else rebuilt from the request as the proxy in front of lull saw it.
func (p *providerRoute) calledURL(c *fiber.Ctx) string {
	uri := string(c.Request().RequestURI()) // path and query, as sent
	if base := p.h.opts.Providers.PublicURL; base != "" {
		return strings.TrimRight(base, "/") + uri
	}
	scheme := firstValue(c.Get(fiber.HeaderXForwardedProto))
	if scheme == "" {
		scheme = "http"
		if c.Context().IsTLS() {
			scheme = "https"
		}
	}
	host := firstValue(c.Get(fiber.HeaderXForwardedHost))
	if host == "" {
		host = string(c.Request().Host())
	}
	return strings.ToLower(scheme) + "://" + host + uri
}

// firstValue is the first of a comma-separated header's values (the one
// the outermost proxy set).
func firstValue(h string) string {
	v, _, _ := strings.Cut(h, ",")
	return strings.TrimSpace(v)
}

// publish makes res's envelopes durable and logs what was left out.
func (p *providerRoute) publish(c *fiber.Ctx, res provider.Result) error {
	log, source := p.h.opts.Logger, p.info.Source
	if len(res.Problems) > 0 {
		log.Warn("webhook items skipped", "source", source, "problems", res.Problems)
	}
	if n := res.IgnoredTotal(); n > 0 {
		log.Debug("webhook items ignored", "source", source, "ignored", res.Ignored)
	}
	for i := range res.Envelopes {
		e := &res.Envelopes[i]
		// Each source has its own key space (and so its own dedupe): a
		// generic unique_id can never name this conversation.
		e.Key = ingest.ProviderKey(source, e.Key)
		// A typing hint or a control event may have no provider id, but
		// every queued message needs one (it is the AMQP message id);
		// nothing dedupes on it.
		if e.Message.ID == "" {
			e.Message.ID = newID()
		}
	}
	keepTrace(c, res.Envelopes)
	if err := p.h.publish(c.UserContext(), res.Envelopes); err != nil {
		return err
	}
	p.h.opts.Metrics.MessagesAccepted(source, len(res.Envelopes))
	if len(res.Envelopes) > 0 && log.Enabled(c.UserContext(), slog.LevelDebug) {
		log.Debug("webhook accepted", "source", source, "envelopes", len(res.Envelopes))
	}
	return nil
}
