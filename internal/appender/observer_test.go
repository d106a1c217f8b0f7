package appender_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/testenv"
)

// observed adds up what an appender.Observer hears.
type observed struct {
	mu                                        sync.Mutex
	stored, duplicates, failed, typed, reject int
	trips                                     int
}

func (o *observed) Appended(stored, duplicates, failed int, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stored, o.duplicates, o.failed = o.stored+stored, o.duplicates+duplicates, o.failed+failed
	if took > 0 {
		o.trips++
	}
}

func (o *observed) Typing(took time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil && took > 0 {
		o.typed++
	}
}

func (o *observed) Rejected() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reject++
}

func (o *observed) get() observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	return observed{stored: o.stored, duplicates: o.duplicates, failed: o.failed, typed: o.typed, reject: o.reject, trips: o.trips}
}

func TestObserver_HearsStoredDuplicatesTypingAndRejects(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "appender")
	client := testenv.Redis(t, ns)
	obs := &observed{}
	a := appender.New(newStore(client, ns), appender.Options{Lanes: 2, Observer: obs})
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(a.Stop)
	<-a.Started()

	var all []*settled
	handle := func(body []byte) {
		s := &settled{}
		all = append(all, s)
		a.Handle(body, s)
	}
	handle([]byte(`{not json`))
	handle(envelope(t, "u1", "m1", "oi"))
	handle(envelope(t, "u2", "m1", "oi"))
	handle(envelope(t, "u1", "m1", "oi")) // a redelivery
	handle(envelope(t, "u1", "m2", "tudo bem?"))
	handle([]byte(`{"key":"u1","kind":"typing","message":{}}`))
	require.Eventually(t, func() bool {
		for _, s := range all {
			if len(s.get()) != 1 {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond)

	got := obs.get()
	require.Equal(t, 3, got.stored)
	require.Equal(t, 1, got.duplicates)
	require.Zero(t, got.failed)
	require.Equal(t, 1, got.typed)
	require.Equal(t, 1, got.reject)
	require.Positive(t, got.trips)
}
