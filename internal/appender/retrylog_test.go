package appender_test

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// While Redis refuses writes, the appends retried are one warning a
// second, each counting the failures it stands for, not one per message
// and attempt; once Redis takes writes again every message is acked.
func TestRetryWarnings_OneLineASecondEveryFailureCounted(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "appender")
	var logs testenv.LogBuffer
	a := startWith(t, newStore(redis.Client, ns), appender.Options{Lanes: 4, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	redis.RefuseWrites(t)
	var all []*settled
	for i := range 40 {
		s := &settled{}
		all = append(all, s)
		a.Handle(envelope(t, "u"+strconv.Itoa(i), "m"+strconv.Itoa(i), "oi"), s)
	}
	time.Sleep(2500 * time.Millisecond)
	redis.AcceptWrites(t)
	waitSettled(t, all)
	for i, s := range all {
		require.Equal(t, []queue.Outcome{queue.Ack}, s.get(), "message %d", i)
	}
	a.Stop() // writes the last summary

	lines := logs.Records(t, "append failed, retrying")
	require.GreaterOrEqual(t, len(lines), 2)
	require.LessOrEqual(t, len(lines), 5, "one line a second over about 2.5s")
	counted := 0
	for _, rec := range lines {
		n, ok := rec["count"].(float64)
		if !ok {
			n = 1 // the first line of an interval stands for itself
		}
		counted += int(n)
	}
	require.GreaterOrEqual(t, counted, 40, "every message failed at least once, and each failure is counted")
}
