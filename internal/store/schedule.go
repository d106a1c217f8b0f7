package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/lua"
)

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
	ctx, cancel := b.bound(ctx)
	defer cancel()
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
