package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
)

func TestFlush_BatchNeverExceedsMaxBytes(t *testing.T) {
	const maxBytes = 1000
	tb := setup(t, func(o *store.Options) { o.MaxBytes = maxBytes })
	ctx := context.Background()
	var want []string
	for i := range 10 {
		m := fmt.Sprintf("m%d-%s", i, strings.Repeat("x", 290)) // ~320 bytes stored
		want = append(want, m)
		_, err := tb.buf.Append(ctx, "u1", fmt.Sprint(i), msg(m), false)
		require.NoError(t, err)
	}
	tb.advance(10 * time.Second)
	var got []string
	reasons := map[string]int{}
	for range 10 {
		c, why, err := tb.buf.Flush(ctx, "u1", "w1")
		require.NoError(t, err)
		if why == store.FlushGone {
			break
		}
		require.Empty(t, why)
		// The claimed batch's messages as stored: their JSON, byte for byte.
		stored, err := tb.client.Do(ctx, tb.client.B().Hget().Key(tb.buf.Keys().Conversation("u1").Batch).Field("messages").Build()).ToString()
		require.NoError(t, err)
		var raw []json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(stored), &raw))
		require.Len(t, raw, len(c.Batch.Messages))
		size := 0
		for _, m := range raw {
			size += len(m)
		}
		require.LessOrEqual(t, size, maxBytes, "a batch's messages stay within MAX_BATCH_BYTES")
		require.NotEmpty(t, c.Batch.Messages)
		reasons[c.Batch.Reason]++
		got = append(got, texts(t, c)...)
		commit(t, c)
	}
	require.Equal(t, want, got, "every message once, in order")
	require.Positive(t, reasons["max_bytes"], "slices name why they were cut: %v", reasons)
}

func TestFlush_OneMessageLargerThanMaxBytesTravelsAlone(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.MaxBytes = 100 })
	ctx := context.Background()
	for i, m := range []string{strings.Repeat("a", 200), "b"} {
		_, err := tb.buf.Append(ctx, "u1", fmt.Sprint(i), msg(m), false)
		require.NoError(t, err)
	}
	tb.advance(10 * time.Second)
	c := tb.flush(t, "u1", "w1")
	require.Len(t, c.Batch.Messages, 1, "never an empty batch, never stuck")
}

func TestBuffered_CountsWhatIsNotYetClaimed(t *testing.T) {
	tb := setup(t, func(o *store.Options) { o.MaxMessages = 2 })
	ctx := context.Background()
	lvl, err := tb.buf.Buffered(ctx, "u1")
	require.NoError(t, err)
	require.Zero(t, lvl)
	var total int64
	for i := range 3 {
		m := msg(fmt.Sprint("m", i))
		total += int64(len(m))
		_, err := tb.buf.Append(ctx, "u1", fmt.Sprint(i), m, false)
		require.NoError(t, err)
	}
	lvl, err = tb.buf.Buffered(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, store.Level{Messages: 3, Bytes: total}, lvl)

	c := tb.flush(t, "u1", "w1") // a slice of 2
	lvl, err = tb.buf.Buffered(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, store.Level{Messages: 1, Bytes: int64(len(msg("m2")))}, lvl)
	commit(t, c)
	tb.flush(t, "u1", "w1")
	lvl, err = tb.buf.Buffered(ctx, "u1")
	require.NoError(t, err)
	require.Zero(t, lvl)
}
