package startstop_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/startstop"
)

// loop is a service that counts its runs and ends when its context does,
// or on its own when quit is closed.
type loop struct {
	startstop.BaseStartStop
	runs atomic.Int32
	quit chan struct{}
}

func (l *loop) Start(ctx context.Context) error {
	return l.StartFunc(ctx, func(ctx context.Context) {
		l.runs.Add(1)
		select {
		case <-ctx.Done():
		case <-l.quit:
		}
	})
}

func closed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not closed", what)
	}
}

func TestService_StartStop(t *testing.T) {
	l := &loop{quit: make(chan struct{})}
	l.Stop() // never started: returns at once
	require.NoError(t, l.Start(context.Background()))
	require.NoError(t, l.Start(context.Background()), "a second Start does nothing")
	closed(t, l.Started(), "started")
	select {
	case <-l.Stopped():
		t.Fatal("stopped before Stop")
	default:
	}
	l.Stop()
	closed(t, l.Stopped(), "stopped")
	require.EqualValues(t, 1, l.runs.Load())
	l.Stop() // stopped already: returns at once

	// It can start again.
	require.NoError(t, l.Start(context.Background()))
	closed(t, l.Started(), "started again")
	l.Stop()
	require.EqualValues(t, 2, l.runs.Load())
}

func TestService_EndsOnItsOwn(t *testing.T) {
	l := &loop{quit: make(chan struct{})}
	require.NoError(t, l.Start(context.Background()))
	close(l.quit)
	closed(t, l.Stopped(), "stopped on its own")
	l.Stop() // returns at once
}

func TestService_ParentContextEndsIt(t *testing.T) {
	l := &loop{quit: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, l.Start(ctx))
	cancel()
	closed(t, l.Stopped(), "stopped with its parent")
}

func TestStopAllParallel(t *testing.T) {
	ls := []*loop{{quit: make(chan struct{})}, {quit: make(chan struct{})}, {quit: make(chan struct{})}}
	var svcs []startstop.Service
	for _, l := range ls {
		require.NoError(t, l.Start(context.Background()))
		svcs = append(svcs, l)
	}
	startstop.StopAllParallel(svcs...)
	for i, l := range ls {
		select {
		case <-l.Stopped():
		default:
			t.Fatalf("service %d not stopped", i)
		}
	}
}
