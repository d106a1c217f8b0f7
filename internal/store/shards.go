package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/keys"
)

// ErrShardsDiffer is CheckShards' answer when Redis holds the namespace
// under another shard count.
var ErrShardsDiffer = errors.New("shard count differs from the one Redis records")

// CheckShards records n as namespace ns's shard count (<ns>:shards) unless
// one is recorded already, and fails with ErrShardsDiffer when the recorded
// one is not n: a process with another SHARDS would look for conversations
// under other keys. The count is changed only by ChangeShards.
func CheckShards(ctx context.Context, client rueidis.Client, ns string, n int) error {
	key := keys.New(ns).ShardsKey()
	// SET NX GET (Redis 7): the count recorded before, or nil when this
	// call recorded it.
	old, err := client.Do(ctx, client.B().Set().Key(key).Value(strconv.Itoa(n)).Nx().Get().Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check shards %s: %w", key, err)
	}
	if old != strconv.Itoa(n) {
		return fmt.Errorf("%w: namespace %s has SHARDS=%s in Redis, this process SHARDS=%d (change it with `worker shards set %d`)", ErrShardsDiffer, ns, old, n, n)
	}
	return nil
}

// RecordedShards is namespace ns's recorded shard count; 0 when none is.
func RecordedShards(ctx context.Context, client rueidis.Client, ns string) (int, error) {
	key := keys.New(ns).ShardsKey()
	v, err := client.Do(ctx, client.B().Get().Key(key).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read shards %s: %w", key, err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("read shards %s: %q is not a number", key, v)
	}
	return n, nil
}

// ErrNotDrained is ChangeShards' answer while the namespace holds state
// under its current shard count.
var ErrNotDrained = errors.New("namespace not drained")

// ChangeShards records n as namespace ns's shard count, only when nothing
// is left under the recorded one (or DefaultShards when none is): no
// conversation buffering, no batch in flight, no dead letter. Those would
// be lost to processes looking under the new keys. What stays behind is
// the dedupe windows (seen), the discard windows (last) and the shards'
// counters: they expire or stop counting (Totals restarts from the new
// shards' counters).
func ChangeShards(ctx context.Context, client rueidis.Client, ns string, n int) error {
	if n < 1 || n > keys.MaxShards {
		return fmt.Errorf("change shards: %d must be between 1 and %d", n, keys.MaxShards)
	}
	old, err := RecordedShards(ctx, client, ns)
	if err != nil {
		return err
	}
	if old == 0 {
		old = keys.DefaultShards
	}
	space := keys.New(ns)
	cmds := make(rueidis.Commands, 0, 3*old)
	for s := range old {
		cmds = append(cmds,
			client.B().Zcard().Key(space.Due(s)).Build(),
			client.B().Zcard().Key(space.Inflight(s)).Build(),
			client.B().Zcard().Key(space.Dead(s)).Build())
	}
	var left [3]int64 // buffering, in flight, dead
	for i, res := range client.DoMulti(ctx, cmds...) {
		c, err := res.AsInt64()
		if err != nil {
			return fmt.Errorf("change shards: %w", err)
		}
		left[i%3] += c
	}
	// A conversation paused until resumed keeps its buffer in no due set.
	held, err := heldBuffers(ctx, client, ns)
	if err != nil {
		return fmt.Errorf("change shards: %w", err)
	}
	if left != [3]int64{} || held > 0 {
		return fmt.Errorf("%w: under SHARDS=%d it holds %d buffering conversations (%d buffers, paused ones included), %d batches in flight, %d dead letters",
			ErrNotDrained, old, left[0], held, left[1], left[2])
	}
	if err := client.Do(ctx, client.B().Set().Key(space.ShardsKey()).Value(strconv.Itoa(n)).Build()).Error(); err != nil {
		return fmt.Errorf("change shards: %w", err)
	}
	return nil
}

// heldBuffers counts the conversations of ns with a buffer, paused ones
// included, with SCAN on every node: a read of the whole keyspace, fit for
// ChangeShards (run while the processes are stopped), not for a hot path.
func heldBuffers(ctx context.Context, client rueidis.Client, ns string) (int, error) {
	pattern := globEscape(ns) + ":{s*}:buf:*"
	found := map[string]bool{}
	for addr, node := range client.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				return 0, fmt.Errorf("scan %s for %s: %w", addr, pattern, err)
			}
			for _, k := range e.Elements {
				found[k] = true
			}
			if e.Cursor == 0 {
				break
			}
			cursor = e.Cursor
		}
	}
	return len(found), nil
}

// globEscape quotes the characters a Redis MATCH pattern gives a meaning.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
