// Command worker moves inbound messages into conversation buffers, flushes
// each burst as one batch when the conversation goes quiet, and delivers it
// to the configured sinks.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/delivery"
	"github.com/lullhq/lull/internal/health"
	"github.com/lullhq/lull/internal/poller"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/redisconn"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/store"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "dlq" {
		os.Exit(dlq(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := cfg.Logger(os.Stderr).With("process", "worker", "namespace", cfg.Namespace)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	sinks, err := sink.FromNames(cfg.Sinks, sink.Options{
		Log:    os.Stdout,
		HTTP:   sink.HTTPOptions{URL: cfg.CallbackURL, Secret: cfg.CallbackSecret, Timeout: cfg.CallbackTimeout},
		Broker: sink.BrokerOptions{URL: cfg.AMQPURL, Namespace: cfg.Namespace, Timeout: cfg.PublishTimeout, Logger: log},
		AMQP:   sink.AMQPOptions{Exchange: cfg.BatchExchange, Queue: cfg.BatchQueue},
		Celery: sink.CeleryOptions{Queue: cfg.CeleryQueue, Task: cfg.CeleryTask},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "config: SINKS:", err)
		return 2
	}
	// Runs last: after the deliveries finished (or the shutdown timeout),
	// wait briefly for publishes under way, then close the broker sinks'
	// connections.
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sink.Close(closeCtx, sinks); err != nil {
			log.Warn("closing sinks", "err", err)
		}
	}()
	redis, err := redisconn.Connect(ctx, cfg.RedisURL, log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("stopped before redis was reachable", "err", err)
			return 0
		}
		// Not a Redis that is down (Connect waits for that): a URL the
		// client refuses. Say which variable, and fail.
		fmt.Fprintln(os.Stderr, "config: REDIS_URL:", err)
		return 2
	}
	defer redis.Close()

	buf := store.New(redis, cfg.Namespace, store.Options{
		QuietWindow:  cfg.QuietWindow,
		MaxWait:      cfg.MaxWait,
		MaxMessages:  cfg.MaxBatchMessages,
		MaxBytes:     cfg.MaxBatchBytes,
		DedupeWindow: cfg.DedupeWindow,
		TTL:          cfg.KeyTTL,
		Lease:        cfg.Lease,
		// Retention of the dead-letter store (records and per-shard sets).
		DeadLetterTTL: cfg.DeadLetterTTL,
		DeadLetterMax: cfg.DeadLetterMax,
	})
	var pl *poller.Poller
	deliverer := delivery.New(buf, delivery.Options{
		Sinks:        sinks,
		Concurrency:  cfg.Deliveries,
		Retry:        backoff.Policy{Min: cfg.RetryMin, Max: cfg.RetryMax},
		MaxAttempts:  cfg.MaxAttempts,
		RedisTimeout: cfg.RedisTimeout,
		Logger:       log,
		OnCommitted:  func(next, now int64) { pl.WakeAt(next, now) },
	})
	pl = poller.New(buf, deliverer.Deliver, poller.Options{
		Owner: ownerID(), Interval: cfg.PollInterval, RedisTimeout: cfg.RedisTimeout, Logger: log,
	})
	in := appender.New(buf, appender.Options{Logger: log, OnScheduled: pl.WakeAt})
	consumer := queue.NewConsumer(cfg.AMQPURL, cfg.Namespace, queue.ConsumerOptions{
		Prefetch: cfg.Prefetch,
		Logger:   log,
		Inbound:  queue.TopologyOptions{DeadLetterTTL: cfg.DeadLetterTTL, DeadLetterMax: cfg.DeadLetterMax},
	})

	// HEALTH_ADDR: /healthz and /readyz. The endpoint serves until run
	// returns (after Redis is no longer needed, before it is closed), so
	// liveness holds through a graceful shutdown while readiness turns 503
	// as soon as it begins.
	hs := health.New(health.Options{Redis: redis, Namespace: cfg.Namespace, ConsumerReady: consumer.Ready, Logger: log})
	if cfg.HealthAddr != "" {
		ln, err := health.Listen(ctx, cfg.HealthAddr)
		if err != nil {
			log.Error("health endpoint", "err", err)
			return 1
		}
		healthCtx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
		healthDone := make(chan struct{})
		go func() {
			defer close(healthDone)
			if err := hs.Serve(healthCtx, ln); err != nil {
				log.Error("health endpoint stopped", "err", err)
			}
		}()
		defer func() { stopHealth(); <-healthDone }()
		log.Info("health endpoint listening", "addr", ln.Addr().String())
	}

	intakeCtx, stopIntake := context.WithCancel(context.WithoutCancel(ctx))
	defer stopIntake()
	consumed, taken, polled := make(chan error, 1), make(chan struct{}), make(chan struct{})
	go func() {
		consumed <- consumer.Run(ctx, func(d queue.Delivery) { in.Handle(intakeCtx, d.Body, d) })
	}()
	go func() { _ = in.Run(intakeCtx); close(taken) }()
	go func() { _ = pl.Run(ctx); close(polled) }()
	log.Info("worker started", "quiet_window", cfg.QuietWindow, "max_wait", cfg.MaxWait,
		"max_batch_messages", cfg.MaxBatchMessages, "sinks", cfg.Sinks)

	code := 0
	select {
	case <-ctx.Done():
	case err := <-consumed:
		log.Error("consumer stopped", "err", err)
		consumed <- err
		code = 1
		stop()
	}

	// Shutdown, in order: stop consuming (the broker requeues what was not
	// acked) → let the lanes finish the messages they hold → stop claiming
	// batches → let deliveries under way finish (the rest are released for
	// another worker) → close Redis and the sinks' connections (deferred).
	log.Info("shutting down")
	hs.SetStopping()
	<-consumed
	stopIntake()
	<-taken
	<-polled
	finished := make(chan struct{})
	go func() { deliverer.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(cfg.ShutdownTimeout):
		log.Warn("deliveries still running at shutdown timeout; their leases will expire and another worker re-drives them")
	}
	log.Info("worker stopped")
	return code
}

// ownerID names this worker process on the batches it claims.
func ownerID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b))
}
