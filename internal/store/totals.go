package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/keys"
)

// Totals are the cumulative counters of a namespace, summed over its shards'
// stats hashes (<ns>:{sNN}:stats). The scripts count them as they change the
// state, so they cover every api and worker process; a rate is the
// difference of two readings. They start at zero when the keys are new and
// never expire.
type Totals struct {
	Appended     int64 // messages stored (append.lua)
	Duplicates   int64 // messages dropped as already seen (append.lua)
	Flushed      int64 // batches claimed by a flush (flush.lua)
	LatenessMs   int64 // sum over those claims of claim time - deadline, ms
	Delivered    int64 // batches committed (commit.lua)
	DeadLettered int64 // batches dead-lettered (dead.lua)
}

// Totals reads the counters of every shard in one round trip.
func (b *Store) Totals(ctx context.Context) (Totals, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	cmds := make([]rueidis.Completed, keys.Shards)
	for s := range keys.Shards {
		cmds[s] = b.client.B().Hgetall().Key(b.keys.Stats(s)).Build()
	}
	var t Totals
	for s, res := range b.client.DoMulti(ctx, cmds...) {
		m, err := res.AsStrMap()
		if err != nil {
			return Totals{}, fmt.Errorf("totals %s: %w", b.keys.Stats(s), err)
		}
		for field, dst := range map[string]*int64{
			"appended": &t.Appended, "duplicates": &t.Duplicates, "flushed": &t.Flushed,
			"lateness_ms": &t.LatenessMs, "delivered": &t.Delivered, "dead": &t.DeadLettered,
		} {
			if v, ok := m[field]; ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return Totals{}, fmt.Errorf("totals %s %s: %w", b.keys.Stats(s), field, err)
				}
				*dst += n
			}
		}
	}
	return t, nil
}
