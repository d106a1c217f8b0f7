package appender_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// A message whose append panics is rejected (to the dead-letter queue) on
// its own: the messages it shared a round trip with are appended, and the
// later messages of its conversation are appended after it, in order. A
// requeue would have sent it behind them.
func TestPanic_RejectsOnlyThatMessage(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "appender")
	client := testenv.Redis(t, ns)
	buf := newStore(client, ns)
	a := appender.New(buf, appender.Options{Lanes: 1})
	a.SetAppendMany(func(ctx context.Context, jobs []store.AppendJob) ([]store.Appended, []error) {
		for _, j := range jobs {
			if j.ID == "boom" {
				panic("boom")
			}
		}
		return buf.AppendMany(ctx, jobs)
	})
	var all []*settled
	var ids []string
	handle := func(key, id string) {
		s := &settled{}
		all, ids = append(all, s), append(ids, id)
		a.Handle(envelope(t, key, id, "x"), s)
	}
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(a.Stop)
	// Handled at once, so that most share round trips with boom.
	for i := range 4 {
		handle("u"+strconv.Itoa(i), "m"+strconv.Itoa(i))
	}
	handle("u0", "boom")
	handle("u0", "after")
	handle("u1", "m5")
	waitSettled(t, all)
	for i, s := range all {
		want := queue.Ack
		if ids[i] == "boom" {
			want = queue.Reject
		}
		require.Equal(t, []queue.Outcome{want}, s.get(), ids[i])
	}
	require.Equal(t, []string{"m0", "after"}, buffered(t, client, ns, "u0"))
	require.Equal(t, []string{"m1", "m5"}, buffered(t, client, ns, "u1"))
}
