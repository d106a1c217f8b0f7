package store

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/keys"
)

// State is what a namespace holds now, summed over its shards: the gauges
// the worker's metrics serve. Reading it costs the same whatever the
// namespace holds: four commands per shard and one TIME, in one round trip
// (ZCARD and ZRANGE 0 0, never SCAN).
type State struct {
	Now       int64 // Redis clock (or the store's test clock), Unix ms
	Buffering int64 // conversations waiting for their flush: members of the due sets
	InFlight  int64 // batches claimed and not yet ended: members of the inflight sets
	Dead      int64 // dead-lettered batches kept: members of the dead sets
	// OverdueMs is how far the earliest deadline in the due sets is past
	// Now, in ms; 0 when none has passed. A conversation stays overdue
	// only while no scheduler claims it: this is the stuck-buffer alarm.
	OverdueMs int64
}

// State reads the namespace's State in one round trip.
func (b *Store) State(ctx context.Context) (State, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	const perShard = 4
	cmds := make(rueidis.Commands, 0, 1+perShard*keys.Shards)
	cmds = append(cmds, b.client.B().Time().Build())
	for s := range keys.Shards {
		cmds = append(cmds,
			b.client.B().Zcard().Key(b.keys.Due(s)).Build(),
			b.client.B().Zcard().Key(b.keys.Inflight(s)).Build(),
			b.client.B().Zcard().Key(b.keys.Dead(s)).Build(),
			b.client.B().Zrange().Key(b.keys.Due(s)).Min("0").Max("0").Withscores().Build())
	}
	res := b.client.DoMulti(ctx, cmds...)
	var st State
	var err error
	if st.Now, err = b.clockOf(res[0]); err != nil {
		return State{}, fmt.Errorf("state: %w", err)
	}
	earliest := int64(-1)
	for s := range keys.Shards {
		r := res[1+perShard*s:]
		for i, dst := range []*int64{&st.Buffering, &st.InFlight, &st.Dead} {
			n, err := r[i].AsInt64()
			if err != nil {
				return State{}, fmt.Errorf("state: zcard of shard %d: %w", s, err)
			}
			*dst += n
		}
		first, err := r[3].AsZScores()
		if err != nil {
			return State{}, fmt.Errorf("state: earliest of %s: %w", b.keys.Due(s), err)
		}
		if len(first) > 0 && (earliest < 0 || int64(first[0].Score) < earliest) {
			earliest = int64(first[0].Score)
		}
	}
	if earliest >= 0 && earliest < st.Now {
		st.OverdueMs = st.Now - earliest
	}
	return st, nil
}
