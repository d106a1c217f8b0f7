// Package buffer owns a namespace's conversation state in Redis: it appends
// messages, finds due conversations, claims, renews, commits and reclaims
// batches. Every state change is one atomic Lua script (see lua/); callers
// never see raw replies.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/lua"
)

// ErrLost means the caller no longer holds a batch: it was committed, or
// reclaimed by another worker after its lease expired.
var ErrLost = errors.New("store: batch no longer held")

// Options are the buffering rules.
type Options struct {
	QuietWindow  time.Duration // flush after this long without a message
	MaxWait      time.Duration // flush at the latest this long after a burst's first message (0 = no cap)
	MaxMessages  int           // flush at once when a buffer holds this many
	MaxBytes     int           // a batch's messages hold at most this many bytes of JSON (0 = no limit)
	DedupeWindow time.Duration // how long a message id is remembered
	TTL          time.Duration // safety TTL of buffers and metadata
	Lease        time.Duration // how long a claimed batch is held before another worker may reclaim it
	// Dead-letter retention (see DeadLetter): a dead-lettered batch is kept
	// this long (default 720h), and at most DeadLetterMax of them (default
	// 10000, spread over the shards) are kept, the oldest going first.
	DeadLetterTTL time.Duration
	DeadLetterMax int
	Now           func() int64 // tests only: a fixed clock in Unix ms instead of Redis TIME
}

// Buffer is the Redis state of one namespace.
type Store struct {
	client rueidis.Client
	keys   keys.Space
	opts   Options
}

// New returns the buffer of namespace ns.
func New(client rueidis.Client, ns string, opts Options) *Store {
	if opts.MaxMessages <= 0 {
		opts.MaxMessages = 100
	}
	return &Store{client: client, keys: keys.New(ns), opts: opts}
}

// Keys is the buffer's key space.
func (b *Store) Keys() keys.Space { return b.keys }

// Lease is how long a claim is held.
func (b *Store) Lease() time.Duration { return b.opts.Lease }

func (b *Store) now() string {
	if b.opts.Now == nil {
		return ""
	}
	return strconv.FormatInt(b.opts.Now(), 10)
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Appended is the outcome of an append.
type Appended struct {
	Stored     bool  // false: the message id was already stored (a duplicate)
	Generation int64 // the conversation's generation after the call
	Count      int64 // messages buffered
	Deadline   int64 // flush deadline, Unix ms (-1: none)
	Now        int64 // Redis clock at the append, Unix ms
}

// Append stores message (its JSON encoding) with id in conversation key's
// buffer unless id was seen within the dedupe window, and reschedules the
// conversation's flush (at once when flushNow).
func (b *Store) Append(ctx context.Context, key, id string, message []byte, flushNow bool) (Appended, error) {
	k := b.keys.Conversation(key)
	now := ""
	if flushNow {
		now = "1"
	}
	vals, err := lua.Append.Exec(ctx, b.client,
		[]string{k.Buf, k.Meta, k.Seen, k.Due},
		[]string{key, id, string(message), ms(b.opts.QuietWindow), ms(b.opts.MaxWait),
			strconv.Itoa(b.opts.MaxMessages), ms(b.opts.DedupeWindow), ms(b.opts.TTL), b.now(), now},
	).AsIntSlice()
	if err != nil {
		return Appended{}, fmt.Errorf("append %s: %w", k.Buf, err)
	}
	if len(vals) != 5 {
		return Appended{}, fmt.Errorf("append %s: unexpected reply %v", k.Buf, vals)
	}
	return Appended{Stored: vals[0] == 1, Generation: vals[1], Count: vals[2], Deadline: vals[3], Now: vals[4]}, nil
}

// Rescheduled is the outcome of Typing and FlushNow.
type Rescheduled struct {
	Moved    bool  // the deadline changed
	Deadline int64 // the deadline in force, Unix ms (-1: nothing buffered)
	Now      int64 // Redis clock, Unix ms
}

// Typing extends conversation key's quiet window from now, as a new message
// would (still capped by max wait): the user is typing or recording. It does
// nothing when nothing is buffered.
func (b *Store) Typing(ctx context.Context, key string) (Rescheduled, error) {
	return b.schedule(ctx, key, "typing")
}

// FlushNow makes conversation key due at once (reason "manual").
func (b *Store) FlushNow(ctx context.Context, key string) (Rescheduled, error) {
	return b.schedule(ctx, key, "manual")
}

func (b *Store) schedule(ctx context.Context, key, mode string) (Rescheduled, error) {
	k := b.keys.Conversation(key)
	vals, err := lua.Schedule.Exec(ctx, b.client,
		[]string{k.Buf, k.Meta, k.Due},
		[]string{key, mode, ms(b.opts.QuietWindow), ms(b.opts.MaxWait), b.now()},
	).AsIntSlice()
	if err != nil {
		return Rescheduled{}, fmt.Errorf("%s %s: %w", mode, k.Meta, err)
	}
	if len(vals) != 3 {
		return Rescheduled{}, fmt.Errorf("%s %s: unexpected reply %v", mode, k.Meta, vals)
	}
	return Rescheduled{Moved: vals[0] == 1, Deadline: vals[1], Now: vals[2]}, nil
}

// Scheduled is a conversation (or lease) whose time has come.
type Scheduled struct {
	Key string
	At  int64 // its deadline or lease expiry, Unix ms
}

// Schedule is what one shard's schedule holds now.
type Schedule struct {
	Now  int64       // Redis clock, Unix ms
	Next int64       // earliest future entry, Unix ms (-1: none)
	Due  []Scheduled // entries whose time has come
}

// Due returns, for every shard, the conversations whose deadline has passed
// (at most limit per shard) and when the next one is due.
func (b *Store) Due(ctx context.Context, limit int) ([]Schedule, error) {
	return b.ready(ctx, limit, b.keys.Due)
}

// Expired returns, for every shard, the batches whose lease has expired.
func (b *Store) Expired(ctx context.Context, limit int) ([]Schedule, error) {
	return b.ready(ctx, limit, b.keys.Inflight)
}

func (b *Store) ready(ctx context.Context, limit int, key func(int) string) ([]Schedule, error) {
	execs := make([]rueidis.LuaExec, keys.Shards)
	for s := range execs {
		execs[s] = rueidis.LuaExec{Keys: []string{key(s)}, Args: []string{strconv.Itoa(limit), b.now()}}
	}
	out := make([]Schedule, 0, keys.Shards)
	for s, res := range lua.Ready.ExecMulti(ctx, b.client, execs...) {
		vals, err := res.ToArray()
		if err != nil {
			return nil, fmt.Errorf("ready %s: %w", key(s), err)
		}
		if len(vals) < 2 || len(vals)%2 != 0 {
			return nil, fmt.Errorf("ready %s: unexpected reply of %d values", key(s), len(vals))
		}
		var sc Schedule
		if sc.Now, err = vals[0].AsInt64(); err != nil {
			return nil, fmt.Errorf("ready %s: now: %w", key(s), err)
		}
		if sc.Next, err = vals[1].AsInt64(); err != nil {
			return nil, fmt.Errorf("ready %s: next: %w", key(s), err)
		}
		for i := 2; i < len(vals); i += 2 {
			member, err := vals[i].ToString()
			if err != nil {
				return nil, fmt.Errorf("ready %s: member: %w", key(s), err)
			}
			at, err := vals[i+1].AsInt64()
			if err != nil {
				return nil, fmt.Errorf("ready %s: score: %w", key(s), err)
			}
			sc.Due = append(sc.Due, Scheduled{Key: member, At: at})
		}
		out = append(out, sc)
	}
	return out, nil
}

// Generations returns the current generation of each conversation (0 when it
// has none), in one round trip.
func (b *Store) Generations(ctx context.Context, convs []string) ([]string, error) {
	cmds := make(rueidis.Commands, len(convs))
	for i, c := range convs {
		cmds[i] = b.client.B().Hget().Key(b.keys.Conversation(c).Meta).Field("gen").Build()
	}
	out := make([]string, len(convs))
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		g, err := res.ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, fmt.Errorf("generation %s: %w", b.keys.Conversation(convs[i]).Meta, err)
		}
		out[i] = g
	}
	return out, nil
}

// Claim is a batch a worker holds.
type Claim struct {
	Key        string
	Generation int64
	Reason     string
	FlushedAt  int64 // Unix ms
	Attempt    int   // delivery attempts counted so far
	Messages   []json.RawMessage
	Owner      string
}

// FlushResult says why a flush claimed nothing ("" when it claimed a batch).
type FlushResult string

// Why a flush claimed nothing.
const (
	FlushGone   FlushResult = "gone"
	FlushNotDue FlushResult = "not_due"
	FlushStale  FlushResult = "stale"
	FlushBusy   FlushResult = "busy"
	FlushEmpty  FlushResult = "empty"
)

// Flush claims conversation key's buffer as a batch for owner if its deadline
// has passed, its generation is still genSeen ("" = any) and no earlier batch
// of it is in flight. When it claims nothing, the result says why.
func (b *Store) Flush(ctx context.Context, key, genSeen, owner string) (Claim, FlushResult, error) {
	return b.FlushMany(ctx, []string{key}, []string{genSeen}, owner)[0].unpack()
}

// FlushOutcome is one result of FlushMany.
type FlushOutcome struct {
	Claim  Claim
	Result FlushResult // "" when Claim holds a batch
	Err    error
}

func (o FlushOutcome) unpack() (Claim, FlushResult, error) { return o.Claim, o.Result, o.Err }

// FlushMany runs Flush for many conversations in one round trip.
func (b *Store) FlushMany(ctx context.Context, convs, gensSeen []string, owner string) []FlushOutcome {
	maxBytes := ""
	if b.opts.MaxBytes > 0 {
		maxBytes = strconv.Itoa(b.opts.MaxBytes)
	}
	execs := make([]rueidis.LuaExec, len(convs))
	for i, c := range convs {
		k := b.keys.Conversation(c)
		execs[i] = rueidis.LuaExec{
			Keys: []string{k.Due, k.Meta, k.Buf, k.Batch, k.Inflight},
			Args: []string{c, gensSeen[i], ms(b.opts.Lease), owner, b.now(), strconv.Itoa(b.opts.MaxMessages), maxBytes},
		}
	}
	out := make([]FlushOutcome, len(convs))
	for i, res := range lua.Flush.ExecMulti(ctx, b.client, execs...) {
		c, why, err := claimReply(res, convs[i], owner)
		if err != nil {
			err = fmt.Errorf("flush %s: %w", b.keys.Conversation(convs[i]).Batch, err)
		}
		out[i] = FlushOutcome{Claim: c, Result: FlushResult(why), Err: err}
	}
	return out
}

// claimReply reads {1, gen, reason, flushed_at, attempt, messages} or {0, why}.
func claimReply(res rueidis.RedisResult, key, owner string) (Claim, string, error) {
	vals, err := res.ToArray()
	if err != nil {
		return Claim{}, "", err
	}
	if len(vals) == 2 {
		why, err := vals[1].ToString()
		return Claim{}, why, err
	}
	if len(vals) != 6 {
		return Claim{}, "", fmt.Errorf("unexpected reply of %d values", len(vals))
	}
	c := Claim{Key: key, Owner: owner}
	if c.Generation, err = vals[1].AsInt64(); err != nil {
		return Claim{}, "", fmt.Errorf("generation: %w", err)
	}
	if c.Reason, err = vals[2].ToString(); err != nil {
		return Claim{}, "", fmt.Errorf("reason: %w", err)
	}
	if c.FlushedAt, err = vals[3].AsInt64(); err != nil {
		return Claim{}, "", fmt.Errorf("flushed_at: %w", err)
	}
	attempt, err := vals[4].AsInt64()
	if err != nil {
		return Claim{}, "", fmt.Errorf("attempt: %w", err)
	}
	c.Attempt = int(attempt)
	raw, err := vals[5].ToString()
	if err != nil {
		return Claim{}, "", fmt.Errorf("messages: %w", err)
	}
	if err := json.Unmarshal([]byte(raw), &c.Messages); err != nil {
		return Claim{}, "", fmt.Errorf("messages: %w", err)
	}
	return c, "", nil
}

// Renew extends the lease of c and, when attempt is true, records delivery
// attempt c.Attempt+1 (so the caller keeps c.Attempt at the count returned).
// Naming the attempt instead of adding one makes a call retried after a lost
// reply count once. It returns the attempt count, or ErrLost when c is no
// longer held.
func (b *Store) Renew(ctx context.Context, c Claim, attempt bool) (int, error) {
	k := b.keys.Conversation(c.Key)
	count := "0"
	if attempt {
		count = strconv.Itoa(c.Attempt + 1)
	}
	n, err := lua.Renew.Exec(ctx, b.client,
		[]string{k.Batch, k.Inflight},
		[]string{c.Key, strconv.FormatInt(c.Generation, 10), c.Owner, ms(b.opts.Lease), count, b.now()},
	).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("renew %s: %w", k.Batch, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("renew %s: %w", k.Batch, ErrLost)
	}
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

// Commit deletes delivered batch c, records its generation as committed and
// releases its conversation, so what arrived meanwhile flushes on its own
// deadline. Committing a batch that is already committed succeeds with
// Already set. It returns ErrLost only when c was taken over: another
// generation holds the batch, or c is gone without having been committed
// (dead-lettered, say).
func (b *Store) Commit(ctx context.Context, c Claim) (Committed, error) {
	k := b.keys.Conversation(c.Key)
	vals, err := lua.Commit.Exec(ctx, b.client,
		[]string{k.Batch, k.Inflight, k.Due, k.Meta, k.Buf},
		[]string{c.Key, strconv.FormatInt(c.Generation, 10), ms(b.opts.TTL), b.now()},
	).AsIntSlice()
	if err != nil {
		return Committed{}, fmt.Errorf("commit %s: %w", k.Batch, err)
	}
	if len(vals) != 3 {
		return Committed{}, fmt.Errorf("commit %s: unexpected reply %v", k.Batch, vals)
	}
	switch vals[0] {
	case 1:
		return Committed{Next: vals[1], Now: vals[2]}, nil
	case 2:
		return Committed{Next: vals[1], Now: vals[2], Already: true}, nil
	case 0:
		return Committed{}, fmt.Errorf("commit %s generation %d: %w", k.Batch, c.Generation, ErrLost)
	}
	return Committed{}, fmt.Errorf("commit %s: unexpected status %d", k.Batch, vals[0])
}

// Release gives up c's lease at once, so any worker re-drives it on its next
// scan (used at shutdown instead of waiting for the lease to run out).
func (b *Store) Release(ctx context.Context, c Claim) error {
	k := b.keys.Conversation(c.Key)
	n, err := lua.Renew.Exec(ctx, b.client,
		[]string{k.Batch, k.Inflight},
		[]string{c.Key, strconv.FormatInt(c.Generation, 10), c.Owner, "0", "0", b.now()},
	).AsInt64()
	if err != nil {
		return fmt.Errorf("release %s: %w", k.Batch, err)
	}
	if n < 0 {
		return fmt.Errorf("release %s: %w", k.Batch, ErrLost)
	}
	return nil
}

// Reclaim takes over conversation key's batch for owner if its lease has
// expired. ok is false when there was nothing to take.
func (b *Store) Reclaim(ctx context.Context, key, owner string) (c Claim, ok bool, err error) {
	k := b.keys.Conversation(key)
	c, why, err := claimReply(lua.Reclaim.Exec(ctx, b.client,
		[]string{k.Inflight, k.Batch},
		[]string{key, ms(b.opts.Lease), owner, b.now()},
	), key, owner)
	if err != nil {
		return Claim{}, false, fmt.Errorf("reclaim %s: %w", k.Batch, err)
	}
	return c, why == "", nil
}

// Level is how much a conversation holds buffered (not yet claimed).
type Level struct {
	Messages int64
	Bytes    int64 // the messages' stored JSON
}

// Buffered reads conversation key's Level in one round trip; the api checks
// it against MAX_BUFFERED_MESSAGES and MAX_BUFFERED_BYTES.
func (b *Store) Buffered(ctx context.Context, key string) (Level, error) {
	k := b.keys.Conversation(key)
	res := b.client.DoMulti(ctx,
		b.client.B().Llen().Key(k.Buf).Build(),
		b.client.B().Hget().Key(k.Meta).Field("bytes").Build())
	n, err := res[0].AsInt64()
	if err != nil {
		return Level{}, fmt.Errorf("buffered %s: %w", k.Buf, err)
	}
	size, err := res[1].AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		return Level{}, fmt.Errorf("buffered %s: %w", k.Meta, err)
	}
	return Level{Messages: n, Bytes: size}, nil
}
