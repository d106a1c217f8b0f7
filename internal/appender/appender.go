// Package appender moves consumed messages into conversation buffers: it
// decodes each one, appends it to Redis (store.Append, or store.Typing for a
// typing event), and settles it exactly once.
//
// An Appender is a startstop.Service. The consumer's handler passes every
// message to Handle, which queues it to the lane of its conversation (one
// lane per conversation hash, so a conversation's messages are appended in
// queue order) and blocks while that lane is full. Start launches the lanes;
// Stop lets each lane finish the message it is processing and requeues what
// the lanes still hold. Each message's outcome is decided once, by outcome,
// and sent from one place, settle.
package appender

import (
	"context"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/jsonenc"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/valutil"
)

// Settler settles one consumed message with the broker (queue.Message is
// one). Settle is called exactly once per message.
type Settler interface {
	Settle(queue.Outcome) error
}

const (
	// DefaultLanes is Options.Lanes when it is zero.
	DefaultLanes = 16
	// laneDepth is how many messages a lane holds before Handle blocks.
	laneDepth = 16
	// retryMin and retryMax bound the pause between attempts of a Redis
	// change that failed.
	retryMin = 50 * time.Millisecond
	retryMax = 2 * time.Second
)

// Options configure an Appender.
type Options struct {
	// Lanes is how many serial lanes conversations are spread over. Zero
	// means DefaultLanes.
	Lanes int
	// Logger receives settle and retry events. Nil means slog.Default().
	Logger *slog.Logger
}

type job struct {
	env ingest.Envelope
	m   Settler
}

// Appender appends messages to their conversation's buffer. Messages of one
// conversation go through one lane, in queue order.
type Appender struct {
	startstop.BaseStartStop

	buf   *store.Store
	log   *slog.Logger
	lanes []chan job
	retry backoff.Policy

	mu       sync.Mutex
	done     <-chan struct{} // the running lanes' ctx.Done(); nil before the first Start
	stopping bool            // the lanes' ctx is done: Handle queues nothing more
	handling sync.WaitGroup  // Handle calls that may still queue a job
}

// New returns an Appender writing to buf; nothing is appended until Start.
func New(buf *store.Store, opts Options) *Appender {
	lanes := make([]chan job, valutil.ValOrDefault(opts.Lanes, DefaultLanes))
	for i := range lanes {
		lanes[i] = make(chan job, laneDepth)
	}
	return &Appender{
		buf:   buf,
		log:   valutil.ValOrDefault(opts.Logger, slog.Default()),
		lanes: lanes,
		retry: backoff.Policy{Min: retryMin, Max: retryMax},
	}
}

// Start launches the lanes and returns at once. They run until Stop (or the
// end of ctx): then each lane finishes the Redis call under way for the
// message it is processing (a change still failing is requeued rather than
// retried), and what the lanes still hold, or Handle is still trying to
// queue, is requeued.
func (a *Appender) Start(ctx context.Context) error {
	ctx, ok, started, stopped := a.StartInit(ctx)
	if !ok {
		return nil
	}
	a.mu.Lock()
	a.done, a.stopping = ctx.Done(), false
	a.mu.Unlock()
	go func() {
		started()
		defer stopped()
		var wg sync.WaitGroup
		for _, lane := range a.lanes {
			wg.Go(func() { a.work(ctx, lane) })
		}
		<-ctx.Done()
		a.mu.Lock()
		a.stopping = true
		a.mu.Unlock()
		// Handle calls under way see ctx done and return; after them,
		// nothing more is queued.
		a.handling.Wait()
		wg.Wait()
		for _, lane := range a.lanes {
			a.requeueAll(lane)
		}
	}()
	return nil
}

// Handle takes one message with its body. A body that can never be
// processed is rejected at once; the rest are queued to their
// conversation's lane. It blocks while that lane is full, and requeues the
// message when the appender is stopping, stopped or not started yet (start
// it before the consumer).
func (a *Appender) Handle(body []byte, m Settler) {
	env, err := ingest.Decode(body)
	if err != nil {
		a.log.Error("poison message rejected", "err", err, "bytes", len(body))
		a.settle(job{m: m}, queue.Reject)
		return
	}
	j := job{env: env, m: m}
	a.mu.Lock()
	if a.done == nil || a.stopping {
		// Not started, or stopping: no lane will take it.
		a.mu.Unlock()
		a.settle(j, queue.Requeue)
		return
	}
	done := a.done
	a.handling.Add(1)
	a.mu.Unlock()
	defer a.handling.Done()
	h := fnv.New32a()
	h.Write([]byte(env.Key))
	select {
	case a.lanes[h.Sum32()%uint32(len(a.lanes))] <- j:
	case <-done:
		a.settle(j, queue.Requeue)
	}
}

// work settles the lane's messages one after the other until ctx is done.
func (a *Appender) work(ctx context.Context, lane chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-lane:
			a.settle(j, a.outcome(ctx, j))
		}
	}
}

// requeueAll requeues what lane holds.
func (a *Appender) requeueAll(lane chan job) {
	for {
		select {
		case j := <-lane:
			a.settle(j, queue.Requeue)
		default:
			return
		}
	}
}

// outcome applies one event (appends a message, or extends the quiet
// window of a typing user), retrying Redis errors with backoff, and says
// how to settle its message: Ack once applied (or found a duplicate),
// Reject when it can never be applied, Requeue when stopping before that
// or on a panic.
func (a *Appender) outcome(ctx context.Context, j job) (o queue.Outcome) {
	defer func() {
		// A panic becomes a requeue: the quorum queue's delivery limit
		// dead-letters a message that keeps failing.
		if r := recover(); r != nil {
			a.log.Error("panic processing message, requeued", "conversation", j.env.Key, "message_id", j.env.Message.ID, "panic", r)
			o = queue.Requeue
		}
	}()
	if ctx.Err() != nil {
		return queue.Requeue
	}
	apply, err := a.applier(j.env)
	if err != nil {
		a.log.Error("unencodable message rejected", "conversation", j.env.Key, "message_id", j.env.Message.ID, "err", err)
		return queue.Reject
	}
	for attempt := 1; ; attempt++ {
		// The call under way outlives a stop (the store bounds it by
		// REDIS_TIMEOUT): a message being appended is finished and acked,
		// not requeued half-way.
		err := apply(context.WithoutCancel(ctx))
		if err == nil {
			return queue.Ack
		}
		a.log.Warn("append failed, retrying", "conversation", j.env.Key, "message_id", j.env.Message.ID, "attempt", attempt, "err", err)
		if backoff.Sleep(ctx, a.retry.Delay(attempt)) != nil {
			return queue.Requeue
		}
	}
}

// applier is the Redis change an envelope asks for.
func (a *Appender) applier(env ingest.Envelope) (func(context.Context) error, error) {
	if env.Kind == ingest.KindTyping {
		return func(ctx context.Context) error {
			_, err := a.buf.Typing(ctx, env.Key)
			return err
		}, nil
	}
	body, err := jsonenc.Marshal(env.Message)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		_, err := a.buf.Append(ctx, env.Key, env.Message.ID, body, env.FlushNow)
		return err
	}, nil
}

// settle sends a message's outcome: the one place the appender settles.
func (a *Appender) settle(j job, o queue.Outcome) {
	if err := j.m.Settle(o); err != nil {
		// The channel it came on is gone: the broker redelivers it, and the
		// message id dedupes it.
		a.log.Warn("settle failed", "outcome", o.String(), "conversation", j.env.Key, "message_id", j.env.Message.ID, "err", err)
	}
}
