// Package intake moves inbound deliveries into conversation buffers: it
// decodes each one, appends it to Redis, and settles it exactly once.
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
	"github.com/lullhq/lull/internal/store"
)

// Settler settles one broker delivery.
type Settler interface {
	Ack() error
	Requeue() error
	DeadLetter() error
}

// Options configure an Appender.
type Options struct {
	Lanes       int                       // conversations are spread over this many serial lanes (default 16)
	Logger      *slog.Logger              //
	OnScheduled func(deadline, now int64) // told of every deadline set (the poller's wake-up; Redis clock, Unix ms)
}

type job struct {
	env ingest.Envelope
	s   Settler
}

// Appender appends deliveries to their conversation's buffer. Messages of one
// conversation go through one lane, in queue order.
type Appender struct {
	buf   *store.Store
	opts  Options
	lanes []chan job
	retry backoff.Policy
}

// New returns an Appender writing to buf.
func New(buf *store.Store, opts Options) *Appender {
	if opts.Lanes <= 0 {
		opts.Lanes = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.OnScheduled == nil {
		opts.OnScheduled = func(int64, int64) {}
	}
	lanes := make([]chan job, opts.Lanes)
	for i := range lanes {
		lanes[i] = make(chan job, 16)
	}
	return &Appender{buf: buf, opts: opts, lanes: lanes, retry: backoff.Policy{Min: 50 * time.Millisecond, Max: 2 * time.Second}}
}

// Handle takes one delivery. A body that can never be processed is
// dead-lettered at once; the rest are queued to their conversation's lane.
// It blocks while that lane is full.
func (in *Appender) Handle(ctx context.Context, body []byte, s Settler) {
	env, err := ingest.Decode(body)
	if err != nil {
		in.opts.Logger.Error("poison message dead-lettered", "err", err, "bytes", len(body))
		if err := s.DeadLetter(); err != nil {
			in.opts.Logger.Warn("dead-letter failed", "err", err)
		}
		return
	}
	h := fnv.New32a()
	h.Write([]byte(env.Key))
	select {
	case in.lanes[h.Sum32()%uint32(len(in.lanes))] <- job{env: env, s: s}:
	case <-ctx.Done():
		in.settle(job{env: env, s: s}, s.Requeue)
	}
}

// Run works the lanes until ctx is done, then requeues what they still hold.
func (in *Appender) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, lane := range in.lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.work(ctx, lane)
		}()
	}
	wg.Wait()
	return nil
}

func (in *Appender) work(ctx context.Context, lane chan job) {
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case j := <-lane:
					in.settle(j, j.s.Requeue)
				default:
					return
				}
			}
		case j := <-lane:
			in.process(ctx, j)
		}
	}
}

// process applies one event (appends a message, or extends the quiet
// window of a typing user), retrying Redis errors with backoff, and settles
// its delivery: ack once applied (or found a duplicate), requeue when
// shutting down before that.
func (in *Appender) process(ctx context.Context, j job) {
	defer func() {
		// A panic becomes a requeue: the quorum queue's delivery limit
		// dead-letters a message that keeps failing.
		if r := recover(); r != nil {
			in.opts.Logger.Error("panic processing message, requeued", "conversation", j.env.Key, "message_id", j.env.Message.ID, "panic", r)
			in.settle(j, j.s.Requeue)
		}
	}()
	apply, err := in.applier(j.env)
	if err != nil {
		in.opts.Logger.Error("unencodable message dead-lettered", "conversation", j.env.Key, "message_id", j.env.Message.ID, "err", err)
		in.settle(j, j.s.DeadLetter)
		return
	}
	for attempt := 1; ; attempt++ {
		err := apply(ctx)
		if err == nil {
			in.settle(j, j.s.Ack)
			return
		}
		in.opts.Logger.Warn("append failed, retrying", "conversation", j.env.Key, "message_id", j.env.Message.ID, "attempt", attempt, "err", err)
		if backoff.Sleep(ctx, in.retry.Delay(attempt)) != nil {
			in.settle(j, j.s.Requeue)
			return
		}
	}
}

// applier is the Redis change an envelope asks for.
func (in *Appender) applier(env ingest.Envelope) (func(context.Context) error, error) {
	if env.Kind == ingest.KindTyping {
		return func(ctx context.Context) error {
			r, err := in.buf.Typing(ctx, env.Key)
			if err == nil && r.Moved {
				in.opts.OnScheduled(r.Deadline, r.Now)
			}
			return err
		}, nil
	}
	body, err := jsonenc.Marshal(env.Message)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		a, err := in.buf.Append(ctx, env.Key, env.Message.ID, body, env.FlushNow)
		if err == nil && a.Stored {
			in.opts.OnScheduled(a.Deadline, a.Now)
		}
		return err
	}, nil
}

func (in *Appender) settle(j job, how func() error) {
	if err := how(); err != nil {
		// The channel it came on is gone: the broker redelivers it, and the
		// message id dedupes it.
		in.opts.Logger.Warn("settle failed", "conversation", j.env.Key, "message_id", j.env.Message.ID, "err", err)
	}
}
