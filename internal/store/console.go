package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/keys"
)

// Read-only views for the operators' console. Each costs a bounded number of
// commands in two round trips at most, whatever the namespace holds: a
// listing reads the first limit members of each shard's sorted set (never
// SCAN) and merges them.

// Buffering is a conversation waiting in a due set for its flush.
type Buffering struct {
	Key        string `json:"key"`
	Deadline   int64  `json:"deadline"`   // its score in due, Unix ms
	Reason     string `json:"reason"`     // what the deadline is for: quiet, max_wait, max_messages, immediate, manual, max_bytes
	Messages   int64  `json:"messages"`   // buffered
	Bytes      int64  `json:"bytes"`      // JSON bytes buffered
	FirstAt    int64  `json:"first_at"`   // Unix ms, 0 when unknown
	LastAt     int64  `json:"last_at"`    // Unix ms, 0 when unknown
	Generation int64  `json:"generation"` // of the last message buffered
	// AfterBatch: an earlier batch of the conversation is in flight, so
	// the flush waits for it (the deadline is then its lease's end).
	AfterBatch bool `json:"after_batch"`
}

// Flight is a claimed batch, being delivered (or waiting for a reclaimer).
type Flight struct {
	BatchID    string `json:"batch_id"`
	Key        string `json:"key"`
	Generation int64  `json:"generation"`
	Reason     string `json:"reason"`
	Attempt    int64  `json:"attempt"`     // delivery attempts counted so far
	Owner      string `json:"owner"`       // the worker holding it ("" after a replay, until one takes it)
	FlushedAt  int64  `json:"flushed_at"`  // Unix ms
	LeaseUntil int64  `json:"lease_until"` // its score in inflight, Unix ms
	LastError  string `json:"last_error,omitempty"`
	// LastErrorAt and ReplayedAt are Unix ms, 0 when unset.
	LastErrorAt int64 `json:"last_error_at,omitempty"`
	ReplayedAt  int64 `json:"replayed_at,omitempty"`
	Bytes       int64 `json:"bytes"` // of its messages' JSON
}

// DeadSummary is a dead-lettered batch without its messages.
type DeadSummary struct {
	BatchID    string `json:"batch_id"`
	Key        string `json:"key"`
	Generation int64  `json:"generation"`
	Reason     string `json:"reason"`
	Attempt    int64  `json:"attempt"`
	Error      string `json:"error"`
	DeadAt     int64  `json:"dead_at"`    // Unix ms
	FlushedAt  int64  `json:"flushed_at"` // Unix ms
	Bytes      int64  `json:"bytes"`      // of its messages' JSON
}

// Overview is what the namespace is doing now, bounded: the soonest
// deadlines, the leases that end first, the newest dead letters, and how
// many of each there are in all.
type Overview struct {
	Now            int64         `json:"now"` // Redis clock, Unix ms
	Buffering      []Buffering   `json:"buffering"`
	BufferingTotal int64         `json:"buffering_total"`
	InFlight       []Flight      `json:"in_flight"`
	InFlightTotal  int64         `json:"in_flight_total"`
	Dead           []DeadSummary `json:"dead"`
	DeadTotal      int64         `json:"dead_total"`
}

// scored is a sorted-set member with its score.
type scored struct {
	member string
	score  int64
}

// Overview reads the limit conversations due soonest (with their meta), the
// limit batches whose lease ends first and the limit newest dead letters,
// each merged over the shards, in two round trips.
func (b *Store) Overview(ctx context.Context, limit int) (Overview, error) {
	if limit < 1 {
		return Overview{}, fmt.Errorf("overview: limit %d must be positive", limit)
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()

	// Round trip 1: the clock, then per shard the head of due, inflight
	// and dead (newest first), and their sizes.
	top := strconv.Itoa(limit - 1)
	cmds := rueidis.Commands{b.client.B().Time().Build()}
	for s := range keys.Shards {
		cmds = append(cmds,
			b.client.B().Zrange().Key(b.keys.Due(s)).Min("0").Max(top).Withscores().Build(),
			b.client.B().Zcard().Key(b.keys.Due(s)).Build(),
			b.client.B().Zrange().Key(b.keys.Inflight(s)).Min("0").Max(top).Withscores().Build(),
			b.client.B().Zcard().Key(b.keys.Inflight(s)).Build(),
			b.client.B().Zrange().Key(b.keys.Dead(s)).Min("0").Max(top).Rev().Withscores().Build(),
			b.client.B().Zcard().Key(b.keys.Dead(s)).Build(),
		)
	}
	res := b.client.DoMulti(ctx, cmds...)
	var ov Overview
	var err error
	if ov.Now, err = b.clockOf(res[0]); err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	var due, inflight, dead []scored
	for s := range keys.Shards {
		r := res[1+6*s:]
		sets := []struct {
			members *[]scored
			total   *int64
		}{{&due, &ov.BufferingTotal}, {&inflight, &ov.InFlightTotal}, {&dead, &ov.DeadTotal}}
		for i, set := range sets {
			got, err := r[2*i].AsZScores()
			if err != nil {
				return Overview{}, fmt.Errorf("overview shard %02d: %w", s, err)
			}
			for _, z := range got {
				*set.members = append(*set.members, scored{member: z.Member, score: int64(z.Score)})
			}
			n, err := r[2*i+1].AsInt64()
			if err != nil {
				return Overview{}, fmt.Errorf("overview shard %02d: %w", s, err)
			}
			*set.total += n
		}
	}
	due = soonest(due, limit, false)
	inflight = soonest(inflight, limit, false)
	dead = soonest(dead, limit, true)

	// Round trip 2: the records behind the members.
	cmds = make(rueidis.Commands, 0, 3*len(due)+2*len(inflight)+2*len(dead))
	for _, d := range due {
		k := b.keys.Conversation(d.member)
		cmds = append(cmds,
			b.client.B().Hmget().Key(k.Meta).Field("gen", "first_at", "last_at", "reason", "bytes").Build(),
			b.client.B().Llen().Key(k.Buf).Build(),
			b.client.B().Zscore().Key(k.Inflight).Member(d.member).Build())
	}
	for _, f := range inflight {
		k := b.keys.Conversation(f.member)
		cmds = append(cmds,
			b.client.B().Hmget().Key(k.Batch).Field("gen", "reason", "attempt", "owner", "flushed_at",
				"last_error", "last_error_at", "replayed_at").Build(),
			b.client.B().Hstrlen().Key(k.Batch).Field("messages").Build())
	}
	for _, d := range dead {
		key, gen, _ := keys.ParseBatchID(d.member)
		rec := b.keys.Conversation(key).DeadRecord(gen)
		cmds = append(cmds,
			b.client.B().Hmget().Key(rec).Field("reason", "attempt", "error", "dead_at", "flushed_at").Build(),
			b.client.B().Hstrlen().Key(rec).Field("messages").Build())
	}
	if len(cmds) == 0 {
		return ov, nil
	}
	res = b.client.DoMulti(ctx, cmds...)
	for i, d := range due {
		meta, err := fields(res[3*i])
		if err != nil {
			return Overview{}, fmt.Errorf("overview %s: %w", b.keys.Conversation(d.member).Meta, err)
		}
		n, err := res[3*i+1].AsInt64()
		if err != nil {
			return Overview{}, fmt.Errorf("overview %s: %w", b.keys.Conversation(d.member).Buf, err)
		}
		_, leaseErr := res[3*i+2].AsInt64()
		ov.Buffering = append(ov.Buffering, Buffering{
			Key: d.member, Deadline: d.score, Reason: meta[3], Messages: n, Bytes: atoi(meta[4]),
			FirstAt: atoi(meta[1]), LastAt: atoi(meta[2]), Generation: atoi(meta[0]),
			AfterBatch: leaseErr == nil,
		})
	}
	res = res[3*len(due):]
	for i, f := range inflight {
		h, err := fields(res[2*i])
		if err != nil {
			return Overview{}, fmt.Errorf("overview %s: %w", b.keys.Conversation(f.member).Batch, err)
		}
		size, _ := res[2*i+1].AsInt64()
		gen := atoi(h[0])
		if gen == 0 {
			continue // committed between the two round trips
		}
		ov.InFlight = append(ov.InFlight, Flight{
			BatchID: batchID(f.member, gen), Key: f.member, Generation: gen, Reason: h[1],
			Attempt: atoi(h[2]), Owner: h[3], FlushedAt: atoi(h[4]), LeaseUntil: f.score,
			LastError: h[5], LastErrorAt: atoi(h[6]), ReplayedAt: atoi(h[7]), Bytes: size,
		})
	}
	res = res[2*len(inflight):]
	for i, d := range dead {
		h, err := fields(res[2*i])
		if err != nil {
			return Overview{}, fmt.Errorf("overview dead letter %s: %w", d.member, err)
		}
		if h[3] == "" {
			continue // replayed between the two round trips, or expired
		}
		size, _ := res[2*i+1].AsInt64()
		key, gen, _ := keys.ParseBatchID(d.member)
		ov.Dead = append(ov.Dead, DeadSummary{
			BatchID: d.member, Key: key, Generation: gen, Reason: h[0], Attempt: atoi(h[1]),
			Error: h[2], DeadAt: atoi(h[3]), FlushedAt: atoi(h[4]), Bytes: size,
		})
	}
	return ov, nil
}

// soonest sorts merged members by score (descending when newest) and keeps
// the first limit.
func soonest(all []scored, limit int, newest bool) []scored {
	slices.SortFunc(all, func(a, b scored) int {
		if newest {
			a, b = b, a
		}
		return cmp.Or(cmp.Compare(a.score, b.score), strings.Compare(a.member, b.member))
	})
	return all[:min(limit, len(all))]
}

// Conversation is one conversation's whole state (what scripts/inspect.sh
// prints), with its key names.
type Conversation struct {
	Key   string `json:"key"`
	Shard int    `json:"shard"`
	Now   int64  `json:"now"` // Redis clock, Unix ms
	// Keys names the Redis keys read, by kind (due, inflight, buf, meta,
	// batch, seen, dead).
	Keys       map[string]string `json:"keys"`
	Deadline   int64             `json:"deadline"`    // its score in due, Unix ms; -1: not scheduled
	LeaseUntil int64             `json:"lease_until"` // its score in inflight, Unix ms; -1: no batch in flight
	// Buffer holds the first BufferLimit buffered messages of BufferLen.
	Buffer    []json.RawMessage `json:"buffer"`
	BufferLen int64             `json:"buffer_len"`
	BufferTTL int64             `json:"buffer_ttl"` // ms; -2: no such key
	Meta      map[string]string `json:"meta"`
	MetaTTL   int64             `json:"meta_ttl"` // ms; -2: no such key
	// Batch is the batch in flight's fields but its messages, which are
	// in BatchMessages (nil when no batch is in flight).
	Batch         map[string]string `json:"batch"`
	BatchMessages json.RawMessage   `json:"batch_messages,omitempty"`
	SeenCount     int64             `json:"seen_count"`
	// Seen is the last few message ids of the dedupe window, with their
	// receipt (Unix ms).
	Seen []Member `json:"seen"`
	// DeadLetters are the conversation's dead-lettered batch ids, with
	// when (Unix ms), oldest first.
	DeadLetters []Member `json:"dead_letters"`
}

// Member is a sorted-set member and its score.
type Member struct {
	Member string `json:"member"`
	Score  int64  `json:"score"`
}

// seenShown is how many of the newest message ids Inspect returns.
const seenShown = 5

// Inspect reads conversation key's whole state in one round trip, its
// buffer up to bufferLimit messages.
func (b *Store) Inspect(ctx context.Context, key string, bufferLimit int) (Conversation, error) {
	if bufferLimit < 1 {
		return Conversation{}, fmt.Errorf("inspect: buffer limit %d must be positive", bufferLimit)
	}
	k := b.keys.Conversation(key)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	c := b.client
	res := c.DoMulti(ctx,
		c.B().Time().Build(),
		c.B().Zscore().Key(k.Due).Member(key).Build(),
		c.B().Zscore().Key(k.Inflight).Member(key).Build(),
		c.B().Lrange().Key(k.Buf).Start(0).Stop(int64(bufferLimit-1)).Build(),
		c.B().Llen().Key(k.Buf).Build(),
		c.B().Pttl().Key(k.Buf).Build(),
		c.B().Hgetall().Key(k.Meta).Build(),
		c.B().Pttl().Key(k.Meta).Build(),
		c.B().Hgetall().Key(k.Batch).Build(),
		c.B().Zcard().Key(k.Seen).Build(),
		c.B().Zrange().Key(k.Seen).Min(strconv.Itoa(-seenShown)).Max("-1").Withscores().Build(),
		c.B().Zrange().Key(k.Dead).Min("0").Max("-1").Withscores().Build(),
	)
	for i, r := range res {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return Conversation{}, fmt.Errorf("inspect %s (command %d): %w", k.Meta, i, err)
		}
	}
	out := Conversation{
		Key: key, Shard: keys.Shard(key), Deadline: -1, LeaseUntil: -1,
		Keys: map[string]string{"due": k.Due, "inflight": k.Inflight, "buf": k.Buf, "meta": k.Meta,
			"batch": k.Batch, "seen": k.Seen, "dead": k.Dead},
	}
	var err error
	if out.Now, err = b.clockOf(res[0]); err != nil {
		return Conversation{}, fmt.Errorf("inspect %s: %w", key, err)
	}
	if f, err := res[1].AsFloat64(); err == nil {
		out.Deadline = int64(f)
	}
	if f, err := res[2].AsFloat64(); err == nil {
		out.LeaseUntil = int64(f)
	}
	buf, _ := res[3].AsStrSlice()
	for _, m := range buf {
		out.Buffer = append(out.Buffer, rawJSON(m))
	}
	out.BufferLen, _ = res[4].AsInt64()
	out.BufferTTL, _ = res[5].AsInt64()
	out.Meta, _ = res[6].AsStrMap()
	out.MetaTTL, _ = res[7].AsInt64()
	if h, _ := res[8].AsStrMap(); len(h) > 0 {
		out.BatchMessages = rawJSON(h["messages"])
		delete(h, "messages")
		out.Batch = h
	}
	out.SeenCount, _ = res[9].AsInt64()
	seen, _ := res[10].AsZScores()
	for _, z := range seen {
		out.Seen = append(out.Seen, Member{z.Member, int64(z.Score)})
	}
	dead, _ := res[11].AsZScores()
	for _, z := range dead {
		if owner, _, ok := keys.ParseBatchID(z.Member); ok && owner == key {
			out.DeadLetters = append(out.DeadLetters, Member{z.Member, int64(z.Score)})
		}
	}
	return out, nil
}

// clockOf reads a TIME reply as Unix ms, or the store's test clock.
func (b *Store) clockOf(r rueidis.RedisResult) (int64, error) {
	if b.opts.Now != nil {
		return b.opts.Now(), nil
	}
	t, err := r.AsStrSlice()
	if err != nil || len(t) != 2 {
		return 0, fmt.Errorf("redis TIME: %v %w", t, err)
	}
	sec, err1 := strconv.ParseInt(t[0], 10, 64)
	usec, err2 := strconv.ParseInt(t[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("redis TIME: unexpected reply %v", t)
	}
	return sec*1000 + usec/1000, nil
}

// fields reads an HMGET reply; a missing field is "".
func fields(r rueidis.RedisResult) ([]string, error) {
	vals, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		if !v.IsNil() {
			out[i], _ = v.ToString()
		}
	}
	return out, nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func batchID(key string, gen int64) string {
	if gen <= 0 {
		return ""
	}
	return batch.ID(key, gen)
}

// rawJSON is s as JSON: itself when it is valid JSON, else a JSON string.
func rawJSON(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	q, _ := json.Marshal(s)
	return q
}
