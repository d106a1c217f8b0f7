// Package config reads lull's configuration from the environment, once, at
// the edge. Components take the plain values; nothing else reads os.Getenv.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/provider/evolution"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/redact"
	"github.com/lullhq/lull/internal/redisconn"
	"github.com/lullhq/lull/internal/sink"
)

// Config is every setting of the api and the worker (the README's
// "Configuration"). Defaults holds the default of every field; Load reads
// the environment over it.
type Config struct {
	HTTPAddr  string `env:"HTTP_ADDR"`
	RedisURL  string `env:"REDIS_URL"`
	AMQPURL   string `env:"AMQP_URL"`
	Namespace string `env:"NAMESPACE"`
	// Shards is SHARDS: how many shards conversations spread over (see
	// keys.Shards); Redis records it and a process with another refuses
	// to start (store.CheckShards).
	Shards int `env:"SHARDS"`

	QuietWindow      time.Duration `env:"QUIET_WINDOW"`
	MaxWait          time.Duration `env:"MAX_WAIT"`
	MaxBatchMessages int           `env:"MAX_BATCH_MESSAGES"`

	Sinks          []string `env:"SINKS" envSeparator:","`
	CallbackURL    string   `env:"CALLBACK_URL"`
	CallbackSecret string   `env:"CALLBACK_SECRET"`

	// Beyond the contract: tuning with safe defaults.
	BodyLimit       int           `env:"BODY_LIMIT"`
	PublishTimeout  time.Duration `env:"PUBLISH_TIMEOUT"`
	Prefetch        int           `env:"PREFETCH"`
	DedupeWindow    time.Duration `env:"DEDUPE_WINDOW"`
	KeyTTL          time.Duration `env:"KEY_TTL"`
	Lease           time.Duration `env:"LEASE"`
	PollInterval    time.Duration `env:"POLL_INTERVAL"`
	CallbackTimeout time.Duration `env:"CALLBACK_TIMEOUT"`
	RetryMin        time.Duration `env:"RETRY_BACKOFF_MIN"`
	RetryMax        time.Duration `env:"RETRY_BACKOFF_MAX"`
	MaxAttempts     int           `env:"MAX_ATTEMPTS"`
	AdminToken      string        `env:"ADMIN_TOKEN"`
	Deliveries      int           `env:"DELIVERY_CONCURRENCY"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT"`
	// IntakeHandoverAfter: the worker appending hands the inbound queue
	// to another worker once an append has failed on a network error for
	// this long (0 = never).
	IntakeHandoverAfter time.Duration `env:"INTAKE_HANDOVER_AFTER"`
	LogLevel            string        `env:"LOG_LEVEL"`
	LogFormat           string        `env:"LOG_FORMAT"`

	// Hardening: the generic endpoint, bounded state, retention.
	WebhookToken        string        `env:"WEBHOOK_TOKEN"`
	WebhookGeneric      bool          `env:"WEBHOOK_GENERIC"`
	MetadataMaxBytes    int           `env:"METADATA_MAX_BYTES"`
	MaxBatchBytes       int           `env:"MAX_BATCH_BYTES"`
	MaxBufferedMessages int           `env:"MAX_BUFFERED_MESSAGES"`
	MaxBufferedBytes    int           `env:"MAX_BUFFERED_BYTES"`
	DeadLetterTTL       time.Duration `env:"DEAD_LETTER_TTL"`
	DeadLetterMax       int           `env:"DEAD_LETTER_MAX"`
	RedisTimeout        time.Duration `env:"REDIS_TIMEOUT"`
	HealthAddr          string        `env:"HEALTH_ADDR"`

	// MetricsAddr is METRICS_ADDR as set: where GET /metrics is served
	// (host:port), or MetricsOff. Unset, each process takes its own
	// default, MetricsAddrDefault: read it with MetricsListenAddr.
	MetricsAddr string `env:"METRICS_ADDR"`
	// MetricsAddrDefault is METRICS_ADDR's default for each process: the
	// api and the worker often share a host, so their defaults differ. No
	// variable sets it.
	MetricsAddrDefault PerProcess

	// Provider webhooks (the README's "Provider webhooks").
	ImmediateFlush []string `env:"IMMEDIATE_FLUSH" envSeparator:","`
	// Per source, overriding IMMEDIATE_FLUSH when set ("none": no rule).
	ImmediateFlushGeneric   []string `env:"IMMEDIATE_FLUSH_GENERIC" envSeparator:","`
	ImmediateFlushWhatsApp  []string `env:"IMMEDIATE_FLUSH_WHATSAPP" envSeparator:","`
	ImmediateFlushEvolution []string `env:"IMMEDIATE_FLUSH_EVOLUTION" envSeparator:","`
	ImmediateFlushTwilio    []string `env:"IMMEDIATE_FLUSH_TWILIO" envSeparator:","`
	ImmediateFlushWAHA      []string `env:"IMMEDIATE_FLUSH_WAHA" envSeparator:","`
	ImmediateFlushZAPI      []string `env:"IMMEDIATE_FLUSH_ZAPI" envSeparator:","`
	ImmediateFlushTelegram  []string `env:"IMMEDIATE_FLUSH_TELEGRAM" envSeparator:","`
	ImmediateFlushChatwoot  []string `env:"IMMEDIATE_FLUSH_CHATWOOT" envSeparator:","`
	WhatsAppVerifyToken     string   `env:"WHATSAPP_VERIFY_TOKEN"`
	WhatsAppAppSecret       string   `env:"WHATSAPP_APP_SECRET"`
	EvolutionJWTKey         string   `env:"EVOLUTION_JWT_KEY"`
	EvolutionHeader         string   `env:"EVOLUTION_HEADER"`
	TwilioAuthToken         string   `env:"TWILIO_AUTH_TOKEN"`
	PublicURL               string   `env:"PUBLIC_URL"`
	WAHAHMACKey             string   `env:"WAHA_HMAC_KEY"`
	ZAPIToken               string   `env:"ZAPI_TOKEN"`
	TelegramSecretToken     string   `env:"TELEGRAM_SECRET_TOKEN"`
	ChatwootWebhookSecret   string   `env:"CHATWOOT_WEBHOOK_SECRET"`

	// Conversation control (the README's "/v1" and "Windows that fit the
	// conversation").
	APIToken      string        `env:"API_TOKEN"`
	DiscardWindow time.Duration `env:"DISCARD_WINDOW"`
	// Per source, overriding QUIET_WINDOW and MAX_WAIT when set.
	QuietWindowGeneric   time.Duration `env:"QUIET_WINDOW_GENERIC"`
	QuietWindowWhatsApp  time.Duration `env:"QUIET_WINDOW_WHATSAPP"`
	QuietWindowEvolution time.Duration `env:"QUIET_WINDOW_EVOLUTION"`
	QuietWindowTwilio    time.Duration `env:"QUIET_WINDOW_TWILIO"`
	MaxWaitGeneric       time.Duration `env:"MAX_WAIT_GENERIC"`
	MaxWaitWhatsApp      time.Duration `env:"MAX_WAIT_WHATSAPP"`
	MaxWaitEvolution     time.Duration `env:"MAX_WAIT_EVOLUTION"`
	MaxWaitTwilio        time.Duration `env:"MAX_WAIT_TWILIO"`
	QuietWindowWAHA      time.Duration `env:"QUIET_WINDOW_WAHA"`
	QuietWindowZAPI      time.Duration `env:"QUIET_WINDOW_ZAPI"`
	QuietWindowTelegram  time.Duration `env:"QUIET_WINDOW_TELEGRAM"`
	QuietWindowChatwoot  time.Duration `env:"QUIET_WINDOW_CHATWOOT"`
	MaxWaitWAHA          time.Duration `env:"MAX_WAIT_WAHA"`
	MaxWaitZAPI          time.Duration `env:"MAX_WAIT_ZAPI"`
	MaxWaitTelegram      time.Duration `env:"MAX_WAIT_TELEGRAM"`
	MaxWaitChatwoot      time.Duration `env:"MAX_WAIT_CHATWOOT"`
	QuietWindowMedia     time.Duration `env:"QUIET_WINDOW_MEDIA"`
	QuietWindowMode      string        `env:"QUIET_WINDOW_MODE"`
	QuietWindowMin       time.Duration `env:"QUIET_WINDOW_MIN"`
	QuietWindowK         float64       `env:"QUIET_WINDOW_K"`
	FlushWords           []string      `env:"FLUSH_WORDS" envSeparator:","`
	CancelWords          []string      `env:"CANCEL_WORDS" envSeparator:","`

	// Sinks beyond log and http.
	BatchExchange string `env:"BATCH_EXCHANGE"`
	BatchQueue    string `env:"BATCH_QUEUE"`
	CeleryQueue   string `env:"CELERY_QUEUE"`
	CeleryTask    string `env:"CELERY_TASK"`

	// The seed demo's .env names, used when REDIS_URL / AMQP_URL are unset.
	RedisHost    string `env:"REDIS_HOST"`
	RedisPort    string `env:"REDIS_PORT"`
	RedisUser    string `env:"REDIS_USER"`
	RedisPass    string `env:"REDIS_PASS"`
	CeleryBroker string `env:"CELERY_BROKER"`
}

// MaxDeadLetterTTL is the longest DEAD_LETTER_TTL: 5 years, under the
// largest x-message-ttl RabbitMQ takes.
const MaxDeadLetterTTL = 5 * 365 * 24 * time.Hour

// Defaults is the configuration of an empty environment: the one place
// where every setting's default is written. Components take their values
// from a Config and do not default them again.
//
// BATCH_EXCHANGE and BATCH_QUEUE default to <NAMESPACE>.batches, so they are
// empty here and filled by Load once NAMESPACE is known; REDIS_URL and
// AMQP_URL are these only when the seed demo's names (REDIS_HOST,
// CELERY_BROKER) are unset too.
func Defaults() Config {
	return Config{
		HTTPAddr:  ":8000",
		RedisURL:  "redis://127.0.0.1:6379/0",
		AMQPURL:   "amqp://guest:guest@127.0.0.1:5672/",
		Namespace: "lull",

		QuietWindow:      12 * time.Second,
		MaxWait:          60 * time.Second,
		MaxBatchMessages: 100,

		Sinks: []string{sink.NameLog},

		BodyLimit:           1 << 20,
		PublishTimeout:      5 * time.Second,
		Prefetch:            200,
		Shards:              keys.DefaultShards,
		DedupeWindow:        24 * time.Hour,
		KeyTTL:              168 * time.Hour,
		Lease:               30 * time.Second,
		PollInterval:        time.Second,
		CallbackTimeout:     10 * time.Second,
		RetryMin:            time.Second,
		RetryMax:            5 * time.Minute,
		MaxAttempts:         10,
		Deliveries:          64,
		ShutdownTimeout:     20 * time.Second,
		IntakeHandoverAfter: 30 * time.Second,
		LogLevel:            "info",
		LogFormat:           "text",

		WebhookGeneric:      true,
		MetadataMaxBytes:    64 << 10,
		MaxBatchBytes:       4 << 20,
		MaxBufferedMessages: 1000,
		MaxBufferedBytes:    16 << 20,
		DeadLetterTTL:       720 * time.Hour,
		DeadLetterMax:       10000,
		RedisTimeout:        2 * time.Second,

		MetricsAddrDefault: PerProcess{API: ":9090", Worker: ":9091"},

		ImmediateFlush: []string{ingest.RuleCommand, ingest.RuleInteractive},
		// The providers added later have their own defaults, whatever
		// IMMEDIATE_FLUSH says; Telegram's may not include media (an album's
		// photos come one update each and must stay in one batch).
		ImmediateFlushWAHA:     []string{ingest.RuleCommand, ingest.RuleInteractive},
		ImmediateFlushZAPI:     []string{ingest.RuleCommand, ingest.RuleInteractive},
		ImmediateFlushTelegram: []string{ingest.RuleCommand, ingest.RuleInteractive},
		ImmediateFlushChatwoot: []string{ingest.RuleInteractive},

		DiscardWindow:    time.Hour,
		QuietWindowMedia: 30 * time.Second,
		QuietWindowMode:  WindowFixed,
		QuietWindowMin:   2 * time.Second,
		QuietWindowK:     4,

		CeleryQueue: "celery",
		CeleryTask:  "lull.process_batch",
	}
}

// Load parses the environment over Defaults and validates the result. Its
// errors name the variable at fault.
//
// An unset or empty variable leaves its default (compose files pass
// ${X:-}), except NAMESPACE: it is the isolation boundary, and an empty one
// would silently share the default namespace's data, so it is refused.
func Load() (Config, error) {
	c := Defaults()
	// The URLs' defaults apply only when the seed's names are unset too:
	// resolveURLs decides once the environment is read.
	c.RedisURL, c.AMQPURL = "", ""
	// env leaves a field as it is when its variable is unset or empty.
	if err := env.Parse(&c); err != nil {
		return Config{}, nameVariables(err)
	}
	c.resolveURLs()
	// Sink names are case-insensitive: SINKS=HTTP is http. A bad list is
	// left as it is, for Validate to report.
	if names, err := sink.ParseNames(c.Sinks); err == nil {
		c.Sinks = names
	}
	if v, ok := os.LookupEnv("NAMESPACE"); ok && strings.TrimSpace(v) == "" {
		c.Namespace = ""
	}
	if c.BatchExchange == "" {
		c.BatchExchange = c.Namespace + ".batches"
	}
	if c.BatchQueue == "" {
		c.BatchQueue = c.Namespace + ".batches"
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// nameVariables rewrites env's parse errors, which name Go fields, to name
// the environment variable instead.
func nameVariables(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("config: %w", err)
	}
	t := reflect.TypeFor[Config]()
	errs := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				errs = append(errs, fmt.Errorf("config: %s: %w", f.Tag.Get("env"), pe.Err))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("config: %w", e))
	}
	return errors.Join(errs...)
}

// resolveURLs fills REDIS_URL and AMQP_URL from the seed's names, or the defaults.
func (c *Config) resolveURLs() {
	def := Defaults()
	if c.RedisURL == "" && c.RedisHost != "" {
		port := c.RedisPort
		if port == "" {
			port = "6379"
		}
		u := url.URL{Scheme: "redis", Host: net.JoinHostPort(c.RedisHost, port), Path: "/0"}
		if c.RedisUser != "" || c.RedisPass != "" {
			u.User = url.UserPassword(c.RedisUser, c.RedisPass)
		}
		c.RedisURL = u.String()
	}
	if c.RedisURL == "" {
		c.RedisURL = def.RedisURL
	}
	if c.AMQPURL == "" {
		c.AMQPURL = strings.TrimSpace(c.CeleryBroker)
	}
	if c.AMQPURL == "" {
		c.AMQPURL = def.AMQPURL
	}
}

var telegramSecretRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Validate checks every value and reports all problems, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", name, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("HTTP_ADDR", "%q is not host:port", c.HTTPAddr)
	}
	// Unset (the default) means no health endpoint: tests start many
	// workers on one machine.
	if c.HealthAddr != "" {
		if _, port, err := net.SplitHostPort(c.HealthAddr); err != nil {
			bad("HEALTH_ADDR", "%q is not host:port", c.HealthAddr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad("HEALTH_ADDR", "port %q must be a number in 0-65535", port)
		}
	}
	if err := c.checkMetricsAddr(); err != nil {
		bad("METRICS_ADDR", "%v", err)
	}
	if err := checkRedisURL(c.RedisURL); err != nil {
		bad("REDIS_URL", "%q: %v", redact.URL(c.RedisURL), err)
	}
	if err := checkAMQPURL(c.AMQPURL); err != nil {
		bad("AMQP_URL", "%q: %v", redact.URL(c.AMQPURL), err)
	}
	if c.Namespace == "" {
		bad("NAMESPACE", "is set but empty; unset it for the default namespace %q", Defaults().Namespace)
	} else if !namespaceRE.MatchString(c.Namespace) {
		bad("NAMESPACE", "%q must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", c.Namespace)
	}
	if c.QuietWindow < time.Millisecond {
		bad("QUIET_WINDOW", "%s must be at least 1ms", c.QuietWindow)
	}
	if c.MaxWait < 0 {
		bad("MAX_WAIT", "%s must not be negative (0 = no cap)", c.MaxWait)
	}
	if c.MaxBatchMessages < 1 {
		bad("MAX_BATCH_MESSAGES", "%d must be at least 1", c.MaxBatchMessages)
	}
	// The sink package owns the sinks' checks; the errors here name the
	// variable.
	sinks, err := sink.ParseNames(c.Sinks)
	if err != nil {
		bad("SINKS", "%v", err)
	}
	if slices.Contains(sinks, sink.NameHTTP) {
		if err := sink.CheckCallbackURL(c.CallbackURL); err != nil {
			bad("CALLBACK_URL", "%v, when SINKS has http", err)
		}
	}
	if _, err := c.FlushRules(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.checkConversationControl()...)
	if c.EvolutionHeader != "" {
		if _, _, err := evolution.ParseHeader(c.EvolutionHeader); err != nil {
			bad("EVOLUTION_HEADER", "%v", err)
		}
	}
	if c.TelegramSecretToken != "" && !telegramSecretRE.MatchString(c.TelegramSecretToken) {
		bad("TELEGRAM_SECRET_TOKEN", "must be 1-256 characters of A-Z, a-z, 0-9, _ and - (what setWebhook accepts)")
	}
	if err := checkToken(c.ZAPIToken); err != nil {
		bad("ZAPI_TOKEN", "%v", err)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("PUBLIC_URL", "%q must be an http(s) URL", redact.URL(c.PublicURL))
		}
	}
	if c.BodyLimit < 1024 {
		bad("BODY_LIMIT", "%d must be at least 1024 bytes", c.BodyLimit)
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"PUBLISH_TIMEOUT", c.PublishTimeout}, {"DEDUPE_WINDOW", c.DedupeWindow}, {"KEY_TTL", c.KeyTTL},
		{"LEASE", c.Lease}, {"POLL_INTERVAL", c.PollInterval}, {"CALLBACK_TIMEOUT", c.CallbackTimeout},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout}, {"RETRY_BACKOFF_MIN", c.RetryMin}, {"RETRY_BACKOFF_MAX", c.RetryMax},
		{"REDIS_TIMEOUT", c.RedisTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad(p.name, "%s must be positive", p.d)
		}
	}
	if c.IntakeHandoverAfter < 0 {
		bad("INTAKE_HANDOVER_AFTER", "%s must not be negative (0 = never)", c.IntakeHandoverAfter)
	}
	if c.KeyTTL < 10*(c.QuietWindow+c.MaxWait) {
		bad("KEY_TTL", "%s must be at least 10 x (QUIET_WINDOW + MAX_WAIT): it is a leak guard, never the flush", c.KeyTTL)
	}
	if c.Lease < 3*c.CallbackTimeout {
		bad("LEASE", "%s must be at least 3 x CALLBACK_TIMEOUT (%s)", c.Lease, c.CallbackTimeout)
	}
	if c.RetryMax < c.RetryMin {
		bad("RETRY_BACKOFF_MAX", "%s must not be below RETRY_BACKOFF_MIN (%s)", c.RetryMax, c.RetryMin)
	}
	if c.Shards < 1 || c.Shards > keys.MaxShards {
		bad("SHARDS", "%d must be between 1 and %d", c.Shards, keys.MaxShards)
	}
	if c.Prefetch < 1 || c.Prefetch > 65535 {
		bad("PREFETCH", "%d must be between 1 and 65535", c.Prefetch)
	}
	if c.MaxAttempts < 1 {
		bad("MAX_ATTEMPTS", "%d must be at least 1", c.MaxAttempts)
	}
	// Dead-letter retention: a Redis PEXPIRE and the dead-letter queue's
	// x-message-ttl, in ms; RabbitMQ refuses a TTL of about 8.7 years or more.
	if c.DeadLetterTTL < time.Millisecond || c.DeadLetterTTL > MaxDeadLetterTTL {
		bad("DEAD_LETTER_TTL", "%s must be positive (at least 1ms) and at most %s", c.DeadLetterTTL, MaxDeadLetterTTL)
	}
	if c.DeadLetterMax < 1 {
		bad("DEAD_LETTER_MAX", "%d must be positive", c.DeadLetterMax)
	}
	for _, tok := range []struct{ name, value string }{
		{"ADMIN_TOKEN", c.AdminToken}, {"WEBHOOK_TOKEN", c.WebhookToken}, {"API_TOKEN", c.APIToken},
	} {
		if err := checkToken(tok.value); err != nil {
			bad(tok.name, "%v", err)
		}
	}
	limits := []struct {
		name  string
		value int
		least int
	}{
		{"METADATA_MAX_BYTES", c.MetadataMaxBytes, 2},
		{"MAX_BATCH_BYTES", c.MaxBatchBytes, 1024},
		{"MAX_BUFFERED_MESSAGES", c.MaxBufferedMessages, 1},
		{"MAX_BUFFERED_BYTES", c.MaxBufferedBytes, 1024},
	}
	for _, l := range limits {
		if l.value < l.least {
			bad(l.name, "%d must be at least %d", l.value, l.least)
		}
	}
	if c.Deliveries < 1 {
		bad("DELIVERY_CONCURRENCY", "%d must be at least 1", c.Deliveries)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "%q must be debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("LOG_FORMAT", "%q must be text or json", c.LogFormat)
	}
	return errors.Join(errs...)
}

// Process names one of lull's two processes, for a setting whose default
// differs between them.
type Process int

// The processes.
const (
	ProcessAPI Process = iota
	ProcessWorker
)

// PerProcess is a setting's value for each process.
type PerProcess struct{ API, Worker string }

// Of is p's value.
func (v PerProcess) Of(p Process) string {
	if p == ProcessWorker {
		return v.Worker
	}
	return v.API
}

// MetricsOff is the METRICS_ADDR that serves no metrics.
const MetricsOff = "off"

// MetricsListenAddr is where process p serves GET /metrics: METRICS_ADDR,
// or p's default when it is unset; "" when it is MetricsOff.
func (c Config) MetricsListenAddr(p Process) string {
	addr := c.MetricsAddr
	if addr == "" {
		addr = c.MetricsAddrDefault.Of(p)
	}
	if strings.EqualFold(addr, MetricsOff) {
		return ""
	}
	return addr
}

// checkMetricsAddr wants METRICS_ADDR off or host:port, and the api's
// metrics never on its webhook port, which faces the public.
func (c Config) checkMetricsAddr() error {
	for _, p := range []Process{ProcessAPI, ProcessWorker} {
		addr := c.MetricsListenAddr(p)
		if addr == "" {
			continue
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%q is not host:port or %q", addr, MetricsOff)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("port %q must be a number in 0-65535", port)
		}
		if _, httpPort, err := net.SplitHostPort(c.HTTPAddr); p == ProcessAPI && err == nil && port != "0" && port == httpPort {
			return fmt.Errorf("%q must not share HTTP_ADDR's port: the webhook port is public", addr)
		}
	}
	return nil
}

// MustFlushRules is FlushRules of a Config that Load (or Validate) accepted;
// it panics on rules Validate refuses, a programmer error.
func (c Config) MustFlushRules() ingest.RuleSet {
	rs, err := c.FlushRules()
	if err != nil {
		panic(fmt.Sprintf("%v (a Config that Validate refuses)", err))
	}
	return rs
}

// FlushRules is the immediate-flush rules of every source.
func (c Config) FlushRules() (ingest.RuleSet, error) {
	def, err := ingest.ParseRules(c.ImmediateFlush)
	if err != nil {
		return ingest.RuleSet{}, fmt.Errorf("config: IMMEDIATE_FLUSH: %w", err)
	}
	rs := ingest.RuleSet{Default: def, BySource: map[string]ingest.Rules{}, Words: ingest.NewWords(c.FlushWords, c.CancelWords)}
	for _, o := range []struct {
		name, source string
		rules        []string
	}{
		{"IMMEDIATE_FLUSH_GENERIC", "generic", c.ImmediateFlushGeneric},
		{"IMMEDIATE_FLUSH_WHATSAPP", "whatsapp", c.ImmediateFlushWhatsApp},
		{"IMMEDIATE_FLUSH_EVOLUTION", "evolution", c.ImmediateFlushEvolution},
		{"IMMEDIATE_FLUSH_TWILIO", "twilio", c.ImmediateFlushTwilio},
		{"IMMEDIATE_FLUSH_WAHA", "waha", c.ImmediateFlushWAHA},
		{"IMMEDIATE_FLUSH_ZAPI", "zapi", c.ImmediateFlushZAPI},
		{"IMMEDIATE_FLUSH_TELEGRAM", "telegram", c.ImmediateFlushTelegram},
		{"IMMEDIATE_FLUSH_CHATWOOT", "chatwoot", c.ImmediateFlushChatwoot},
	} {
		if o.rules == nil {
			continue
		}
		r, err := ingest.ParseRules(o.rules)
		if err != nil {
			return ingest.RuleSet{}, fmt.Errorf("config: %s: %w", o.name, err)
		}
		if o.source == "telegram" && slices.ContainsFunc(o.rules, isMediaRule) {
			return ingest.RuleSet{}, fmt.Errorf("config: %s: %s is refused: a Telegram album comes as one update per photo, and must stay in one batch", o.name, ingest.RuleMedia)
		}
		rs.BySource[o.source] = r
	}
	return rs, nil
}

func isMediaRule(name string) bool {
	return strings.EqualFold(strings.TrimSpace(name), ingest.RuleMedia)
}

// checkToken applies the rules of a shared secret (ADMIN_TOKEN,
// WEBHOOK_TOKEN): unset, or at least 16 characters with no surrounding
// whitespace — a token of spaces, or one a copy-paste padded, is refused
// rather than compared.
func checkToken(tok string) error {
	switch {
	case tok == "":
		return nil
	case strings.TrimSpace(tok) != tok:
		return errors.New("must not start or end with whitespace")
	case len(tok) < 16:
		return errors.New("must be at least 16 characters when set")
	}
	return nil
}

// checkRedisURL fully validates a Redis URL: scheme, host, port and
// database number, as the client will read it.
func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	switch u.Scheme {
	case "redis", "rediss":
		if err := checkHostPort(u.Host, true); err != nil {
			return err
		}
		if db := strings.Trim(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				return fmt.Errorf("database %q must be a number (redis://host:port/0)", db)
			}
		}
		for _, a := range u.Query()["addr"] {
			if err := checkHostPort(a, false); err != nil {
				return fmt.Errorf("addr %q: %w", a, err)
			}
		}
	case "unix":
		if u.Path == "" {
			return errors.New("unix:// needs a socket path")
		}
	default:
		return errors.New("is not a redis://, rediss:// or unix:// URL")
	}
	// As the client will read it.
	if _, err := redisconn.Options(raw); err != nil {
		return errors.New("is not a valid Redis URL")
	}
	return nil
}

// checkAMQPURL fully validates AMQP_URL, one URL or the comma-separated
// URLs of a cluster's nodes, as the client will read it.
func checkAMQPURL(raw string) error {
	nodes := queue.Nodes(raw)
	if len(nodes) == 0 {
		return errors.New("is empty")
	}
	for i, node := range nodes {
		if err := checkAMQPNode(node); err != nil {
			if len(nodes) == 1 {
				return err
			}
			return fmt.Errorf("node %d of %d: %w", i+1, len(nodes), err)
		}
	}
	return nil
}

// checkAMQPNode fully validates one node's AMQP URL.
func checkAMQPNode(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return errors.New("is not an amqp:// or amqps:// URL")
	}
	if err := checkHostPort(u.Host, true); err != nil {
		return err
	}
	if _, err := amqp.ParseURI(raw); err != nil {
		return errors.New("is not a valid AMQP URL")
	}
	return nil
}

// checkHostPort wants a host and, when present (or required when
// portOptional is false), a port in 1-65535.
func checkHostPort(hostport string, portOptional bool) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// Without a port the client uses its default, where that is allowed.
		var ae *net.AddrError
		if !portOptional || !errors.As(err, &ae) || ae.Err != "missing port in address" {
			return fmt.Errorf("%q is not host:port", hostport)
		}
		host, port = strings.Trim(hostport, "[]"), ""
	}
	if host == "" {
		return errors.New("host is missing")
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q must be a number in 1-65535", port)
		}
	}
	return nil
}

// Logger is the process's logger, as LOG_LEVEL and LOG_FORMAT say.
func (c Config) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
