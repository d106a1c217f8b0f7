package delivery_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/delivery"
	"github.com/lullhq/lull/internal/sink"
)

// observed records what a delivery.Observer hears, per sink.
type observed struct {
	mu      sync.Mutex
	calls   map[string]int
	results map[string][]string
}

func newObserved() *observed {
	return &observed{calls: map[string]int{}, results: map[string][]string{}}
}

func (o *observed) SinkCalled(sink string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if took > 0 {
		o.calls[sink]++
	}
}

func (o *observed) SinkDone(sink, result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.results[sink] = append(o.results[sink], result)
}

// renamed is a sink under another name.
type renamed struct {
	sink.Sink
	name string
}

func (r renamed) Name() string { return r.name }

func TestObserver_HearsEachSinksResultPerAttempt(t *testing.T) {
	tb := setup(t, func(attempt int) error {
		if attempt < 3 {
			return errors.New("receiver down")
		}
		return nil
	})
	always := renamed{Sink: &scripted{}, name: "always"}
	obs := newObserved()
	d := tb.deliverer(10, func(o *delivery.Options) {
		o.Sinks = append(o.Sinks, always)
		o.Observer = obs
	})
	d.Deliver(t.Context(), tb.claim(t, "u1"))
	wait(t, d)
	require.Equal(t, map[string][]string{
		"scripted": {delivery.ResultRetry, delivery.ResultRetry, delivery.ResultOK},
		"always":   {delivery.ResultOK}, // it had the batch after the first attempt
	}, obs.results)
	require.Equal(t, map[string]int{"scripted": 3, "always": 1}, obs.calls)
}

func TestObserver_HearsDeadOnTheLastAttemptAndOnAPermanentFailure(t *testing.T) {
	for name, fail := range map[string]func(int) error{
		"last attempt": func(int) error { return errors.New("status 503") },
		"permanent": func(attempt int) error {
			if attempt == 2 {
				return sink.Permanent(errors.New("status 400"))
			}
			return errors.New("status 503")
		},
	} {
		t.Run(name, func(t *testing.T) {
			tb := setup(t, fail)
			obs := newObserved()
			d := tb.deliverer(3, func(o *delivery.Options) { o.Observer = obs })
			d.Deliver(t.Context(), tb.claim(t, "u1"))
			wait(t, d)
			want := []string{delivery.ResultRetry, delivery.ResultRetry, delivery.ResultDead}
			if name == "permanent" {
				want = []string{delivery.ResultRetry, delivery.ResultDead}
			}
			require.Equal(t, map[string][]string{"scripted": want}, obs.results)
			tb.deadLetter(t)
		})
	}
}
