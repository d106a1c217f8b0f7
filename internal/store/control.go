package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/lua"
)

// ErrConflict means a discard was refused: the batch is not the
// conversation's last delivered one, a later batch is in flight, or it is
// no longer kept. Its message says which.
var ErrConflict = errors.New("store: conflict")

// ErrUnknown means the store holds nothing of a conversation or batch.
var ErrUnknown = errors.New("store: unknown")

// Status is what the store holds of one conversation (the /v1 API's view).
type Status struct {
	Key         string `json:"key"`
	Source      string `json:"source"`
	Buffered    int64  `json:"buffered"` // messages buffered, not yet claimed
	Bytes       int64  `json:"bytes"`    // their stored JSON
	Deadline    int64  `json:"-"`        // when they flush (Unix ms); -1 = not scheduled
	Reason      string `json:"reason"`   // what they flush for ("" when nothing is buffered)
	InFlight    string `json:"-"`        // batch id of the batch in flight, "" = none
	Paused      bool   `json:"paused"`
	PausedUntil int64  `json:"-"` // Unix ms; -1 = until resumed (when Paused)
	LastBatchID string `json:"-"` // the last delivered batch, "" = none yet
	Generation  int64  `json:"-"`
	Now         int64  `json:"-"` // Redis clock at the read
}

// ConversationStatus reads conversation key's Status; ErrUnknown when the
// store holds nothing of it (no buffer, no batch in flight, no state).
func (b *Store) ConversationStatus(ctx context.Context, key string) (Status, error) {
	k := b.keys.Conversation(key)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	res := b.client.DoMulti(ctx,
		b.client.B().Hmget().Key(k.Meta).Field("gen", "bytes", "deadline", "reason", "paused", "paused_until", "committed").Build(),
		b.client.B().Llen().Key(k.Buf).Build(),
		b.client.B().Hget().Key(k.Batch).Field("gen").Build(),
		b.client.B().Time().Build())
	meta, err := res[0].ToArray()
	if err != nil {
		return Status{}, fmt.Errorf("status %s: %w", k.Meta, err)
	}
	m := make([]string, len(meta))
	for i, v := range meta {
		m[i], _ = v.ToString() // nil fields read as ""
	}
	n, err := res[1].AsInt64()
	if err != nil {
		return Status{}, fmt.Errorf("status %s: %w", k.Buf, err)
	}
	inflight, err := res[2].ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return Status{}, fmt.Errorf("status %s: %w", k.Batch, err)
	}
	now, err := b.clockOf(res[3])
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	if m[0] == "" && n == 0 && inflight == "" {
		return Status{}, fmt.Errorf("conversation %q: %w", key, ErrUnknown)
	}
	s := Status{Key: key, Source: ingest.SourceOf(key), Buffered: n, Deadline: -1, Paused: m[4] != "", PausedUntil: -1, Now: now}
	s.Generation, _ = strconv.ParseInt(m[0], 10, 64)
	if n > 0 {
		s.Bytes, _ = strconv.ParseInt(m[1], 10, 64)
		if d, err := strconv.ParseInt(m[2], 10, 64); err == nil {
			s.Deadline = d
		}
		s.Reason = m[3]
	}
	if u, err := strconv.ParseInt(m[5], 10, 64); err == nil && s.Paused {
		// A pause whose time ran out is over, even before a flush or a
		// message clears its mark.
		s.Paused = u > now
		if s.Paused {
			s.PausedUntil = u
			s.Deadline = max(s.Deadline, u)
		}
	} else if s.Paused {
		s.Deadline = -1 // paused until resumed: nothing is scheduled
	}
	if g, err := strconv.ParseInt(inflight, 10, 64); err == nil {
		s.InFlight = batch.ID(key, g)
	}
	if g, err := strconv.ParseInt(m[6], 10, 64); err == nil {
		s.LastBatchID = batch.ID(key, g)
	}
	return s, nil
}

// Cancel drops what conversation key holds buffered and not yet claimed,
// and returns the dropped messages (their stored JSON) in arrival order. A
// batch in flight is not touched; the next message starts a new burst.
func (b *Store) Cancel(ctx context.Context, key string) ([]json.RawMessage, error) {
	k := b.keys.Conversation(key)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	msgs, err := lua.Cancel.Exec(ctx, b.client, []string{k.Buf, k.Meta, k.Due, k.Stats}, []string{key}).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("cancel %s: %w", k.Buf, err)
	}
	out := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		out[i] = json.RawMessage(m)
	}
	return out, nil
}

// Paused is the outcome of Pause and Resume.
type Paused struct {
	Changed  bool  // false: Resume of a conversation that was not paused, or Stale
	Stale    bool  // older than the pause or resume in force: nothing changed
	Until    int64 // Pause: its end (Unix ms), -1 = until resumed
	Deadline int64 // when what is buffered is due (Unix ms), -1 = not scheduled
	Now      int64
}

// Pause holds conversation key's batches back for d (0 = until Resume):
// messages are still taken and kept, nothing is claimed. When the pause
// ends, what was kept flushes as one batch marked paused.
func (b *Store) Pause(ctx context.Context, key string, d time.Duration) (Paused, error) {
	return b.PauseAt(ctx, key, d, 0)
}

// PauseAt is Pause for a pause that happened at (Unix ms: a webhook's
// receipt by the api): when a later pause or resume is in force already
// (this one landed late) it changes nothing and says Stale. at 0 is now and
// always applies, as Pause (an operator's call) does.
func (b *Store) PauseAt(ctx context.Context, key string, d time.Duration, at int64) (Paused, error) {
	arg := ""
	if d > 0 {
		arg = ms(d)
	}
	return b.pause(ctx, key, "pause", arg, at)
}

// Resume ends conversation key's pause: what was kept is due at once, as one
// batch marked paused (reason "resumed").
func (b *Store) Resume(ctx context.Context, key string) (Paused, error) {
	return b.ResumeAt(ctx, key, 0)
}

// ResumeAt is Resume for a resume that happened at (see PauseAt).
func (b *Store) ResumeAt(ctx context.Context, key string, at int64) (Paused, error) {
	return b.pause(ctx, key, "resume", "", at)
}

func (b *Store) pause(ctx context.Context, key, mode, d string, at int64) (Paused, error) {
	k := b.keys.Conversation(key)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	when := ""
	if at > 0 {
		when = strconv.FormatInt(at, 10)
	}
	vals, err := lua.Pause.Exec(ctx, b.client, []string{k.Meta, k.Buf, k.Due},
		[]string{key, mode, d, ms(b.opts.TTL), b.now(), when}).AsIntSlice()
	if err != nil {
		return Paused{}, fmt.Errorf("%s %s: %w", mode, k.Meta, err)
	}
	if len(vals) != 5 {
		return Paused{}, fmt.Errorf("%s %s: unexpected reply %v", mode, k.Meta, vals)
	}
	p := Paused{Changed: vals[0] == 1, Until: vals[1], Deadline: vals[2], Now: vals[3], Stale: vals[4] == 1}
	if p.Deadline >= 0 {
		b.alarm.set(p.Deadline, p.Now)
	}
	return p, nil
}

// Discarded is the outcome of a discard.
type Discarded struct {
	Messages int   // messages put back in front of the buffer
	Deadline int64 // when the batch that holds them again is due (Unix ms)
	Now      int64
}

// Discard puts the messages of the delivered batch id back in front of its
// conversation's buffer: the bot threw its answer away. The next batch holds
// them first, then the newer messages, and names id in replaces. It returns
// ErrConflict unless id is the conversation's last delivered batch, kept
// (KeepDelivered), with no later batch in flight; ErrUnknown for an id that
// names no batch.
func (b *Store) Discard(ctx context.Context, id string) (Discarded, error) {
	key, gen, ok := keys.ParseBatchID(id)
	if !ok {
		return Discarded{}, fmt.Errorf("discard %q: %w", id, ErrUnknown)
	}
	return b.discard(ctx, key, gen, "delivered", "")
}

// Discard is the discard of a batch in flight, by its holder: its receiver
// answered that the batch is stale (409 Conflict). The claim ends with it.
func (c *Claim) Discard(ctx context.Context) (Discarded, error) {
	var d Discarded
	err := c.retry(ctx, "discard", func(ctx context.Context) error {
		var err error
		d, err = c.st.discard(ctx, c.Key, c.Generation, "held", c.Owner)
		if errors.Is(err, ErrConflict) {
			return fmt.Errorf("%w (%w)", ErrLost, err)
		}
		return err
	})
	return d, err
}

func (b *Store) discard(ctx context.Context, key string, gen int64, mode, owner string) (Discarded, error) {
	k := b.keys.Conversation(key)
	id := batch.ID(key, gen)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	vals, err := lua.Discard.Exec(ctx, b.client,
		[]string{k.Meta, k.Buf, k.Due, k.Batch, k.Inflight, k.Last},
		[]string{key, strconv.FormatInt(gen, 10), mode, owner, id, ms(b.window(key).Quiet), b.now(), ms(b.opts.TTL)},
	).ToArray()
	if err != nil {
		return Discarded{}, fmt.Errorf("discard %s: %w", id, err)
	}
	if len(vals) == 2 {
		why, _ := vals[1].ToString()
		if why == "unknown" {
			return Discarded{}, fmt.Errorf("discard %s: %w", id, ErrUnknown)
		}
		return Discarded{}, fmt.Errorf("discard %s: %s: %w", id, strings.ReplaceAll(why, "_", " "), ErrConflict)
	}
	if len(vals) != 4 {
		return Discarded{}, fmt.Errorf("discard %s: unexpected reply of %d values", id, len(vals))
	}
	n, _ := vals[1].AsInt64()
	deadline, _ := vals[2].AsInt64()
	now, _ := vals[3].AsInt64()
	b.alarm.set(deadline, now)
	return Discarded{Messages: int(n), Deadline: deadline, Now: now}, nil
}

// Batch states.
const (
	StateInFlight  = "in_flight"
	StateDelivered = "delivered"
	StateDead      = "dead"
	StateDiscarded = "discarded"
)

// BatchStatus says whether a batch is still the last word of its
// conversation (the /v1 API's supersede check).
type BatchStatus struct {
	BatchID string `json:"batch_id"`
	Key     string `json:"key"`
	State   string `json:"state"`
	// Current is false as soon as the conversation has taken a message
	// newer than the batch.
	Current       bool  `json:"current"`
	NewerMessages int64 `json:"newer_messages"`
}

// BatchState reads the BatchStatus of batch id; ErrUnknown when id names no
// batch the store knows of. A batch older than the conversation's last
// delivered one, and not dead-lettered, reads as delivered.
func (b *Store) BatchState(ctx context.Context, id string) (BatchStatus, error) {
	key, gen, ok := keys.ParseBatchID(id)
	if !ok {
		return BatchStatus{}, fmt.Errorf("batch %q: %w", id, ErrUnknown)
	}
	k := b.keys.Conversation(key)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	res := b.client.DoMulti(ctx,
		b.client.B().Hmget().Key(k.Meta).Field("gen", "committed", "discarded", "seq").Build(),
		b.client.B().Hmget().Key(k.Batch).Field("gen", "lens", "seq").Build(),
		b.client.B().Hmget().Key(k.Last).Field("gen", "seq").Build(),
		b.client.B().Zscore().Key(k.Dead).Member(id).Build(),
		b.client.B().Hget().Key(k.DeadRecord(gen)).Field("seq").Build(),
		b.client.B().Llen().Key(k.Buf).Build())
	var hashes [3][]string
	for i := range hashes {
		h, err := fields(res[i])
		if err != nil {
			return BatchStatus{}, fmt.Errorf("batch %s: %w", id, err)
		}
		hashes[i] = h
	}
	meta, flight, last := hashes[0], hashes[1], hashes[2]
	_, deadErr := res[3].ToString()
	if deadErr != nil && !rueidis.IsRedisNil(deadErr) {
		return BatchStatus{}, fmt.Errorf("batch %s: %s: %w", id, k.Dead, deadErr)
	}
	deadSeq, err := res[4].ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return BatchStatus{}, fmt.Errorf("batch %s: dead record: %w", id, err)
	}
	buffered, err := res[5].AsInt64()
	if err != nil {
		return BatchStatus{}, fmt.Errorf("batch %s: %s: %w", id, k.Buf, err)
	}
	latest, _ := strconv.ParseInt(meta[0], 10, 64)
	committed, _ := strconv.ParseInt(meta[1], 10, 64)
	inflight, _ := strconv.ParseInt(flight[0], 10, 64)
	g := strconv.FormatInt(gen, 10)
	s := BatchStatus{BatchID: id, Key: key}
	batchSeq := ""
	switch {
	case inflight == gen:
		s.State, batchSeq = StateInFlight, flight[2]
	case deadErr == nil:
		s.State, batchSeq = StateDead, deadSeq
	case meta[2] == g:
		s.State = StateDiscarded
	case committed >= gen && gen > 0:
		s.State = StateDelivered
		if last[0] == g {
			batchSeq = last[1]
		}
	default:
		return BatchStatus{}, fmt.Errorf("batch %q: %w", id, ErrUnknown)
	}
	if seqNow, err := strconv.ParseInt(meta[3], 10, 64); err == nil && batchSeq != "" {
		// Messages stored since the batch was claimed: the rest of a
		// sliced buffer, or messages a discard put back, are not newer.
		then, _ := strconv.ParseInt(batchSeq, 10, 64)
		s.NewerMessages = max(seqNow-then, 0)
	} else {
		// A batch claimed before lull counted messages: what is buffered,
		// or held by a later batch in flight, is newer.
		s.NewerMessages = buffered
		if inflight > gen && flight[1] != "" {
			s.NewerMessages += int64(strings.Count(flight[1], ",") + 1)
		}
		if latest != gen {
			s.NewerMessages = max(s.NewerMessages, 1)
		}
	}
	s.Current = s.NewerMessages == 0 && s.State != StateDiscarded
	return s, nil
}
