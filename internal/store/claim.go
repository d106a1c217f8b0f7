package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/lua"
)

// redisRetry is the wait between retries of a claim's Redis call that
// failed: short and capped, since Redis is usually back within seconds (a
// failover, a memory spike), and a sink backoff has nothing to do with it.
var redisRetry = backoff.Policy{Min: 50 * time.Millisecond, Max: time.Second}

// Claim is a batch this worker holds: its messages, built into the batch
// once, and its lease. Begin confirms it before its first attempt, Keep
// renews the lease while the batch is delivered, and exactly one of Commit,
// DeadLetter or Release ends the claim. Its methods retry Redis errors
// (never counting a delivery attempt) for as long as the lease surely lasts,
// and then give up with ErrLeaseRunOut.
type Claim struct {
	Key        string
	Generation int64
	Owner      string
	// Batch is what the sinks receive, built once, at the claim. Its
	// Attempt is the delivery attempt under way once Begin has returned
	// (a flush counts attempt 1 itself; a take-over counts its attempt in
	// Begin); NextAttempt counts the next one.
	Batch batch.Batch
	// FlushedAtMs is when the batch was claimed (Redis clock, Unix ms), and
	// Deadline the flush deadline it was claimed for: FlushedAtMs -
	// Deadline is how late the flush came. Deadline is 0 for a take-over
	// (Reclaim), which was not claimed for a deadline.
	FlushedAtMs int64
	Deadline    int64
	// Unreadable is set when the stored messages could not be read into a
	// batch: such a claim can only be dead-lettered.
	Unreadable error

	st       *Store
	log      *slog.Logger
	held     atomic.Int64 // Unix ns: the lease surely lasts until then
	takeover bool         // from Reclaim: its attempt is not counted yet
}

// ID is the claim's batch id.
func (c *Claim) ID() string { return batch.ID(c.Key, c.Generation) }

// Held reports whether the lease surely still lasts: it was set or renewed
// less than a lease ago (Redis set it from a later clock reading).
func (c *Claim) Held() bool { return time.Now().UnixNano() < c.held.Load() }

func (c *Claim) renewed(start time.Time) { c.held.Store(start.Add(c.st.opts.Lease).UnixNano()) }

// Begin readies the claim for its first delivery attempt in this process,
// and returns ErrLost when it is no longer held:
//   - a take-over (Reclaim) counts its attempt now, so that a take-over
//     that is never delivered (this worker still runs the batch, say)
//     counts none;
//   - a claim that has waited (for a delivery slot) for more than a third
//     of its lease renews it, since another worker may have taken the
//     batch over meanwhile;
//   - a fresh claim from FlushDue, which counted attempt 1 itself, needs
//     no call to Redis.
func (c *Claim) Begin(ctx context.Context) error {
	switch {
	case c.takeover:
		if _, err := c.NextAttempt(ctx); err != nil {
			return err
		}
		c.takeover = false
		return nil
	case time.Until(time.Unix(0, c.held.Load())) > c.st.opts.Lease*2/3:
		return nil
	default:
		return c.retry(ctx, "renew", func(ctx context.Context) error {
			_, err := c.renew(ctx, 0, "")
			return err
		})
	}
}

// FlushResult says why a flush claimed nothing ("" when it claimed a batch).
type FlushResult string

// Why a flush claimed nothing.
const (
	FlushGone   FlushResult = "gone"
	FlushNotDue FlushResult = "not_due"
	FlushBusy   FlushResult = "busy"
	FlushEmpty  FlushResult = "empty"
)

// Flushed is one result of FlushDue.
type Flushed struct {
	Claim  *Claim      // the batch claimed, when Result is ""
	Result FlushResult // why nothing was claimed
	Err    error
}

// FlushDue claims, for owner and in one round trip, the buffer of every
// conversation in convs whose deadline has passed and that has no earlier
// batch in flight. The claim counts the batch's first delivery attempt.
// When a claim leaves the rest of a large buffer due at once (a slice), the
// Alarm hears of it.
func (b *Store) FlushDue(ctx context.Context, convs []string, owner string) []Flushed {
	maxBytes := ""
	if b.opts.MaxBytes > 0 {
		maxBytes = strconv.Itoa(b.opts.MaxBytes)
	}
	execs := make([]rueidis.LuaExec, len(convs))
	for i, c := range convs {
		k := b.keys.Conversation(c)
		execs[i] = rueidis.LuaExec{
			Keys: []string{k.Due, k.Meta, k.Buf, k.Batch, k.Inflight, k.Stats},
			Args: []string{c, ms(b.opts.Lease), owner, b.now(), strconv.Itoa(b.opts.MaxMessages), maxBytes},
		}
	}
	start := time.Now()
	ctx, cancel := b.bound(ctx)
	defer cancel()
	out := make([]Flushed, len(convs))
	for i, res := range lua.Flush.ExecMulti(ctx, b.client, execs...) {
		c, why, err := b.claimReply(res, convs[i], owner, start)
		if err != nil {
			err = fmt.Errorf("flush %s: %w", b.keys.Conversation(convs[i]).Batch, err)
		}
		out[i] = Flushed{Claim: c, Result: FlushResult(why), Err: err}
	}
	return out
}

// Reclaim takes over conversation key's batch for owner if its lease has
// expired; Begin counts the next delivery attempt. ok is false when there
// was nothing to take.
func (b *Store) Reclaim(ctx context.Context, key, owner string) (c *Claim, ok bool, err error) {
	k := b.keys.Conversation(key)
	start := time.Now()
	ctx, cancel := b.bound(ctx)
	defer cancel()
	c, why, err := b.claimReply(lua.Reclaim.Exec(ctx, b.client,
		[]string{k.Inflight, k.Batch},
		[]string{key, ms(b.opts.Lease), owner, b.now()},
	), key, owner, start)
	if err != nil {
		return nil, false, fmt.Errorf("reclaim %s: %w", k.Batch, err)
	}
	if c != nil {
		c.takeover = true
	}
	return c, why == "", nil
}

// claimReply reads {1, gen, reason, flushed_at, attempt, messages[, rest,
// deadline]} or {0, why}. The lease was set after start. A slice that left the rest
// of a buffer due at once is reported to the Alarm.
func (b *Store) claimReply(res rueidis.RedisResult, key, owner string, start time.Time) (_ *Claim, why string, _ error) {
	vals, err := res.ToArray()
	if err != nil {
		return nil, "", err
	}
	if len(vals) == 2 {
		why, err := vals[1].ToString()
		return nil, why, err
	}
	if len(vals) != 10 {
		return nil, "", fmt.Errorf("unexpected reply of %d values", len(vals))
	}
	gen, err := vals[1].AsInt64()
	if err != nil {
		return nil, "", fmt.Errorf("generation: %w", err)
	}
	reason, err := vals[2].ToString()
	if err != nil {
		return nil, "", fmt.Errorf("reason: %w", err)
	}
	flushedAt, err := vals[3].AsInt64()
	if err != nil {
		return nil, "", fmt.Errorf("flushed_at: %w", err)
	}
	attempt, err := vals[4].AsInt64()
	if err != nil {
		return nil, "", fmt.Errorf("attempt: %w", err)
	}
	raw, err := vals[5].ToString()
	if err != nil {
		return nil, "", fmt.Errorf("messages: %w", err)
	}
	rest, err := vals[6].AsInt64()
	if err != nil {
		return nil, "", fmt.Errorf("rest: %w", err)
	}
	if rest == 1 {
		b.alarm.set(flushedAt, flushedAt) // the rest is due at once
	}
	deadline, err := vals[7].AsInt64()
	if err != nil {
		return nil, "", fmt.Errorf("deadline: %w", err)
	}
	paused, err := vals[8].AsInt64()
	if err != nil {
		return nil, "", fmt.Errorf("paused: %w", err)
	}
	var replaces []string
	if s, err := vals[9].ToString(); err != nil {
		return nil, "", fmt.Errorf("replaces: %w", err)
	} else if s != "" {
		if err := json.Unmarshal([]byte(s), &replaces); err != nil {
			return nil, "", fmt.Errorf("replaces %q: %w", s, err)
		}
	}
	c := &Claim{Key: key, Generation: gen, Owner: owner, FlushedAtMs: flushedAt, Deadline: deadline, st: b}
	c.log = b.log.With("conversation", key, "batch_id", c.ID())
	c.renewed(start)
	// The batch is built here, once: a retry changes only its attempt.
	var msgs []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &msgs); err != nil {
		c.Unreadable = fmt.Errorf("messages: %w", err)
	} else if c.Batch, err = batch.New(key, gen, reason, flushedAt, int(attempt), msgs); err != nil {
		c.Unreadable = err
	}
	if c.Unreadable != nil {
		c.Batch = batch.Batch{BatchID: c.ID(), Key: key, Generation: gen, Reason: reason, Attempt: int(attempt)}
	}
	c.Batch.Paused, c.Batch.Replaces = paused == 1, replaces
	if b.opts.StatusURL != "" {
		c.Batch.StatusURL = b.opts.StatusURL + url.PathEscape(c.ID())
	}
	return c, "", nil
}

// Keep renews the lease every third of it until ctx ends (it then returns
// nil), and returns ErrLost as soon as the batch is no longer held. A
// renewal that fails on a Redis error is tried again at the next tick: two
// more chances before the lease runs out.
func (c *Claim) Keep(ctx context.Context) error {
	t := time.NewTicker(c.st.opts.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_, err := c.renew(ctx, 0, "")
		if errors.Is(err, ErrLost) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("lease renewal failed; retrying at the next renewal", "err", err)
		}
	}
}

// NextAttempt counts the next delivery attempt (a retry) and renews the
// lease; it returns the attempt's number, which Batch.Attempt now holds.
// Naming the attempt rather than adding one makes a call retried after a
// lost reply count once.
func (c *Claim) NextAttempt(ctx context.Context) (int, error) {
	var n int
	err := c.retry(ctx, "count attempt", func(ctx context.Context) error {
		var err error
		n, err = c.renew(ctx, c.Batch.Attempt+1, "")
		return err
	})
	if err == nil {
		c.Batch.Attempt = n
	}
	return n, err
}

// maxLastError bounds the last_error a batch keeps, in bytes.
const maxLastError = 1024

// Failed records why the attempt under way failed, as the batch's
// last_error, for operators to see while it waits for its next attempt. It
// renews the lease too, and is tried once: the record is advisory.
func (c *Claim) Failed(ctx context.Context, why string) error {
	if why == "" {
		why = "failed"
	}
	if len(why) > maxLastError {
		why = strings.ToValidUTF8(why[:maxLastError], "") + "…"
	}
	_, err := c.renew(ctx, 0, why)
	return err
}

// renew extends the lease once, recording attempt when it is > 0 and the
// last error when lastErr is not empty.
func (c *Claim) renew(ctx context.Context, attempt int, lastErr string) (int, error) {
	k := c.st.keys.Conversation(c.Key)
	start := time.Now()
	ctx, cancel := c.st.bound(ctx)
	defer cancel()
	n, err := lua.Renew.Exec(ctx, c.st.client,
		[]string{k.Batch, k.Inflight},
		[]string{c.Key, strconv.FormatInt(c.Generation, 10), c.Owner, ms(c.st.opts.Lease), strconv.Itoa(attempt), c.st.now(), lastErr},
	).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("renew %s: %w", k.Batch, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("renew %s: %w", k.Batch, ErrLost)
	}
	c.renewed(start)
	return int(n), nil
}

// Committed is the outcome of a commit.
type Committed struct {
	Next int64 // deadline of messages buffered meanwhile, Unix ms (-1: none)
	Now  int64 // Redis clock, Unix ms
	// Already is true when an earlier call had committed the batch (a retry
	// whose first reply was lost): nothing changed, and the batch is done.
	Already bool
}

// Commit deletes the delivered batch, records its generation as committed
// and releases its conversation, so what arrived meanwhile flushes on its
// own deadline (reported to the Alarm). Committing a batch that is already
// committed succeeds with Already set. It returns ErrLost only when the
// batch was taken over: another generation holds it, or it is gone without
// having been committed (dead-lettered, say).
func (c *Claim) Commit(ctx context.Context) (Committed, error) {
	k := c.st.keys.Conversation(c.Key)
	var res Committed
	err := c.retry(ctx, "commit", func(ctx context.Context) error {
		vals, err := lua.Commit.Exec(ctx, c.st.client,
			[]string{k.Batch, k.Inflight, k.Due, k.Meta, k.Buf, k.Stats, k.Last},
			[]string{c.Key, strconv.FormatInt(c.Generation, 10), ms(c.st.opts.TTL), c.st.now(), ms(c.st.opts.KeepDelivered)},
		).AsIntSlice()
		if err != nil {
			return fmt.Errorf("commit %s: %w", k.Batch, err)
		}
		if len(vals) != 3 {
			return fmt.Errorf("commit %s: unexpected reply %v", k.Batch, vals)
		}
		switch vals[0] {
		case 1, 2:
			res = Committed{Next: vals[1], Now: vals[2], Already: vals[0] == 2}
			c.st.alarm.set(vals[1], vals[2])
			return nil
		case 0:
			return fmt.Errorf("commit %s generation %d: %w", k.Batch, c.Generation, ErrLost)
		}
		return fmt.Errorf("commit %s: unexpected status %d", k.Batch, vals[0])
	})
	return res, err
}

// DeadLetter moves the batch to the dead-letter store with why, and
// releases its conversation like Commit does. The record expires after
// DeadLetterTTL; the shard's oldest dead letters beyond its share of
// DeadLetterMax, and any older than DeadLetterTTL, are removed with their
// records in the same atomic step.
func (c *Claim) DeadLetter(ctx context.Context, why string) error {
	k := c.st.keys.Conversation(c.Key)
	id := c.ID()
	record := k.DeadRecord(c.Generation)
	// Every record of the shard is prefix + batch id; dead.lua derives the
	// records it trims from it.
	prefix, ok := strings.CutSuffix(record, id)
	if !ok {
		return fmt.Errorf("dead-letter %s: record key %s does not end in the batch id", id, record)
	}
	ttl, perShard := c.st.deadRetention()
	return c.retry(ctx, "dead-letter", func(ctx context.Context) error {
		vals, err := lua.Dead.Exec(ctx, c.st.client,
			[]string{k.Batch, k.Inflight, k.Due, k.Meta, k.Buf, k.Dead, record, k.Stats},
			[]string{c.Key, strconv.FormatInt(c.Generation, 10), id, why, c.st.now(), ttl, perShard, prefix},
		).AsIntSlice()
		if err != nil {
			return fmt.Errorf("dead-letter %s: %w", id, err)
		}
		if len(vals) != 3 {
			return fmt.Errorf("dead-letter %s: unexpected reply %v", id, vals)
		}
		if vals[0] != 1 {
			return fmt.Errorf("dead-letter %s: %w", id, ErrLost)
		}
		c.st.alarm.set(vals[1], vals[2])
		return nil
	})
}

// Release gives the lease up at once, so any worker's reclaimer re-drives
// the batch on its next scan (at shutdown, instead of waiting for the lease
// to run out). It is tried once: should it fail, the lease runs out.
func (c *Claim) Release(ctx context.Context) error {
	k := c.st.keys.Conversation(c.Key)
	ctx, cancel := c.st.bound(ctx)
	defer cancel()
	n, err := lua.Release.Exec(ctx, c.st.client,
		[]string{k.Batch, k.Inflight},
		[]string{c.Key, strconv.FormatInt(c.Generation, 10), c.Owner, c.st.now()},
	).AsInt64()
	if err != nil {
		return fmt.Errorf("release %s: %w", k.Batch, err)
	}
	if n < 0 {
		return fmt.Errorf("release %s: %w", k.Batch, ErrLost)
	}
	return nil
}

// retry runs op, each call bounded by RedisTimeout, until it succeeds or
// answers ErrLost. A Redis error is retried after redisRetry. It gives up
// with ErrLeaseRunOut once the lease has run out without a renewal, and
// with ctx's error when ctx ends.
func (c *Claim) retry(ctx context.Context, what string, op func(context.Context) error) error {
	for n := 1; ; n++ {
		callCtx, cancel := c.st.bound(ctx)
		err := op(callCtx)
		cancel()
		if err == nil || errors.Is(err, ErrLost) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if !c.Held() {
			return fmt.Errorf("%s: %w: %w", what, ErrLeaseRunOut, err)
		}
		wait := redisRetry.Delay(n)
		// One warning per outage and claim; the retries that follow would
		// repeat it every second for every batch in flight.
		level := slog.LevelDebug
		if n == 1 {
			level = slog.LevelWarn
		}
		c.log.Log(ctx, level, "redis call failed, retrying", "op", what, "err", err, "retry", n, "retry_in", wait.Round(time.Millisecond))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}
