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
	"github.com/lullhq/lull/internal/metrics"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/redisconn"
	"github.com/lullhq/lull/internal/scheduler"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/store"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "dlq" {
		os.Exit(dlq(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "shards" {
		os.Exit(shards(os.Args[2:]))
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
		HTTP:   sink.HTTPOptions{URL: cfg.CallbackURL, Secret: cfg.CallbackSecret, Timeout: cfg.CallbackTimeout, MaxConns: cfg.Deliveries},
		Broker: sink.BrokerOptions{URL: cfg.AMQPURL, Namespace: cfg.Namespace, Timeout: cfg.PublishTimeout, Logger: log},
		AMQP:   sink.AMQPOptions{Exchange: cfg.BatchExchange, Queue: cfg.BatchQueue},
		Celery: sink.CeleryOptions{Queue: cfg.CeleryQueue, Task: cfg.CeleryTask},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "config: SINKS:", err)
		return 2
	}
	// Runs last: wait briefly for publishes under way, then close the
	// broker sinks' connections.
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sink.Close(closeCtx, sinks); err != nil {
			log.Warn("closing sinks", "err", err)
		}
	}()
	// Connect waits for a Redis that is down, so it fails when the worker
	// is stopped while waiting, or for a URL the client refuses.
	redis, err := redisconn.Connect(ctx, cfg.RedisURL, log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("stopped before redis was reachable", "err", err)
			return 0
		}
		fmt.Fprintln(os.Stderr, "config: REDIS_URL:", err)
		return 2
	}
	defer redis.Close()
	if err := checkShards(ctx, redis, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "config: SHARDS:", err)
		return 2
	}

	// The data path, in the order a message travels it: consumer →
	// appender → store → scheduler (and reclaimer) → delivery → sinks.
	// Nothing calls back up: the store reports new deadlines through its
	// Alarm, which the scheduler listens to.
	owner := ownerID()
	st := store.New(redis, cfg.Namespace, cfg.StoreOptions(log))
	// The metrics count whether or not METRICS_ADDR serves them; the
	// state gauges and the queue depth are read only when scraped.
	var consumer *queue.Consumer
	depth := queue.NewInboundDepth(cfg.AMQPURL, cfg.Namespace)
	defer depth.Close()
	workerMetrics := metrics.NewWorker(metrics.WorkerOptions{
		Sinks: cfg.Sinks, State: st.State, QueueDepth: depth.Messages,
		BrokerReady: func() bool { return consumer.Ready() }, StateTimeout: cfg.RedisTimeout, Logger: log,
	})
	deliverer := delivery.New(delivery.Options{
		Sinks:       sinks,
		Concurrency: cfg.Deliveries,
		Retry:       backoff.Policy{Min: cfg.RetryMin, Max: cfg.RetryMax},
		MaxAttempts: cfg.MaxAttempts,
		Logger:      log,
		Observer:    workerMetrics,
	})
	schedOpts := scheduler.Options{Owner: owner, Interval: cfg.PollInterval, Logger: log, Observer: workerMetrics}
	sched := scheduler.New(st, deliverer.Deliver, schedOpts)
	reclaim := scheduler.NewReclaimer(st, deliverer.Deliver, schedOpts)
	app := appender.New(st, appender.Options{Logger: log, Observer: workerMetrics})
	consumer, err = queue.NewConsumer(cfg.AMQPURL, cfg.Namespace, func(m queue.Message) { app.Handle(m.Body, m) }, queue.ConsumerOptions{
		Prefetch: cfg.Prefetch,
		Logger:   log,
		Inbound:  queue.TopologyOptions{DeadLetterTTL: cfg.DeadLetterTTL, DeadLetterMax: cfg.DeadLetterMax},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return 2
	}

	// Start from the end of the path back to its start, so every part is
	// running before anything reaches it. HEALTH_ADDR (/healthz, /readyz)
	// is optional; it serves until the very end, so liveness holds through
	// a graceful shutdown while readiness turns 503 as soon as it begins.
	var hs *health.Server
	services := []startstop.Service{sched, reclaim, app, consumer}
	if cfg.HealthAddr != "" {
		hs = health.New(health.Options{Addr: cfg.HealthAddr, Redis: redis, Namespace: cfg.Namespace, ConsumerReady: consumer.Ready, Logger: log})
		services = append([]startstop.Service{hs}, services...)
	}
	// METRICS_ADDR (/metrics) serves until the very end, like the health
	// endpoint.
	var ms *metrics.Server
	if addr := cfg.MetricsListenAddr(config.ProcessWorker); addr != "" {
		ms = metrics.NewServer(metrics.ServerOptions{Addr: addr, Gatherer: workerMetrics.Gatherer(), Logger: log})
		services = append([]startstop.Service{ms}, services...)
	}
	for _, s := range services {
		// Each service stops when asked (below), not with the signal, so
		// that the shutdown goes in order.
		if err := s.Start(context.Background()); err != nil {
			log.Error("start failed", "err", err)
			startstop.StopAllParallel(services...)
			return 1
		}
	}
	if hs != nil {
		log.Info("health endpoint listening", "addr", hs.Addr())
	}
	if ms != nil {
		log.Info("metrics endpoint listening", "addr", ms.Addr())
	}
	log.Info("worker started", "quiet_window", cfg.QuietWindow, "max_wait", cfg.MaxWait,
		"max_batch_messages", cfg.MaxBatchMessages, "sinks", cfg.Sinks)

	in := newIntake(app, consumer, cfg.IntakeHandoverAfter, log, workerMetrics.HandedOver)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	go in.watch(watchCtx)

	code := 0
	select {
	case <-ctx.Done():
	case <-in.failed:
		log.Error("consumer stopped", "err", consumer.Err())
		code = 1
	}
	// No handover from here on.
	stopWatch()
	<-in.done

	// Shutdown, in order, each step after the one before has ended (the
	// intake's watch already stopped above: no handover from here on):
	//  1. readiness turns 503;
	//  2. the appender's lanes finish the Redis call each is making and
	//     release the rest (queue.Release), as they do whatever the
	//     consumer still hands them: nothing is appended from here on;
	//  3. the consumer sends the acks still waiting and closes its channel
	//     without cancelling first: the broker gives back everything not
	//     acked at once, in queue order, and only then makes the next
	//     worker the queue's active consumer (the inbound queue has a
	//     single active consumer), so no other worker appends a
	//     conversation's later message before this one's earlier one;
	//  4. the scheduler and the reclaimer stop claiming; the deliveries they
	//     started see their context end and start no new attempt;
	//  5. the deliveries under way finish, up to SHUTDOWN_TIMEOUT (a batch
	//     not delivered is released for another worker to re-drive at once);
	//  6. the health and metrics endpoints stop; Redis and the sinks close
	//     (deferred).
	log.Info("shutting down")
	if hs != nil {
		hs.SetStopping()
	}
	app.Stop()
	consumer.Stop()
	startstop.StopAllParallel(sched, reclaim)
	waitCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := deliverer.Wait(waitCtx); err != nil {
		log.Warn("deliveries still running at shutdown timeout; their leases will expire and another worker re-drives them")
	}
	if hs != nil {
		hs.Stop()
	}
	if ms != nil {
		ms.Stop()
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
