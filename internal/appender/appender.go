// Package appender moves consumed messages into conversation buffers: it
// decodes each one, appends it to Redis (store.AppendMany, the messages
// waiting in a lane in one round trip; store.Typing for a typing event), and
// settles it exactly once, only after Redis has it.
//
// An Appender is a startstop.Service. The consumer's handler passes every
// message to Handle, which queues it to the lane of its conversation (one
// lane per conversation hash, so a conversation's messages are appended in
// queue order) and blocks while that lane is full. Start launches the lanes;
// Stop lets each lane finish the Redis call it is making and releases what
// the lanes still hold (queue.Release: the consumer's channel close gives
// it back in queue order). Each message's outcome is decided once, by step (by
// typing for a typing event), and sent from one place, settle.
package appender

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/jsonenc"
	"github.com/lullhq/lull/internal/logthrottle"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/valutil"
)

// Settler settles one consumed message with the broker (queue.Message is
// one). Settle is called exactly once per message.
//
// When the consumer's connection is lost, the lanes still append what they
// hold of the old channel (its settles then fail) while the queue's next
// active consumer gets the same messages again, first, in queue order: a
// conversation's stored order holds because both append it in queue order
// and the dedupe window (DEDUPE_WINDOW) drops the second copy.
type Settler interface {
	Settle(queue.Outcome) error
}

const (
	// DefaultLanes is Options.Lanes when it is zero.
	DefaultLanes = 16
	// laneDepth is how many messages a lane holds before Handle blocks.
	laneDepth = 16
	// batchMax caps how many of a lane's waiting messages go to Redis in
	// one round trip (store.AppendMany).
	batchMax = 64
	// retryMin and retryMax bound the pause between attempts of a Redis
	// change that failed.
	retryMin = 50 * time.Millisecond
	retryMax = 2 * time.Second
	// retryLogEvery: the retry warnings (a failing append or control
	// event) are written at most once per this, counted: an outage costs a
	// line a second, not one per message and attempt.
	retryLogEvery = time.Second
)

// Options configure an Appender.
type Options struct {
	// Lanes is how many serial lanes conversations are spread over. Zero
	// means DefaultLanes.
	Lanes int
	// Logger receives settle and retry events. Nil means slog.Default().
	Logger *slog.Logger
	// Observer hears every Redis round trip and every rejected message.
	// Nil hears nothing.
	Observer Observer
}

// Observer hears what the appender does (metrics.Worker is one). Its
// methods are called on the lanes' goroutines: they must be quick.
type Observer interface {
	// Appended: one round trip of a lane's messages (store.AppendMany)
	// took took; stored were appended, duplicates dropped as already
	// seen, and failed refused (they are retried).
	Appended(stored, duplicates, failed int, took time.Duration)
	// Typing: one typing event's call took took; err is its failure (it
	// is retried).
	Typing(took time.Duration, err error)
	// Rejected: one message went to the dead-letter queue (its body can
	// never be processed).
	Rejected()
}

type noObserver struct{}

func (noObserver) Appended(int, int, int, time.Duration) {}
func (noObserver) Typing(time.Duration, error)           {}
func (noObserver) Rejected()                             {}

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
	obs   Observer
	lanes []chan job
	// stuck is, per lane, what it retries because Redis did not answer:
	// see Stuck.
	stuck []stuckLane
	retry backoff.Policy
	// retryLog and controlLog throttle the retry warnings of appends and
	// of control events (see retryLogEvery): one each, so that a summary
	// line counts only failures of its own kind.
	retryLog, controlLog *logthrottle.Throttle
	// appendMany is buf.AppendMany; tests put a panicking one in.
	appendMany func(context.Context, []store.AppendJob) ([]store.Appended, []error)

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
		appendMany: buf.AppendMany,
		buf:        buf,
		log:        valutil.ValOrDefault(opts.Logger, slog.Default()),
		obs:        valutil.ValOrDefault[Observer](opts.Observer, noObserver{}),
		lanes:      lanes,
		stuck:      make([]stuckLane, len(lanes)),
		retry:      backoff.Policy{Min: retryMin, Max: retryMax},
		retryLog:   logthrottle.New(retryLogEvery),
		controlLog: logthrottle.New(retryLogEvery),
	}
}

// Stuck tells what the lanes retry because Redis does not answer (a
// refused or lost connection, REDIS_TIMEOUT running out: store.Unreachable):
// since when the oldest such append (or control event) fails so, zero when
// none does, and the most deliveries of their messages (how often the queue
// gave them back). What the worker's intake handover watches
// (INTAKE_HANDOVER_AFTER). Error replies (an out-of-memory Redis, a key of
// another type) do not count: another worker would get them too.
func (a *Appender) Stuck() (since time.Time, deliveries int) {
	var s stuckness
	for i := range a.stuck {
		l := a.stuck[i].get()
		s = s.with(l.since, l.deliveries)
	}
	return s.since, s.deliveries
}

// Start launches the lanes and returns at once. They run until Stop (or the
// end of ctx): then each lane finishes the Redis call under way for the
// message it is processing (a change still failing is released rather than
// retried), and what the lanes still hold, or Handle is still trying to
// queue, or Handle gets from then on, is released (queue.Release): nothing
// is appended after Stop, and the consumer's close gives all of it back to
// the queue in queue order. Stop the appender before the consumer.
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
		for i, lane := range a.lanes {
			wg.Go(func() { a.work(ctx, lane, &a.stuck[i]) })
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
			a.releaseAll(lane)
		}
		a.retryLog.Flush()
		a.controlLog.Flush()
	}()
	return nil
}

// Handle takes one message with its body. A body that can never be
// processed is rejected at once; the rest are queued to their
// conversation's lane. It blocks while that lane is full, releases the
// message when the appender is stopping or stopped, and requeues it when
// the appender was never started (start it before the consumer).
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
		o := queue.Release
		if a.done == nil {
			o = queue.Requeue
		}
		a.mu.Unlock()
		a.settle(j, o)
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
		a.settle(j, queue.Release)
	}
}

// work settles the lane's messages until ctx is done. It takes the messages
// waiting in the lane (up to batchMax) and appends them in one Redis round
// trip (store.AppendMany), then settles each with its own outcome; see step.
func (a *Appender) work(ctx context.Context, lane chan job, stuck *stuckLane) {
	var pending []pendingJob // taken from lane, not settled yet, in lane order
	defer func() {
		stuck.set(stuckness{})
		// Stopping: what was taken and not settled is released, like
		// what the lane still holds (Start releases that).
		for _, p := range pending {
			a.settle(p.job, queue.Release)
		}
	}()
	for {
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				return
			case j := <-lane:
				pending = append(pending, pendingJob{job: j, deliveries: deliveriesOf(j.m)})
			}
		}
	fill:
		for len(pending) < batchMax {
			select {
			case j := <-lane:
				pending = append(pending, pendingJob{job: j, deliveries: deliveriesOf(j.m)})
			default:
				break fill
			}
		}
		var stop bool
		pending, stop = a.step(ctx, pending, stuck)
		stuck.set(stuckOf(pending))
		if stop {
			return
		}
	}
}

// pendingJob is a job a lane has taken, with its encoding and its failed
// attempts so far.
type pendingJob struct {
	job
	body     []byte // the message's JSON, once encoded
	attempts int
	// netFailedAt: since when it fails because Redis does not answer
	// (store.Unreachable), zero while its last failure was not that.
	netFailedAt time.Time
	// deliveries: how often the queue gave its message back before
	// (queue.Message.DeliveryCount).
	deliveries int
}

// deliverer is a Settler that knows how often the queue gave its message
// back (queue.Message).
type deliverer interface{ DeliveryCount() int }

func deliveriesOf(m Settler) int {
	if d, ok := m.(deliverer); ok {
		return d.DeliveryCount()
	}
	return 0
}

// stuckness is what fails because Redis does not answer: since when the
// oldest such job fails so (zero: nothing), and the most deliveries of
// those jobs' messages.
type stuckness struct {
	since      time.Time
	deliveries int
}

// with is s and one more job failing since since (zero: not failing so)
// with deliveries.
func (s stuckness) with(since time.Time, deliveries int) stuckness {
	if since.IsZero() {
		return s
	}
	if s.since.IsZero() || since.Before(s.since) {
		s.since = since
	}
	s.deliveries = max(s.deliveries, deliveries)
	return s
}

// stuckLane is a lane's stuckness, read by Stuck.
type stuckLane struct {
	mu sync.Mutex
	s  stuckness
}

func (l *stuckLane) set(s stuckness) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s = s
}

// add counts one more job failing since since with deliveries.
func (l *stuckLane) add(since time.Time, deliveries int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s = l.s.with(since, deliveries)
}

func (l *stuckLane) get() stuckness {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s
}

// stuckOf is what of pending fails because Redis does not answer.
func stuckOf(pending []pendingJob) (s stuckness) {
	for _, p := range pending {
		s = s.with(p.netFailedAt, p.deliveries)
	}
	return s
}

// step applies what it can of pending, the lane's jobs in order, and
// returns those still to apply, in order, or stop once ctx is done.
//
// A conversation's order is kept by giving each round at most one job per
// conversation, its earliest: a job that failed stays in pending ahead of
// the later jobs of its conversation, and is retried (with backoff) before
// them. Messages of distinct conversations go in one store.AppendMany
// round trip; a typing event is applied alone once it is the lane's first
// job, and until then holds back the jobs of its conversation after it.
func (a *Appender) step(ctx context.Context, pending []pendingJob, stuck *stuckLane) (_ []pendingJob, stop bool) {
	if ctx.Err() != nil {
		return pending, true
	}
	if ingest.IsControl(pending[0].env.Kind) {
		// Alone, retried as before until applied or stopping.
		j := pending[0].job
		o := a.typing(ctx, j, pending[0].deliveries, stuck)
		a.settle(j, o)
		return pending[1:], o == queue.Release
	}

	// This round's jobs: the first job of each conversation, typing
	// events aside. Unencodable messages are rejected here.
	var round []int // indexes into pending
	held := make(map[string]bool, len(pending))
	rejected := make(map[int]bool)
	for i := range pending {
		p := &pending[i]
		if held[p.env.Key] {
			continue
		}
		held[p.env.Key] = true
		if ingest.IsControl(p.env.Kind) {
			continue
		}
		if p.body == nil {
			body, err := encode(p.env.Message)
			if err != nil {
				a.log.Error("unencodable message rejected", "conversation", p.env.Key, "message_id", p.env.Message.ID, "err", err)
				a.settle(p.job, queue.Reject)
				rejected[i] = true
				held[p.env.Key] = false // it never will be applied: the next one may go
				continue
			}
			p.body = body
		}
		round = append(round, i)
	}

	errs := a.appendRound(ctx, pending, round)
	// Settle in lane order; keep what failed.
	failed := make(map[int]bool, len(errs))
	worst := 0
	for n, i := range round {
		p := &pending[i]
		if errs[n] == nil {
			a.settle(p.job, queue.Ack)
			continue
		}
		if errs[n] == errPanicked {
			// Requeued it would come back behind the later messages of its
			// conversation: it goes to the dead-letter queue (replayable).
			a.settle(p.job, queue.Reject)
			continue
		}
		p.attempts++
		worst = max(worst, p.attempts)
		failed[i] = true
		switch {
		case !store.Unreachable(errs[n]):
			p.netFailedAt = time.Time{} // Redis answers, with an error
		case p.netFailedAt.IsZero():
			p.netFailedAt = time.Now()
		}
		a.retryLog.Log(ctx, a.log, slog.LevelWarn, "append failed, retrying", slog.String("conversation", p.env.Key),
			slog.String("message_id", p.env.Message.ID), slog.Int("attempt", p.attempts), slog.Any("err", errs[n]))
	}
	inRound := make(map[int]bool, len(round))
	for _, i := range round {
		inRound[i] = true
	}
	rest := pending[:0]
	for i, p := range pending {
		if failed[i] || (!inRound[i] && !rejected[i]) {
			rest = append(rest, p)
		}
	}
	clear(pending[len(rest):]) // drop the settled jobs' references
	if worst > 0 && backoff.Sleep(ctx, a.retry.Delay(worst)) != nil {
		// Still failing when the stop came: released, not retried.
		return rest, true
	}
	return rest, false
}

// encode is the stored form of a message; a panic while encoding is an
// error like any other (the message is rejected), not a crash of the worker.
func encode(m any) (body []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("encode message: panic: %v", r)
		}
	}()
	return jsonenc.Marshal(m)
}

// errPanicked marks a job whose append panicked, alone.
var errPanicked = errors.New("appender: append panicked")

// appendRound appends pending[i] for each i in round in one round trip and
// returns each one's error, in round's order. When the round trip panics,
// each job is appended again on its own: a job whose append panics alone
// gets errPanicked (it is rejected, see step), the others their own
// result, so one bad message neither takes its round with it nor, requeued,
// lets the later messages of its conversation overtake it.
func (a *Appender) appendRound(ctx context.Context, pending []pendingJob, round []int) (errs []error) {
	if len(round) == 0 {
		return nil
	}
	errs, panicked := a.tryAppend(ctx, pending, round)
	if panicked == nil {
		return errs
	}
	if len(round) == 1 {
		a.log.Error("panic processing message, rejected", "conversation", pending[round[0]].env.Key, "message_id", pending[round[0]].env.Message.ID, "panic", panicked)
		return []error{errPanicked}
	}
	errs = make([]error, len(round))
	for n, i := range round {
		errs[n] = a.appendRound(ctx, pending, []int{i})[0]
	}
	return errs
}

// tryAppend is one round trip of appendRound; panicked is what a panic
// during it carried (nil when none).
func (a *Appender) tryAppend(ctx context.Context, pending []pendingJob, round []int) (errs []error, panicked any) {
	defer func() {
		if r := recover(); r != nil {
			errs, panicked = nil, r
		}
	}()
	jobs := make([]store.AppendJob, len(round))
	for n, i := range round {
		p := &pending[i]
		jobs[n] = store.AppendJob{Key: p.env.Key, ID: p.env.Message.ID, Message: p.body, FlushNow: p.env.FlushNow,
			ReceivedAt: batch.ParseMillis(p.env.Message.ReceivedAt), Media: uncaptioned(p.env.Message), Cancel: p.env.Cancel}
	}
	// The call under way outlives a stop (the store bounds it by
	// REDIS_TIMEOUT): messages being appended are finished and acked, not
	// requeued half-way.
	start := time.Now()
	res, errs := a.appendMany(context.WithoutCancel(ctx), jobs)
	a.observeRound(res, errs, time.Since(start))
	for n, r := range res {
		if errs[n] == nil && r.Dropped > 0 {
			a.log.Info("cancel word: the buffer was dropped", "conversation", jobs[n].Key, "message_id", jobs[n].ID, "dropped", r.Dropped)
		}
	}
	return errs, nil
}

// uncaptioned reports a media message without words, which waits for the
// words that usually follow (QUIET_WINDOW_MEDIA).
func uncaptioned(m batch.Message) bool {
	switch m.Type {
	case batch.TypeImage, batch.TypeAudio, batch.TypeVideo, batch.TypeDocument, batch.TypeSticker:
		return strings.TrimSpace(m.Text) == ""
	}
	return false
}

// observeRound tells the Observer what one round trip did.
func (a *Appender) observeRound(res []store.Appended, errs []error, took time.Duration) {
	var stored, duplicates, failed int
	for n, err := range errs {
		switch {
		case err != nil:
			failed++
		case n < len(res) && res[n].Stored:
			stored++
		default:
			duplicates++
		}
	}
	a.obs.Appended(stored, duplicates, failed, took)
}

// releaseAll releases what lane holds.
func (a *Appender) releaseAll(lane chan job) {
	for {
		select {
		case j := <-lane:
			a.settle(j, queue.Release)
		default:
			return
		}
	}
}

// typing extends the quiet window of a typing user, retrying Redis errors
// with backoff, and says how to settle its message: Ack once applied,
// Release when stopping before that, Reject on a panic (as a message's).
func (a *Appender) typing(ctx context.Context, j job, deliveries int, stuck *stuckLane) (o queue.Outcome) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("panic processing message, rejected", "conversation", j.env.Key, "message_id", j.env.Message.ID, "panic", r)
			o = queue.Reject
		}
	}()
	var since time.Time // since when it fails because Redis does not answer
	for attempt := 1; ctx.Err() == nil; attempt++ {
		// The call under way outlives a stop (the store bounds it by
		// REDIS_TIMEOUT).
		err := a.control(context.WithoutCancel(ctx), j.env)
		if err == nil {
			return queue.Ack
		}
		if store.Unreachable(err) {
			if since.IsZero() {
				since = time.Now()
			}
			stuck.add(since, deliveries) // while this one retries
		} else {
			since = time.Time{}
		}
		a.controlLog.Log(ctx, a.log, slog.LevelWarn, "control event failed, retrying", slog.String("kind", j.env.Kind),
			slog.String("conversation", j.env.Key), slog.String("message_id", j.env.Message.ID), slog.Int("attempt", attempt), slog.Any("err", err))
		if backoff.Sleep(ctx, a.retry.Delay(attempt)) != nil {
			break
		}
	}
	return queue.Release
}

// control applies one control event: a typing hint extends the quiet
// window; a pause holds the conversation's batches back until a resume
// (store.Pause with no end), a resume releases them. Pause and resume set
// a state rather than toggle it, so a redelivered one changes nothing.
func (a *Appender) control(ctx context.Context, env ingest.Envelope) error {
	var err error
	switch env.Kind {
	case ingest.KindPause:
		var p store.Paused
		if p, err = a.buf.PauseAt(ctx, env.Key, 0, batch.ParseMillis(env.Message.ReceivedAt)); err == nil {
			a.log.Info("conversation paused", "conversation", env.Key, "source", env.Message.Source, "changed", p.Changed, "stale", p.Stale)
		}
	case ingest.KindResume:
		var p store.Paused
		if p, err = a.buf.ResumeAt(ctx, env.Key, batch.ParseMillis(env.Message.ReceivedAt)); err == nil {
			a.log.Info("conversation resumed", "conversation", env.Key, "source", env.Message.Source, "changed", p.Changed, "stale", p.Stale)
		}
	default:
		start := time.Now()
		_, err = a.buf.Typing(ctx, env.Key)
		a.obs.Typing(time.Since(start), err)
	}
	return err
}

// settle sends a message's outcome: the one place the appender settles.
func (a *Appender) settle(j job, o queue.Outcome) {
	if o == queue.Reject {
		a.obs.Rejected()
	}
	if err := j.m.Settle(o); err != nil {
		// The channel it came on is gone: the broker redelivers it, and the
		// message id dedupes it.
		a.log.Warn("settle failed", "outcome", o.String(), "conversation", j.env.Key, "message_id", j.env.Message.ID, "err", err)
	}
}
