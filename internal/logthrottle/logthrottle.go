// Package logthrottle writes a repeating log event at most once per
// interval, counting the ones it holds back.
package logthrottle

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Throttle writes a repeating event (a refused publish, a failing append) at most once per
// interval. The first event after a quiet interval is written at once; the
// ones that follow within the interval are held back, and when it ends one
// line stands for them all: the latest one's attributes (its error) plus
// "count", how many events the line stands for. A broker that refuses
// everything while senders retry then costs one line per interval, not one
// per request, and no failure goes uncounted. It is safe for concurrent use.
type Throttle struct {
	interval time.Duration

	mu         sync.Mutex
	last       time.Time // when the last line was written
	suppressed int       // events since then, not written
	latest     pendingLine
	timer      *time.Timer // writes the summary when the interval ends
	// timerID tells the current timer from one that was stopped too late:
	// its callback, already waiting for mu, must not write the events of
	// the next interval early.
	timerID uint64
}

type pendingLine struct {
	log   *slog.Logger
	level slog.Level
	msg   string
	attrs []slog.Attr
}

// New writes at most one line per interval (at least 1ms).
func New(interval time.Duration) *Throttle {
	return &Throttle{interval: max(interval, time.Millisecond)}
}

// Log writes msg with attrs to log now, or counts it for the summary line
// at the end of the current interval.
func (t *Throttle) Log(ctx context.Context, log *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	t.mu.Lock()
	now := time.Now()
	if now.Sub(t.last) < t.interval {
		t.suppressed++
		t.latest = pendingLine{log: log, level: level, msg: msg, attrs: attrs}
		if t.timer == nil {
			t.timerID++
			id := t.timerID
			t.timer = time.AfterFunc(t.last.Add(t.interval).Sub(now), func() { t.flush(id) })
		}
		t.mu.Unlock()
		return
	}
	// A summary still due (its timer is late) takes this event in: one
	// line, not two, for the interval.
	_, n := t.takeLocked()
	t.last = now
	t.mu.Unlock()
	if n > 0 {
		pendingLine{log: log, level: level, msg: msg, attrs: attrs}.write(ctx, n+1)
		return
	}
	log.LogAttrs(ctx, level, msg, attrs...)
}

// Flush writes the summary of the events counted so far now, e.g. before
// the process exits.
func (t *Throttle) Flush() {
	t.flush(0)
}

// flush writes the pending summary: for the timer numbered id, or
// whatever is pending when id is 0.
func (t *Throttle) flush(id uint64) {
	t.mu.Lock()
	if id != 0 && (t.timer == nil || id != t.timerID) {
		t.mu.Unlock()
		return
	}
	pending, n := t.takeLocked()
	if n > 0 {
		t.last = time.Now()
	}
	t.mu.Unlock()
	if n > 0 {
		// The timer has no caller and so no context; the line must be
		// written whatever became of the requests it counts.
		pending.write(context.Background(), n)
	}
}

// takeLocked hands over the pending summary and resets the count.
func (t *Throttle) takeLocked() (pendingLine, int) {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	p, n := t.latest, t.suppressed
	t.latest, t.suppressed = pendingLine{}, 0
	return p, n
}

func (p pendingLine) write(ctx context.Context, count int) {
	attrs := append(append([]slog.Attr{}, p.attrs...), slog.Int("count", count))
	p.log.LogAttrs(ctx, p.level, p.msg, attrs...)
}
