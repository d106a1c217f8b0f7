package sink

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lullhq/lull/internal/batch"
)

// Log writes each batch as a short, human-readable transcript, one block
// per batch and one line per message:
//
//	── batch 5511999990000:17 · 3 messages · quiet · 2026-11-25T20:00:12.345Z
//	   5511999990000
//	   [20:00:00.101] oi
//	   [20:00:01.876] tudo bem?
//	   [20:00:04.002] (image) foto do pedido
//
// Text from users is escaped (newlines as \n, other control characters as
// \u00XX, invalid UTF-8 replaced) so a message never spans or forges lines.
// Each block is written with a single Write under a mutex, so concurrent
// deliveries never interleave.
type Log struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLog returns a log sink writing to w (os.Stdout when w is nil).
func NewLog(w io.Writer) *Log {
	return &Log{w: defaultWriter(w)}
}

// Name is "log".
func (l *Log) Name() string { return NameLog }

// Deliver writes b's block. body is not used.
func (l *Log) Deliver(ctx context.Context, b batch.Batch, _ []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("log sink: batch %s: %w", b.BatchID, err)
	}
	block := formatLog(b)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(block); err != nil {
		return fmt.Errorf("log sink: batch %s: write: %w", b.BatchID, err)
	}
	return nil
}

// formatLog renders the block the log sink writes for b, ending in a
// newline. Messages are shown in batch order (already sorted by
// batch.New); the time is the clock part of received_at.
func formatLog(b batch.Batch) []byte {
	var buf bytes.Buffer
	buf.WriteString("── batch ")
	buf.WriteString(escape(b.BatchID))
	buf.WriteString(" · ")
	buf.WriteString(plural(len(b.Messages), "message"))
	if b.Reason != "" {
		buf.WriteString(" · ")
		buf.WriteString(escape(b.Reason))
	}
	if b.FlushedAt != "" {
		buf.WriteString(" · ")
		buf.WriteString(escape(b.FlushedAt))
	}
	if b.Attempt > 1 {
		buf.WriteString(" · attempt ")
		buf.WriteString(strconv.Itoa(b.Attempt))
	}
	buf.WriteByte('\n')

	// A batch holds one conversation; its key is the user the messages
	// are grouped under.
	user := escape(b.Key)
	if user == "" {
		user = "(no key)"
	}
	buf.WriteString("   ")
	buf.WriteString(user)
	buf.WriteByte('\n')

	for _, m := range b.Messages {
		buf.WriteString("   [")
		buf.WriteString(clock(m.ReceivedAt))
		buf.WriteString("]")
		if m.Type != "" && m.Type != "text" {
			buf.WriteString(" (")
			buf.WriteString(escape(m.Type))
			buf.WriteString(")")
		}
		if m.Text != "" {
			buf.WriteByte(' ')
			buf.WriteString(escape(m.Text))
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// clock returns the time-of-day part of a received_at (HH:MM:SS.mmm, UTC),
// or the escaped raw value when it is not RFC 3339.
func clock(receivedAt string) string {
	if receivedAt == "" {
		return "--:--:--.---"
	}
	t, err := time.Parse(time.RFC3339Nano, receivedAt)
	if err != nil {
		return escape(receivedAt)
	}
	return t.UTC().Format("15:04:05.000")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// escape makes s safe to print on one terminal line: \n, \r and \t are
// written as escapes, other control and line/paragraph-separator
// characters as \uXXXX, invalid UTF-8 as U+FFFD.
func escape(s string) string {
	if isPlain(s) {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s) + 8)
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// isPlain reports whether s needs no escaping (the common case).
func isPlain(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}
