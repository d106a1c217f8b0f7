// Command api takes webhooks and answers 2xx once each message is durable in
// RabbitMQ; the worker does the rest.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/console"
	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/metrics"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/redisconn"
	"github.com/lullhq/lull/internal/store"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := keys.SetShards(cfg.Shards); err != nil { // config.Load checked it
		fmt.Fprintln(os.Stderr, "config: SHARDS:", err)
		return 2
	}
	log := cfg.Logger(os.Stderr).With("process", "api", "namespace", cfg.Namespace)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The metrics count whether or not METRICS_ADDR serves them.
	var publisher *queue.Publisher
	apiMetrics := metrics.NewAPI(metrics.APIOptions{BrokerReady: func() bool { return publisher.Ready() }})
	publisher, err = queue.NewPublisher(ctx, cfg.AMQPURL, cfg.Namespace, queue.PublisherOptions{
		ConfirmTimeout: cfg.PublishTimeout,
		Logger:         log,
		Inbound:        queue.TopologyOptions{DeadLetterTTL: cfg.DeadLetterTTL, DeadLetterMax: cfg.DeadLetterMax},
		Observer:       apiMetrics,
	})
	if err != nil {
		log.Error("publisher", "err", err)
		return 1
	}
	// Served apart from the webhooks, until the very end.
	if addr := cfg.MetricsListenAddr(config.ProcessAPI); addr != "" {
		ms := metrics.NewServer(metrics.ServerOptions{Addr: addr, Gatherer: apiMetrics.Gatherer(), Logger: log})
		if err := ms.Start(context.Background()); err != nil {
			log.Error("metrics endpoint", "err", err)
			return 1
		}
		defer ms.Stop()
		log.Info("metrics endpoint listening", "addr", ms.Addr())
	}

	// Redis is only asked by /readyz here; connect in the background so the
	// api takes webhooks even while Redis is down.
	var redis atomic.Pointer[rueidis.Client]
	dead := &adminStore{}
	go func() {
		if c, err := redisconn.Connect(ctx, cfg.RedisURL, log); err == nil {
			// Another SHARDS than Redis records would read other keys: stop.
			if err := store.CheckShards(ctx, c, cfg.Namespace, keys.Shards); err != nil {
				log.Error("config: SHARDS: stopping", "err", err)
				stop()
				return
			}
			redis.Store(&c)
			dead.buf.Store(store.New(c, cfg.Namespace, cfg.StoreOptions(log)))
		}
	}()
	ping := func(ctx context.Context) error {
		c := redis.Load()
		if c == nil {
			return errors.New("redis not connected")
		}
		return (*c).Do(ctx, (*c).B().Ping().Build()).Error()
	}

	app := httpapi.New(httpapi.Options{
		Publisher:           publisher,
		RedisPing:           ping,
		BodyLimit:           cfg.BodyLimit,
		PublishTimeout:      cfg.PublishTimeout,
		Logger:              log,
		Rules:               cfg.MustFlushRules(), // config.Load checked them
		WebhookToken:        cfg.WebhookToken,
		Buffered:            dead.Buffered,
		MaxBufferedMessages: int64(cfg.MaxBufferedMessages),
		MaxBufferedBytes:    int64(cfg.MaxBufferedBytes),
		DisableGeneric:      !cfg.WebhookGeneric,
		Limits:              ingest.Limits{MetadataBytes: cfg.MetadataMaxBytes, MessageBytes: cfg.MaxBatchBytes},
		AdminToken:          cfg.AdminToken,
		Admin:               dead,
		APIToken:            cfg.APIToken,
		Conversations:       dead,
		Metrics:             apiMetrics,
		Console: console.New(console.Options{
			Token: cfg.AdminToken, Store: dead.buf.Load, Namespace: cfg.Namespace, Logger: log,
		}),
		Providers: httpapi.ProviderOptions{
			WhatsAppVerifyToken:   cfg.WhatsAppVerifyToken,
			WhatsAppAppSecret:     cfg.WhatsAppAppSecret,
			EvolutionJWTKey:       cfg.EvolutionJWTKey,
			EvolutionHeader:       cfg.EvolutionHeader,
			TwilioAuthToken:       cfg.TwilioAuthToken,
			PublicURL:             cfg.PublicURL,
			WAHAHMACKey:           cfg.WAHAHMACKey,
			ZAPIToken:             cfg.ZAPIToken,
			TelegramSecretToken:   cfg.TelegramSecretToken,
			ChatwootWebhookSecret: cfg.ChatwootWebhookSecret,
		},
	})
	served := make(chan error, 1)
	go func() { served <- app.Listen(cfg.HTTPAddr) }()
	log.Info("api listening", "addr", cfg.HTTPAddr)

	code := 0
	select {
	case <-ctx.Done():
	case err := <-served:
		log.Error("http server stopped", "err", err)
		code = 1
	}

	// Shutdown, in order: stop accepting and let requests under way finish
	// (each waits for its publisher confirm) → close the publisher → Redis.
	log.Info("shutting down")
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelDrain()
	if err := app.Drain(drainCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := publisher.Close(closeCtx); err != nil {
		log.Warn("publisher close", "err", err)
	}
	if c := redis.Load(); c != nil {
		(*c).Close()
	}
	log.Info("api stopped")
	return code
}

// adminStore serves the admin endpoints once Redis is connected.
type adminStore struct {
	buf atomic.Pointer[store.Store]
}

var errNoRedis = fiber.NewError(fiber.StatusServiceUnavailable, "redis not connected")

func (d *adminStore) DeadLetters(ctx context.Context) ([]store.Dead, error) {
	if b := d.buf.Load(); b != nil {
		return b.DeadLetters(ctx)
	}
	return nil, errNoRedis
}

func (d *adminStore) DeadLetterByID(ctx context.Context, id string) (store.Dead, error) {
	if b := d.buf.Load(); b != nil {
		return b.DeadLetterByID(ctx, id)
	}
	return store.Dead{}, errNoRedis
}

func (d *adminStore) Replay(ctx context.Context, id string) error {
	if b := d.buf.Load(); b != nil {
		return b.Replay(ctx, id)
	}
	return errNoRedis
}

func (d *adminStore) Buffered(ctx context.Context, key string) (store.Level, error) {
	if b := d.buf.Load(); b != nil {
		return b.Buffered(ctx, key)
	}
	return store.Level{}, errNoRedis
}

func (d *adminStore) FlushNow(ctx context.Context, key string) (store.Rescheduled, error) {
	if b := d.buf.Load(); b != nil {
		return b.FlushNow(ctx, key)
	}
	return store.Rescheduled{}, errNoRedis
}

func (d *adminStore) ConversationStatus(ctx context.Context, key string) (store.Status, error) {
	if b := d.buf.Load(); b != nil {
		return b.ConversationStatus(ctx, key)
	}
	return store.Status{}, errNoRedis
}

func (d *adminStore) Cancel(ctx context.Context, key string) ([]json.RawMessage, error) {
	if b := d.buf.Load(); b != nil {
		return b.Cancel(ctx, key)
	}
	return nil, errNoRedis
}

func (d *adminStore) Pause(ctx context.Context, key string, dur time.Duration) (store.Paused, error) {
	if b := d.buf.Load(); b != nil {
		return b.Pause(ctx, key, dur)
	}
	return store.Paused{}, errNoRedis
}

func (d *adminStore) Resume(ctx context.Context, key string) (store.Paused, error) {
	if b := d.buf.Load(); b != nil {
		return b.Resume(ctx, key)
	}
	return store.Paused{}, errNoRedis
}

func (d *adminStore) BatchState(ctx context.Context, id string) (store.BatchStatus, error) {
	if b := d.buf.Load(); b != nil {
		return b.BatchState(ctx, id)
	}
	return store.BatchStatus{}, errNoRedis
}

func (d *adminStore) Discard(ctx context.Context, id string) (store.Discarded, error) {
	if b := d.buf.Load(); b != nil {
		return b.Discard(ctx, id)
	}
	return store.Discarded{}, errNoRedis
}
