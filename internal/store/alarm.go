package store

import (
	"sync"
	"time"
)

// Alarm is the store's one hook: every call that sets a deadline (an append,
// a typing event, a manual flush, a commit or dead letter that leaves newer
// messages buffered, a slice claimed out of a larger buffer) reports it
// here, converted to the local clock. The scheduler listens to it; no part
// of the worker calls back into another.
type Alarm struct {
	mu sync.Mutex
	at time.Time // earliest deadline reported since Clear (zero: none)
	ch chan struct{}
}

func newAlarm() *Alarm { return &Alarm{ch: make(chan struct{}, 1)} }

// set reports deadline, on the Redis clock read as now (both Unix ms; a
// negative deadline means none).
func (a *Alarm) set(deadline, now int64) {
	if deadline < 0 {
		return
	}
	at := time.Now().Add(time.Duration(deadline-now)*time.Millisecond + time.Millisecond)
	a.mu.Lock()
	earlier := a.at.IsZero() || at.Before(a.at)
	if earlier {
		a.at = at
	}
	a.mu.Unlock()
	if earlier {
		select {
		case a.ch <- struct{}{}:
		default:
		}
	}
}

// C receives when a deadline earlier than any reported since Clear arrives.
func (a *Alarm) C() <-chan struct{} { return a.ch }

// Earliest is the earliest deadline reported since Clear (zero: none).
func (a *Alarm) Earliest() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at
}

// Clear forgets the deadlines reported so far: the scheduler calls it as a
// scan begins, since the scan sees them in Redis.
func (a *Alarm) Clear() {
	a.mu.Lock()
	a.at = time.Time{}
	a.mu.Unlock()
}
