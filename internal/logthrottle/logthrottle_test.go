package logthrottle_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/logthrottle"
	"github.com/lullhq/lull/internal/testenv"
)

func TestThrottle_OneLinePerIntervalEveryEventCounted(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	const interval = 200 * time.Millisecond
	th := logthrottle.New(interval)

	// 8 goroutines fail for about a second.
	const perWorker = 500
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range perWorker {
				th.Log(context.Background(), log, slog.LevelWarn, "failed", slog.Int("worker", w), slog.Int("i", i))
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	th.Flush()

	lines := logs.Records(t, "failed")
	total := 0
	for _, rec := range lines {
		if n, ok := rec["count"].(float64); ok {
			total += int(n)
		} else {
			total++
		}
	}
	require.Equal(t, 8*perWorker, total, "every event is counted exactly once")
	// At most one line per interval, plus the first and the final flush.
	require.LessOrEqual(t, len(lines), int(took/interval)+2, "lines over %s", took)
	require.GreaterOrEqual(t, len(lines), 2)
	require.Nil(t, lines[0]["count"], "the first event is written at once, alone")
}

func TestThrottle_QuietIntervalWritesAtOnce(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	th := logthrottle.New(50 * time.Millisecond)

	th.Log(context.Background(), log, slog.LevelWarn, "failed", slog.String("err", "first"))
	th.Log(context.Background(), log, slog.LevelWarn, "failed", slog.String("err", "second"))
	th.Log(context.Background(), log, slog.LevelWarn, "failed", slog.String("err", "third"))
	require.Len(t, logs.Records(t, "failed"), 1)

	// The timer sums up the two held back, with the latest error.
	require.Eventually(t, func() bool { return len(logs.Records(t, "failed")) == 2 }, 2*time.Second, 5*time.Millisecond)
	summary := logs.Records(t, "failed")[1]
	require.Equal(t, "third", summary["err"])
	require.EqualValues(t, 2, summary["count"])

	// After a quiet interval, the next event is written at once.
	time.Sleep(60 * time.Millisecond)
	th.Log(context.Background(), log, slog.LevelWarn, "failed", slog.String("err", "later"))
	lines := logs.Records(t, "failed")
	require.Len(t, lines, 3)
	require.Equal(t, "later", lines[2]["err"])
	require.Nil(t, lines[2]["count"])
}
