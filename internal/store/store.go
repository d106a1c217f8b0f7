// Package store is the conversation state machine: every conversation's
// state in Redis, and every change of it as one atomic Lua script (lua/).
// Callers never see raw replies.
//
// A conversation buffers messages (Append, Typing, FlushNow) until its
// deadline; the scheduler then claims it (FlushDue) as a Claim, which owns
// its batch and its lease until one of Commit, DeadLetter or Release ends it.
// A lease that runs out lets a reclaimer take the same batch over (Reclaim).
// Every deadline a call sets is reported through one hook, the store's
// Alarm, which the scheduler listens to: nothing calls back up.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/valutil"
	"github.com/lullhq/lull/lua"
)

// ErrLost means the caller no longer holds a batch: it was committed or
// dead-lettered, or reclaimed by another worker after its lease expired.
var ErrLost = errors.New("store: batch no longer held")

// ErrLeaseRunOut means Redis could not be reached for as long as a claim's
// lease lasts: the batch may belong to another worker by now, so its holder
// stops and leaves it to whichever reclaimer takes it first.
var ErrLeaseRunOut = errors.New("store: redis unreachable for the whole lease")

// Options are the buffering rules. Every field but Logger and Now is
// required: the defaults are the configuration's (internal/config), and New
// panics on a missing value, a programmer error.
type Options struct {
	QuietWindow  time.Duration // flush after this long without a message
	MaxWait      time.Duration // flush at the latest this long after a burst's first message (0 = no cap)
	MaxMessages  int           // flush at once when a buffer holds this many
	MaxBytes     int           // a batch's messages hold at most this many bytes of JSON (0 = no limit)
	DedupeWindow time.Duration // how long a message id is remembered
	TTL          time.Duration // safety TTL of buffers and metadata
	Lease        time.Duration // how long a claimed batch is held before another worker may reclaim it
	// Dead-letter retention (see Claim.DeadLetter): a dead-lettered batch
	// is kept this long, and at most DeadLetterMax of them (spread over the
	// shards) are kept, the oldest going first.
	DeadLetterTTL time.Duration
	DeadLetterMax int
	// RedisTimeout bounds every Redis call. Without a deadline the client
	// retries a call on a dead connection forever, and its caller hangs.
	RedisTimeout time.Duration
	Logger       *slog.Logger // default slog.Default()
	Now          func() int64 // tests only: a fixed clock in Unix ms instead of Redis TIME

	// Windows that fit the conversation (all optional).
	//
	// Windows overrides QuietWindow and MaxWait for the conversations of a
	// provider source (a key "<source>:…"); a zero field keeps the default.
	Windows map[string]Window
	// MediaQuietWindow is the quiet window after a media message without a
	// caption (its words usually follow); 0 = the text window.
	MediaQuietWindow time.Duration
	// Adaptive, when set, learns each conversation's gaps between messages
	// of a burst and uses clamp(K × typical gap, Min, quiet window).
	Adaptive *Adaptive

	// KeepDelivered is how long a delivered batch is kept so that a bot can
	// discard it (Discard); 0 = not kept, and a discard is refused.
	KeepDelivered time.Duration
	// StatusURL, when set, is the prefix of every batch's status_url: the
	// batch id, path-escaped, is appended ("https://lull.example/v1/batches/").
	StatusURL string
}

// Window is the quiet window and max wait of one source (zero: the default).
type Window struct {
	Quiet   time.Duration
	MaxWait time.Duration
}

// Adaptive are the adaptive window's parameters.
type Adaptive struct {
	Min time.Duration // the shortest window
	K   float64       // window = K × typical gap (within [Min, quiet window])
}

func (o Options) mustValidate() {
	var missing []string
	for name, bad := range map[string]bool{
		"QuietWindow": o.QuietWindow <= 0, "MaxMessages": o.MaxMessages <= 0, "DedupeWindow": o.DedupeWindow <= 0,
		"TTL": o.TTL <= 0, "Lease": o.Lease <= 0, "DeadLetterTTL": o.DeadLetterTTL <= 0,
		"DeadLetterMax": o.DeadLetterMax <= 0, "RedisTimeout": o.RedisTimeout <= 0,
		"MaxWait": o.MaxWait < 0, "MaxBytes": o.MaxBytes < 0,
		"MediaQuietWindow": o.MediaQuietWindow < 0, "KeepDelivered": o.KeepDelivered < 0,
		"Adaptive": o.Adaptive != nil && (o.Adaptive.Min <= 0 || o.Adaptive.K <= 0),
	} {
		if bad {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		panic(fmt.Sprintf("store: invalid options %v (take them from the configuration)", missing))
	}
}

// Store is the Redis state of one namespace.
type Store struct {
	client rueidis.Client
	keys   keys.Space
	opts   Options
	log    *slog.Logger
	alarm  *Alarm
}

// New returns the store of namespace ns. It panics on invalid options.
func New(client rueidis.Client, ns string, opts Options) *Store {
	opts.mustValidate()
	opts.Logger = valutil.ValOrDefault(opts.Logger, slog.Default())
	return &Store{client: client, keys: keys.New(ns), opts: opts, log: opts.Logger, alarm: newAlarm()}
}

// Alarm is the hook every new deadline is reported through.
func (b *Store) Alarm() *Alarm { return b.alarm }

func (b *Store) now() string {
	if b.opts.Now == nil {
		return ""
	}
	return strconv.FormatInt(b.opts.Now(), 10)
}

// bound gives one Redis call its RedisTimeout.
func (b *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.RedisTimeout)
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Appended is the outcome of an append.
type Appended struct {
	Stored     bool  // false: the message id was already stored (a duplicate)
	Generation int64 // the conversation's generation after the call
	Count      int64 // messages buffered
	Deadline   int64 // flush deadline, Unix ms (-1: none)
	Now        int64 // Redis clock at the append, Unix ms
	// Dropped is how many messages a cancel word dropped (itself included).
	Dropped int64
}

// Append stores message (its JSON encoding) with id in conversation key's
// buffer unless id was seen within the dedupe window, and reschedules the
// conversation's flush (at once when flushNow).
func (b *Store) Append(ctx context.Context, key, id string, message []byte, flushNow bool) (Appended, error) {
	e := b.appendExec(AppendJob{Key: key, ID: id, Message: message, FlushNow: flushNow})
	ctx, cancel := b.bound(ctx)
	defer cancel()
	return b.appended(e.Keys[0], lua.Append.Exec(ctx, b.client, e.Keys, e.Args))
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
	w := b.window(key)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	vals, err := lua.Schedule.Exec(ctx, b.client,
		[]string{k.Buf, k.Meta, k.Due},
		[]string{key, mode, ms(w.Quiet), ms(w.MaxWait), b.now()},
	).AsIntSlice()
	if err != nil {
		return Rescheduled{}, fmt.Errorf("%s %s: %w", mode, k.Meta, err)
	}
	if len(vals) != 3 {
		return Rescheduled{}, fmt.Errorf("%s %s: unexpected reply %v", mode, k.Meta, vals)
	}
	r := Rescheduled{Moved: vals[0] == 1, Deadline: vals[1], Now: vals[2]}
	if r.Moved {
		b.alarm.set(r.Deadline, r.Now)
	}
	return r, nil
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
	ctx, cancel := b.bound(ctx)
	defer cancel()
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

// Unreachable reports whether err is Redis not answering (a refused or
// lost connection, REDIS_TIMEOUT running out) rather than an error reply of
// Redis (out of memory, a key of another type, a script error).
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	var reply *rueidis.RedisError
	return !errors.As(err, &reply)
}
