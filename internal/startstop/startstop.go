// Package startstop gives every long-running part of lull one lifecycle
// shape (after river's startstop): Start launches the part's goroutine and
// returns, Stop asks it to end and waits until it has, and Started/Stopped
// are channels closed when those happen. A part embeds BaseStartStop and
// writes only its run loop.
package startstop

import (
	"context"
	"sync"
)

// Service is a long-running part of a process.
type Service interface {
	// Start launches the service and returns at once. It returns an error
	// only when the service cannot start at all; starting a started service
	// does nothing.
	Start(ctx context.Context) error
	// Started is closed once the service's goroutine runs.
	Started() <-chan struct{}
	// Stop asks the service to end and waits until it has. Stopping a
	// service that never started, or stopped already, returns at once.
	Stop()
	// Stopped is closed once the service has ended, whether Stop asked it
	// to or it ended on its own (a fatal error).
	Stopped() <-chan struct{}
}

// BaseStartStop implements the bookkeeping of Service. Most services'
// Start is one line, `return s.StartFunc(ctx, s.run)`. One that must do
// something before its goroutine (bind a port, say) calls StartInit and,
// when told to start, runs its loop in a goroutine that calls started()
// first and stopped() last (deferred):
//
//	func (s *Svc) Start(ctx context.Context) error {
//		ctx, ok, started, stopped := s.StartInit(ctx)
//		if !ok {
//			return nil
//		}
//		go func() {
//			started()
//			defer stopped()
//			s.run(ctx) // returns when ctx is done
//		}()
//		return nil
//	}
type BaseStartStop struct {
	mu      sync.Mutex
	cancel  context.CancelFunc
	started chan struct{}
	stopped chan struct{}
	running bool
}

func (s *BaseStartStop) init() {
	if s.started == nil {
		s.started = make(chan struct{})
		s.stopped = make(chan struct{})
	}
}

// StartInit prepares a start. ok is false when the service already runs.
// The returned ctx is cancelled by Stop (or when the parent ends).
func (s *BaseStartStop) StartInit(parent context.Context) (ctx context.Context, ok bool, started, stopped func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return parent, false, func() {}, func() {}
	}
	s.init()
	select {
	case <-s.stopped: // a service that ran before starts afresh
		s.started, s.stopped = make(chan struct{}), make(chan struct{})
	default:
	}
	s.running = true
	ctx, s.cancel = context.WithCancel(parent)
	startedCh, stoppedCh := s.started, s.stopped
	var startOnce, stopOnce sync.Once
	started = func() { startOnce.Do(func() { close(startedCh) }) }
	stopped = func() {
		stopOnce.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.cancel()
			// Closed before running turns false, so that a Start racing
			// with this end makes channels of its own.
			close(stoppedCh)
			s.running = false
		})
	}
	return ctx, true, started, stopped
}

// StartFunc is a whole Start for a service whose run needs nothing before
// it: it launches run(ctx) in a goroutine (doing nothing when the service
// already runs); the service has ended when run returns. run must return
// once ctx is done.
func (s *BaseStartStop) StartFunc(ctx context.Context, run func(ctx context.Context)) error {
	ctx, ok, started, stopped := s.StartInit(ctx)
	if !ok {
		return nil
	}
	go func() {
		started()
		defer stopped()
		run(ctx)
	}()
	return nil
}

// Started is closed once the service's goroutine runs.
func (s *BaseStartStop) Started() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	return s.started
}

// Stopped is closed once the service has ended.
func (s *BaseStartStop) Stopped() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	return s.stopped
}

// Stop cancels the service's context and waits until it has ended.
func (s *BaseStartStop) Stop() {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	cancel, stopped := s.cancel, s.stopped
	s.mu.Unlock()
	cancel()
	<-stopped
}

// StopAllParallel stops every service at once and waits for all of them.
func StopAllParallel(services ...Service) {
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Stop()
		}()
	}
	wg.Wait()
}
