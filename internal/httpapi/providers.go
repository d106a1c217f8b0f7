package httpapi

import (
	"errors"
	"log/slog"
	"mime"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/provider/evolution"
	"github.com/lullhq/lull/internal/provider/twilio"
	"github.com/lullhq/lull/internal/provider/whatsapp"
	"github.com/lullhq/lull/internal/redact"
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
}

// Answers the provider endpoints give besides the shared error handler's.
var (
	errWhatsAppSignature  = fiber.NewError(fiber.StatusUnauthorized, "missing or invalid X-Hub-Signature-256")
	errWhatsAppVerify     = fiber.NewError(fiber.StatusForbidden, "verification refused")
	errEvolutionAuth      = fiber.NewError(fiber.StatusUnauthorized, "missing or invalid Evolution webhook credentials")
	errTwilioSignature    = fiber.NewError(fiber.StatusForbidden, "missing or invalid X-Twilio-Signature")
	errTwilioNotConfigure = fiber.NewError(fiber.StatusServiceUnavailable, "twilio webhook not configured: set TWILIO_AUTH_TOKEN")
	errFormRequired       = fiber.NewError(fiber.StatusUnsupportedMediaType, "content type must be application/x-www-form-urlencoded")
)

// providerRoutes serves /webhook/whatsapp, /webhook/evolution[/*] and
// /webhook/twilio. Every one checks, in order: content type (415), the
// provider's authentication (401/403), the body (400/422); it publishes
// only when all pass, and answers 2xx only once every message is durable
// (503 otherwise, so the provider retries and the retry is deduped).
type providerRoutes struct {
	h           *handlers
	metaSecrets []string
	evoAuth     evolution.Auth
}

// providers registers /webhook/<provider>.
func (h *handlers) providers(app *fiber.App) {
	o, log := h.opts.Providers, h.opts.Logger
	p := &providerRoutes{h: h}
	for _, s := range strings.Split(o.WhatsAppAppSecret, ",") {
		if s = strings.TrimSpace(s); s != "" {
			p.metaSecrets = append(p.metaSecrets, s)
		}
	}
	p.evoAuth.JWTKey = []byte(o.EvolutionJWTKey)
	if o.EvolutionHeader != "" {
		var err error
		p.evoAuth.HeaderName, p.evoAuth.HeaderValue, err = evolution.ParseHeader(o.EvolutionHeader)
		if err != nil {
			// config.Load refuses such an EVOLUTION_HEADER.
			panic("httpapi: ProviderOptions.EvolutionHeader: " + err.Error())
		}
	}

	if len(p.metaSecrets) == 0 {
		log.Warn("WHATSAPP_APP_SECRET is not set: /webhook/whatsapp accepts unsigned POSTs; set it in production")
	}
	if !p.evoAuth.Enabled() {
		log.Info("/webhook/evolution is unauthenticated (EVOLUTION_HEADER and EVOLUTION_JWT_KEY unset)")
	}
	if o.TwilioAuthToken == "" {
		log.Info("/webhook/twilio is disabled (TWILIO_AUTH_TOKEN unset): it answers 503")
	}

	app.Get("/webhook/whatsapp", h.counted(whatsapp.Source), p.whatsappVerify)
	app.Post("/webhook/whatsapp", h.counted(whatsapp.Source), p.whatsapp)
	app.Post("/webhook/evolution", h.counted(evolution.Source), p.evolution)
	app.Post("/webhook/evolution/*", h.counted(evolution.Source), p.evolution) // byEvents: /messages-upsert, /presence-update, …
	app.Post("/webhook/twilio", h.counted(twilio.Source), p.twilio)
}

// whatsappVerify answers Meta's subscription handshake with the challenge,
// verbatim, as text/plain.
func (p *providerRoutes) whatsappVerify(c *fiber.Ctx) error {
	challenge, err := whatsapp.VerifyChallenge(c.Query("hub.mode"), c.Query("hub.verify_token"),
		c.Query("hub.challenge"), p.h.opts.Providers.WhatsAppVerifyToken)
	if err != nil {
		p.h.opts.Logger.Warn("whatsapp verification refused", "err", err)
		return errWhatsAppVerify
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.Status(fiber.StatusOK).SendString(challenge)
}

// whatsapp takes a (batched) notification. Meta counts anything but 200 as
// a failure and retries for up to seven days.
func (p *providerRoutes) whatsapp(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	if len(p.metaSecrets) > 0 {
		if err := whatsapp.VerifySignature(c.Body(), c.Get(whatsapp.SignatureHeader), p.metaSecrets...); err != nil {
			p.h.opts.Logger.Warn("whatsapp webhook rejected", "err", err)
			return errWhatsAppSignature
		}
	}
	res, err := whatsapp.Parse(c.Body(), p.h.opts.Now())
	if err != nil {
		return err
	}
	if err := p.publish(c, whatsapp.Source, res); err != nil {
		return err
	}
	return c.Status(fiber.StatusOK).JSON(fiber.Map{"status": "ok"})
}

// evolution takes one Evolution event; the event comes from the body, so
// the byEvents URL suffix is not needed to route it.
func (p *providerRoutes) evolution(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	if err := p.evoAuth.Verify(func(name string) string { return c.Get(name) }, p.h.opts.Now()); err != nil {
		p.h.opts.Logger.Warn("evolution webhook rejected", "err", err)
		return errEvolutionAuth
	}
	res, err := evolution.Parse(c.Body(), p.h.opts.Now())
	if err != nil {
		return err
	}
	if err := p.publish(c, evolution.Source, res); err != nil {
		return err
	}
	return c.Status(fiber.StatusOK).JSON(fiber.Map{"status": "ok"})
}

// twilio takes one form-encoded message and answers empty TwiML. The
// signature is checked first, over the raw body (twilio.Authenticate): a
// request that fails it is 403 whatever its body holds, and nothing reads a
// field of the message before it passed.
func (p *providerRoutes) twilio(c *fiber.Ctx) error {
	token := p.h.opts.Providers.TwilioAuthToken
	if token == "" {
		return errTwilioNotConfigure
	}
	if mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType)); err != nil || mt != fiber.MIMEApplicationForm {
		return errFormRequired
	}
	signed := p.twilioURL(c)
	form, err := twilio.Authenticate(token, signed, c.Body(), c.Get(twilio.SignatureHeader))
	switch {
	case errors.Is(err, twilio.ErrSignature):
		p.h.opts.Logger.Warn("twilio webhook rejected", "err", err, "url", redact.URL(signed))
		return errTwilioSignature
	case err != nil:
		return fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	res, err := twilio.Parse(form, p.h.opts.Now())
	if err != nil {
		return err
	}
	if err := p.publish(c, twilio.Source, res); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextXMLCharsetUTF8)
	return c.Status(fiber.StatusOK).SendString(twilio.TwiML)
}

// twilioURL is the URL Twilio signed: PUBLIC_URL + path + query when set,
// else rebuilt from the request as the proxy in front of lull saw it.
func (p *providerRoutes) twilioURL(c *fiber.Ctx) string {
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
func (p *providerRoutes) publish(c *fiber.Ctx, source string, res provider.Result) error {
	log := p.h.opts.Logger
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
		// A typing hint has no provider id, but every queued message needs
		// one (it is the AMQP message id); nothing dedupes on it.
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
