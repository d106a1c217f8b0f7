package batch_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
)

func raw(ms ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(ms))
	for i, m := range ms {
		out[i] = json.RawMessage(m)
	}
	return out
}

func TestNew_OrdersByProviderTimestampThenReceipt(t *testing.T) {
	t.Parallel()
	b, err := batch.New("u1", 42, batch.ReasonQuiet, 1_800_000_000_000, 1, raw(
		`{"id":"c","text":"c","received_at":"2026-11-25T20:00:01.000Z","timestamp":"2026-11-25T20:00:00.000Z"}`,
		`{"id":"a","text":"a","received_at":"2026-11-25T20:00:02.000Z","timestamp":"2026-11-25T19:59:58.000Z"}`,
		`{"id":"b","text":"b","received_at":"2026-11-25T20:00:00.500Z","metadata":null}`,
		`{"id":"d","text":"d","received_at":"2026-11-25T20:00:03.000Z","timestamp":"2026-11-25T20:00:00.000Z"}`,
	))
	require.NoError(t, err)
	var got []string
	for _, m := range b.Messages {
		got = append(got, m.ID)
	}
	require.Equal(t, []string{"a", "c", "d", "b"}, got, "by timestamp (receipt where none); arrival order among equals")
	require.Equal(t, "u1:42", b.BatchID)
	require.Equal(t, "2026-11-25T20:00:00.500Z", b.FirstAt)
	require.Equal(t, "2026-11-25T20:00:03.000Z", b.LastAt)
	require.Equal(t, "2027-01-15T08:00:00.000Z", b.FlushedAt)
	require.JSONEq(t, `{}`, string(b.Messages[3].Metadata), "a message without metadata gets {}")
}

func TestNew_CorruptMessageIsAnError(t *testing.T) {
	t.Parallel()
	_, err := batch.New("u1", 1, batch.ReasonQuiet, 0, 1, raw(`{"id":`))
	require.ErrorContains(t, err, "u1:1")
}

func TestParseMillis(t *testing.T) {
	require.Equal(t, int64(1764102911431), batch.ParseMillis("2025-11-25T20:35:11.431Z"))
	require.Equal(t, int64(1764102911431), batch.ParseMillis("2025-11-25T17:35:11.431-03:00"))
	require.Zero(t, batch.ParseMillis(""))
	require.Zero(t, batch.ParseMillis("yesterday"))
}
