package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/lua"
)

// Dead-letter errors.
var (
	ErrNotFound = errors.New("store: no such dead letter")
	ErrBusy     = errors.New("store: conversation has a batch in flight")
)

// deadRetention is the record TTL in ms and how many entries one shard's
// dead set keeps: ceil(DeadLetterMax / keys.Shards), at least 1.
func (b *Store) deadRetention() (ttl, perShard string) {
	return ms(max(b.opts.DeadLetterTTL, time.Millisecond)), strconv.Itoa((b.opts.DeadLetterMax + keys.Shards - 1) / keys.Shards)
}

// Dead is a dead-lettered batch.
type Dead struct {
	Batch  batch.Batch `json:"batch"`
	Error  string      `json:"error"`
	DeadAt string      `json:"dead_at"`
}

// DeadLetters lists every dead-lettered batch, oldest first. An id whose
// record is gone (replayed meanwhile, or expired before the set was trimmed)
// is left out.
func (b *Store) DeadLetters(ctx context.Context) ([]Dead, error) {
	cmds := make(rueidis.Commands, keys.Shards)
	for s := range cmds {
		cmds[s] = b.client.B().Zrange().Key(b.keys.Dead(s)).Min("0").Max("-1").Build()
	}
	var ids []string
	listCtx, cancel := b.bound(ctx)
	defer cancel()
	for s, res := range b.client.DoMulti(listCtx, cmds...) {
		got, err := res.AsStrSlice()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", b.keys.Dead(s), err)
		}
		ids = append(ids, got...)
	}
	out := make([]Dead, 0, len(ids))
	for _, id := range ids {
		d, err := b.DeadLetterByID(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // replayed or expired meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].DeadAt < out[j].DeadAt })
	return out, nil
}

// DeadLetterByID returns one dead-lettered batch.
func (b *Store) DeadLetterByID(ctx context.Context, id string) (Dead, error) {
	key, gen, ok := keys.ParseBatchID(id)
	if !ok {
		return Dead{}, fmt.Errorf("dead letter %q: %w", id, ErrNotFound)
	}
	rec := b.keys.Conversation(key).DeadRecord(gen)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	h, err := b.client.Do(ctx, b.client.B().Hgetall().Key(rec).Build()).AsStrMap()
	if err != nil {
		return Dead{}, fmt.Errorf("dead letter %s: %w", rec, err)
	}
	if len(h) == 0 {
		return Dead{}, fmt.Errorf("dead letter %q: %w", id, ErrNotFound)
	}
	flushed, _ := strconv.ParseInt(h["flushed_at"], 10, 64)
	attempt, _ := strconv.Atoi(h["attempt"])
	deadAt, _ := strconv.ParseInt(h["dead_at"], 10, 64)
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(h["messages"]), &raw); err != nil {
		return Dead{}, fmt.Errorf("dead letter %s: messages: %w", rec, err)
	}
	bt, err := batch.New(key, gen, h["reason"], flushed, attempt, raw)
	if err != nil {
		return Dead{}, fmt.Errorf("dead letter %s: %w", rec, err)
	}
	return Dead{Batch: bt, Error: h["error"], DeadAt: batch.FormatMillis(deadAt)}, nil
}

// Replay puts dead-lettered batch id back in flight, unchanged (same batch
// id, same messages, attempts counted anew); any worker delivers it on its
// next scan for expired leases. ErrBusy: the conversation has another batch
// in flight — replay once it is delivered.
func (b *Store) Replay(ctx context.Context, id string) error {
	key, gen, ok := keys.ParseBatchID(id)
	if !ok {
		return fmt.Errorf("replay %q: %w", id, ErrNotFound)
	}
	k := b.keys.Conversation(key)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	res, err := lua.Replay.Exec(ctx, b.client,
		[]string{k.Dead, k.DeadRecord(gen), k.Batch, k.Inflight},
		[]string{key, id, b.now()},
	).ToArray()
	if err != nil {
		return fmt.Errorf("replay %s: %w", id, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("replay %s: unexpected reply of %d values", id, len(res))
	}
	why, _ := res[1].ToString()
	switch why {
	case "replayed":
		return nil
	case "busy":
		return fmt.Errorf("replay %s: %w", id, ErrBusy)
	default:
		return fmt.Errorf("replay %s: %w", id, ErrNotFound)
	}
}
