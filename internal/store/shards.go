package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

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
	// A conversation paused until resumed keeps its buffer in no due set,
	// and a pause with nothing buffered lives in its meta alone.
	held, paused, err := heldConversations(ctx, client, ns, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("change shards: %w", err)
	}
	if left != [3]int64{} || held > 0 || paused > 0 {
		return fmt.Errorf("%w: under SHARDS=%d it holds %d conversations scheduled, %d buffers (paused ones included), %d paused conversations, %d batches in flight, %d dead letters",
			ErrNotDrained, old, left[0], held, paused, left[1], left[2])
	}
	if err := client.Do(ctx, client.B().Set().Key(space.ShardsKey()).Value(strconv.Itoa(n)).Build()).Error(); err != nil {
		return fmt.Errorf("change shards: %w", err)
	}
	return nil
}

// ScanKeys returns the keys matching the MATCH pattern on every node, with
// SCAN, each once (a replica answers with its master's keys): a read of the
// whole keyspace, fit for an offline command (ChangeShards, run while the
// processes are stopped) or a test, never for a hot path.
func ScanKeys(ctx context.Context, client rueidis.Client, pattern string) ([]string, error) {
	found := map[string]bool{}
	for addr, node := range client.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				return slices.Sorted(maps.Keys(found)), fmt.Errorf("scan %s for %s: %w", addr, pattern, err)
			}
			for _, k := range e.Elements {
				found[k] = true
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return slices.Sorted(maps.Keys(found)), nil
}

// NamespacePattern is the MATCH pattern of every key of namespace ns.
func NamespacePattern(ns string) string { return globEscape(ns) + ":*" }

// isShardKey reports whether key is <ns>:{sNN}:<kind>:<conversation> (a
// conversation key may itself hold "}:buf:", which the MATCH pattern lets by).
func isShardKey(ns, kind, key string) bool {
	rest, ok := strings.CutPrefix(key, ns+":{s")
	if !ok {
		return false
	}
	digits, rest, ok := strings.Cut(rest, "}:")
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return false
	}
	return strings.HasPrefix(rest, kind+":")
}

// heldConversations counts, in one SCAN of the shards' keys, the
// conversations of ns with a buffer (paused ones included: in no due set
// while paused until resumed) and those under a pause that has not run
// out, buffering or not (the pause lives in their meta alone, and a new
// shard count would end it unseen).
func heldConversations(ctx context.Context, client rueidis.Client, ns string, nowMs int64) (buffers, paused int, err error) {
	all, err := ScanKeys(ctx, client, globEscape(ns)+":{s*}:*")
	if err != nil {
		return 0, 0, err
	}
	var metas []string
	for _, k := range all {
		switch {
		case isShardKey(ns, "buf", k):
			buffers++
		case isShardKey(ns, "meta", k):
			metas = append(metas, k)
		}
	}
	for chunk := range slices.Chunk(metas, 500) {
		cmds := make(rueidis.Commands, 0, len(chunk))
		for _, k := range chunk {
			cmds = append(cmds, client.B().Hmget().Key(k).Field("paused", "paused_until").Build())
		}
		for _, res := range client.DoMulti(ctx, cmds...) {
			v, err := res.ToArray()
			if err != nil {
				return 0, 0, err
			}
			if len(v) != 2 || v[0].IsNil() {
				continue
			}
			if until, err := v[1].AsInt64(); err == nil && until <= nowMs {
				continue // ran out
			}
			paused++
		}
	}
	return buffers, paused, nil
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
