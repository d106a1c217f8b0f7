package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/queue"
)

const (
	// handoverDeliveries: no handover once a message the appender retries
	// was given back this many times. Each handover gives back what the
	// worker held (one more towards the queue's DeliveryLimit, after which
	// the message is dead-lettered), so while Redis does not answer any
	// worker the queue passes round a few times, then the worker holding it
	// waits. The messages that are stuck are the oldest, held through every
	// handover: their count bounds how many there were.
	handoverDeliveries = queue.DeliveryLimit / 5
	// watchEvery is how often the intake looks at its appender.
	watchEvery = 500 * time.Millisecond
)

// intake is the worker's side of the inbound queue, its appender and its
// consumer, and the watch that hands the queue over to another worker
// (INTAKE_HANDOVER_AFTER): the inbound queue has a single active consumer,
// so a worker that Redis does not answer (a master cut off from it alone,
// a half-open link) would otherwise hold every conversation's appends
// back. A handover is the ordered stop of a shutdown (the appender
// releases what it holds, the consumer closes its channel: the broker
// gives everything back in queue order to the next worker), then both
// start again, this worker now last in the queue's line.
type intake struct {
	app      *appender.Appender
	consumer *queue.Consumer
	after    time.Duration // 0 = never
	log      *slog.Logger
	// handedOver hears each handover (metrics.Worker.HandedOver).
	handedOver func()

	failed chan struct{} // closed when the consumer ended on its own
	done   chan struct{} // closed when watch returns
}

func newIntake(app *appender.Appender, consumer *queue.Consumer, after time.Duration, log *slog.Logger, handedOver func()) *intake {
	return &intake{app: app, consumer: consumer, after: after, log: log, handedOver: handedOver,
		failed: make(chan struct{}), done: make(chan struct{})}
}

// watch runs until ctx ends (then the caller stops app and consumer) or
// the consumer ends on its own (failed closes). Start app and consumer
// first.
func (in *intake) watch(ctx context.Context) {
	defer close(in.done)
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.consumer.Stopped():
			close(in.failed)
			return
		case <-tick.C:
		}
		since, deliveries := in.app.Stuck()
		if in.after <= 0 || since.IsZero() || time.Since(since) < in.after || deliveries >= handoverDeliveries {
			continue
		}
		select {
		case <-in.consumer.Stopped(): // ended on its own meanwhile: not ours to restart
			close(in.failed)
			return
		default:
		}
		in.log.Warn("appends fail: Redis does not answer this worker; handing the inbound queue over to another worker",
			"failing_for", time.Since(since).Round(time.Millisecond), "deliveries", deliveries, "no_handover_from", handoverDeliveries)
		in.handedOver()
		in.app.Stop()
		in.consumer.Stop()
		if ctx.Err() != nil {
			return // shutting down: the caller's stops find both stopped
		}
		// With context.Background(), as at start: they stop when asked.
		_ = in.app.Start(context.Background())
		_ = in.consumer.Start(context.Background())
	}
}
