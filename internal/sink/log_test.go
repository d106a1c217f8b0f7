package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
)

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestLog_PrintsBatchAsTranscript(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := NewLog(&out)
	require.Equal(t, "log", l.Name())
	b, body := sampleBatch(t)

	require.NoError(t, l.Deliver(context.Background(), b, body))
	require.Equal(t, ""+
		"── batch 5511999990000:17 · 3 messages · quiet · 2026-11-25T20:00:12.345Z\n"+
		"   5511999990000\n"+
		"   [20:00:00.101] oi\n"+
		"   [20:00:01.876] tudo bem?\n"+
		"   [20:00:04.002] (image) foto do pedido\n",
		out.String())
}

func TestLog_ShowsAttemptOnRedelivery(t *testing.T) {
	t.Parallel()
	b, _ := sampleBatch(t)
	b.Attempt = 3
	b.Messages = b.Messages[:1]
	out := string(formatLog(b))
	require.Contains(t, out, "── batch 5511999990000:17 · 1 message · quiet · 2026-11-25T20:00:12.345Z · attempt 3\n")
}

func TestLog_OddInputStaysOneLinePerMessage(t *testing.T) {
	t.Parallel()
	b := batch.Batch{
		BatchID: "k\n:1",
		Key:     "",
		Messages: []batch.Message{
			{Text: "linha 1\nlinha 2\r\nlinha 3", Type: "text", ReceivedAt: "2026-11-25T20:00:00.101Z"},
			{Text: "\x1b[2Jcleared\u2028sep\x00", Type: "", ReceivedAt: ""},
			{Text: "bad \xff utf8", Type: "audio\n", ReceivedAt: "yesterday\n"},
			{Text: "", Type: "sticker", ReceivedAt: "2026-11-25T17:00:00.5-03:00"},
			{},
		},
	}
	out := string(formatLog(b))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 2+len(b.Messages), out)
	require.Equal(t, `── batch k\n:1 · 5 messages`, lines[0])
	require.Equal(t, "   (no key)", lines[1])
	require.Equal(t, `   [20:00:00.101] linha 1\nlinha 2\r\nlinha 3`, lines[2])
	require.Equal(t, `   [--:--:--.---] \u001b[2Jcleared\u2028sep\u0000`, lines[3])
	require.Equal(t, "   [yesterday\\n] (audio\\n) bad \uFFFD utf8", lines[4])
	require.Equal(t, "   [20:00:00.500] (sticker)", lines[5])
	require.Equal(t, "   [--:--:--.---]", lines[6])

	empty := string(formatLog(batch.Batch{}))
	require.Equal(t, "── batch  · 0 messages\n   (no key)\n", empty)
}

func TestLog_ConcurrentDeliveriesDoNotInterleave(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer // unsynchronized on purpose: the sink's mutex must protect it
	l := NewLog(&out)
	const workers, each = 16, 25

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				b := batch.Batch{BatchID: id + ":1", Key: id, Reason: batch.ReasonQuiet}
				for j := range 3 {
					b.Messages = append(b.Messages, batch.Message{Text: fmt.Sprintf("%s msg %d", id, j), Type: "text"})
				}
				if err := l.Deliver(context.Background(), b, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, workers*each*5)
	for i := 0; i < len(lines); i += 5 {
		id, ok := strings.CutPrefix(lines[i], "── batch ")
		require.True(t, ok, lines[i])
		id = strings.TrimSuffix(id, ":1 · 3 messages · quiet")
		require.Equal(t, "   "+id, lines[i+1])
		for j := range 3 {
			require.Equal(t, fmt.Sprintf("   [--:--:--.---] %s msg %d", id, j), lines[i+2+j])
		}
	}
}

func TestLog_ReturnsWriteError(t *testing.T) {
	t.Parallel()
	writeErr := errors.New("disk full")
	b, body := sampleBatch(t)

	err := NewLog(failingWriter{writeErr}).Deliver(context.Background(), b, body)
	require.ErrorIs(t, err, writeErr)
	require.Contains(t, err.Error(), "log sink: batch 5511999990000:17: write: disk full")
	require.False(t, IsPermanent(err))
}

func TestLog_CanceledContextWritesNothing(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b, body := sampleBatch(t)

	err := NewLog(&out).Deliver(ctx, b, body)
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, out.String())
}

// FuzzLogOneLinePerMessage checks that no input makes the log sink panic or
// print a message over more than one line.
func FuzzLogOneLinePerMessage(f *testing.F) {
	f.Add("5511999990000", "oi\ntudo bem?", "image", "2026-11-25T20:00:00.101Z")
	f.Add("\r", "\u2028\x85", "\x00", "not a time")
	f.Fuzz(func(t *testing.T, key, text, typ, receivedAt string) {
		b := batch.Batch{
			BatchID:  key + ":1",
			Key:      key,
			Reason:   text,
			Messages: []batch.Message{{Text: text, Type: typ, ReceivedAt: receivedAt}, {Text: text}},
		}
		out := string(formatLog(b))
		if n := strings.Count(out, "\n"); n != 4 || !strings.HasSuffix(out, "\n") {
			t.Fatalf("want 4 lines, got %d: %q", n, out)
		}
		if strings.ContainsAny(out, "\r\u2028\u2029\x00\x1b") {
			t.Fatalf("unescaped control character in %q", out)
		}
	})
}
