package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/queue"
)

const (
	// maxHandovers: a worker hands the inbound queue over at most this
	// many times until one of its appends succeeds. Each handover adds one
	// to the delivery count of the messages it held (towards the queue's
	// x-delivery-limit), so while all of Redis is down the workers pass the
	// queue round a few times and then the one holding it waits.
	maxHandovers = 3
	// watchEvery is how often the intake looks at its appender.
	watchEvery = 500 * time.Millisecond
)

// intake is the worker's side of the inbound queue, its appender and its
// consumer, and the watch that hands the queue over to another worker
// (INTAKE_HANDOVER_AFTER): the inbound queue has a single active consumer,
// so a worker that cannot reach Redis (a master cut off from it alone)
// would otherwise hold every conversation's appends back. A handover is
// the ordered stop of a shutdown (the appender releases what it holds, the
// consumer closes its channel: the broker gives everything back in queue
// order to the next worker), then both start again, this worker now last
// in the queue's line.
type intake struct {
	app      *appender.Appender
	consumer *queue.Consumer
	after    time.Duration // 0 = never
	log      *slog.Logger

	failed chan struct{} // closed when the consumer ended on its own
	done   chan struct{} // closed when watch returns
}

func newIntake(app *appender.Appender, consumer *queue.Consumer, after time.Duration, log *slog.Logger) *intake {
	return &intake{app: app, consumer: consumer, after: after, log: log, failed: make(chan struct{}), done: make(chan struct{})}
}

// watch runs until ctx ends (then the caller stops app and consumer) or
// the consumer ends on its own (failed closes). Start app and consumer
// first.
func (in *intake) watch(ctx context.Context) {
	defer close(in.done)
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	handovers, succeeded := 0, in.app.Succeeded()
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.consumer.Stopped():
			close(in.failed)
			return
		case <-tick.C:
		}
		if n := in.app.Succeeded(); n != succeeded {
			succeeded, handovers = n, 0
		}
		since := in.app.StuckSince()
		if in.after <= 0 || since.IsZero() || time.Since(since) < in.after || handovers >= maxHandovers {
			continue
		}
		handovers++
		in.log.Warn("appends fail: Redis does not answer this worker; handing the inbound queue over to another worker",
			"failing_for", time.Since(since).Round(time.Millisecond), "handover", handovers, "of_at_most", maxHandovers)
		in.app.Stop()
		in.consumer.Stop()
		// With context.Background(), as at start: they stop when asked.
		if err := in.app.Start(context.Background()); err != nil {
			in.log.Error("appender restart failed", "err", err)
		}
		if err := in.consumer.Start(context.Background()); err != nil {
			in.log.Error("consumer restart failed", "err", err)
		}
	}
}
