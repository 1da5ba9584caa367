package worker

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrJobStarted is the cause (context.Cause) of the end of the context an
// Idler's function runs with when a slot started a job meanwhile.
var ErrJobStarted = errors.New("worker: a job started")

// An Idler calls a function during long periods of inactivity of one or
// more Workers (the idle hook; Config.Idle and Config.OnIdle make one for a
// single Worker). Workers given the same Idler in Config.Idler count as one:
// when none of their slots has run a job for the Idler's quiet period, the
// function is called, and again after every further quiet period, counted
// from when the previous call returned. Calls happen on the goroutine of
// Run, so never concurrently with each other. A job does not wait for a
// call: the context of the call in progress ends, with cause ErrJobStarted,
// as soon as any slot starts a job, and the function should then stop
// soon. Its methods are safe for concurrent use.
type Idler struct {
	quietFor time.Duration
	fn       func(ctx context.Context)

	mu    sync.Mutex
	busy  int                     // slots running a handler
	quiet time.Time               // start of the current quiet period
	stop  context.CancelCauseFunc // ends the call in progress; nil between calls
	poke  chan struct{}
}

// NewIdler returns an Idler that calls fn after each quiet period of
// length quiet (which must be positive). Give it to the Workers in
// Config.Idler and call Run.
func NewIdler(quiet time.Duration, fn func(ctx context.Context)) *Idler {
	return &Idler{quietFor: quiet, fn: fn, quiet: time.Now(), poke: make(chan struct{}, 1)}
}

// reset starts a quiet period now with no slot busy: a Worker's own Idler
// at the start of its Run.
func (s *Idler) reset(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy, s.quiet = 0, now
}

// started records that a slot started a job, and ends the call in
// progress.
func (s *Idler) started() {
	s.mu.Lock()
	s.busy++
	if s.stop != nil {
		s.stop(ErrJobStarted)
	}
	s.mu.Unlock()
	s.nudge()
}

// ended records that a slot's job ended at now: the quiet period starts
// afresh.
func (s *Idler) ended(now time.Time) {
	s.mu.Lock()
	s.busy--
	if now.After(s.quiet) {
		s.quiet = now
	}
	s.mu.Unlock()
	s.nudge()
}

func (s *Idler) nudge() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Run calls the function after every quiet period until ctx ends, then
// returns (after the call in progress, whose context ends too). A period
// counts from the start of Run at the earliest. Run one Run at a time.
func (s *Idler) Run(ctx context.Context) {
	if s.quietFor <= 0 || s.fn == nil {
		return
	}
	s.mu.Lock()
	if now := time.Now(); now.After(s.quiet) {
		s.quiet = now
	}
	s.mu.Unlock()
	timer := time.NewTimer(s.quietFor)
	defer timer.Stop()
	for {
		s.mu.Lock()
		busy, due := s.busy, s.quiet.Add(s.quietFor)
		s.mu.Unlock()
		var wait <-chan time.Time
		if busy == 0 {
			d := time.Until(due)
			if d <= 0 {
				if ctx.Err() != nil {
					return
				}
				s.call(ctx)
				continue
			}
			timer.Reset(d)
			wait = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-s.poke:
		case <-wait:
		}
	}
}

// call calls the function, unless a job started since Run looked, with a
// context that started ends; then the next quiet period starts.
func (s *Idler) call(ctx context.Context) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.mu.Lock()
	if s.busy > 0 {
		s.mu.Unlock()
		return
	}
	s.stop = cancel
	s.mu.Unlock()
	s.fn(cctx)
	s.mu.Lock()
	s.stop = nil
	if now := time.Now(); now.After(s.quiet) {
		s.quiet = now
	}
	s.mu.Unlock()
}
