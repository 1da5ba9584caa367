package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// How a follower asks the broker about jobs no event has ended. Events
// are the fast path but may be lost (a subscription joins asynchronously,
// a slow subscriber is dropped at its high-water mark, the events socket
// may be unreachable or refuse the key), so a job that has been quiet for
// a while is looked up with SERVER-JOB: oldest first, each one less often
// the longer it runs, so a long queue costs a few lookups a second.
const (
	followRound    = time.Second      // how often to look jobs up
	followQuiet    = 2 * time.Second  // how long a job may go without an event before its first lookup
	followMaxQuiet = 30 * time.Second // the longest a job goes between lookups
	followPerRound = 256              // lookups in one round at most
	followRunning  = 16               // a round ends after this many jobs found still running
	followEarly    = 1 << 16          // events kept for IDs not known yet
	followFailures = 3                // rounds in a row whose lookup failed before giving up
)

// outcome is how a followed job ended.
type outcome struct {
	State    string // protocol.JobComplete, protocol.JobFailed, or "" when the broker no longer knows the job
	Code     string
	ExitCode *int
	Error    string // from a lookup only: events carry no failure text
}

// followed is a job the follower waits for.
type followed struct {
	id   string
	line int // its input line, from 1
	due  time.Time
	wait time.Duration // until its next lookup
	done bool
}

// follower follows a run's jobs to their end, from the broker's events
// and, for jobs no event ended, SERVER-JOB lookups. Its methods are safe
// for concurrent use: add is called by the submitting goroutine, seen by
// the events watcher, round by the lookup loop.
type follower struct {
	service string
	ended   func(j *followed, o outcome) // called without the lock, once per job

	mu         sync.Mutex
	jobs       map[string]*followed
	order      []*followed // by submission; ended ones are dropped from the front
	early      map[string]outcome
	earlyOrder []string
	allIn      bool
	allDone    chan struct{}
	closed     bool
}

func newFollower(service string, ended func(*followed, outcome)) *follower {
	return &follower{service: service, ended: ended, jobs: map[string]*followed{}, early: map[string]outcome{},
		allDone: make(chan struct{})}
}

// add follows job id of input line line, accepted at now.
func (f *follower) add(now time.Time, id string, line int) {
	f.mu.Lock()
	j := &followed{id: id, line: line, due: now.Add(followQuiet), wait: followQuiet}
	if o, ok := f.early[id]; ok { // its event came before its ID
		delete(f.early, id)
		f.mu.Unlock()
		f.end(j, o)
		return
	}
	f.jobs[id] = j
	f.order = append(f.order, j)
	f.mu.Unlock()
}

// submitted says no more jobs will be added.
func (f *follower) submitted() {
	f.mu.Lock()
	f.allIn = true
	f.checkDone()
	f.mu.Unlock()
}

// done is closed once every job added has ended and submitted was called.
func (f *follower) done() <-chan struct{} { return f.allDone }

// pending is how many jobs have not ended yet.
func (f *follower) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.jobs)
}

// checkDone closes allDone when it is time; f.mu is held.
func (f *follower) checkDone() {
	if f.allIn && len(f.jobs) == 0 && !f.closed {
		f.closed = true
		close(f.allDone)
	}
}

// seen takes an event: a completed or failed job of the service ends.
func (f *follower) seen(ev protocol.Event) {
	if ev.Service != f.service {
		return
	}
	var o outcome
	switch ev.Event {
	case protocol.EventCompleted:
		o.State = protocol.JobComplete
	case protocol.EventFailed:
		o = outcome{State: protocol.JobFailed, Code: ev.Code, ExitCode: ev.ExitCode}
	default:
		return
	}
	f.mu.Lock()
	j, ok := f.jobs[ev.Job]
	if !ok {
		// Not ours, or ours before its ID came back: keep a bounded number.
		if _, dup := f.early[ev.Job]; !dup {
			if len(f.earlyOrder) >= followEarly {
				delete(f.early, f.earlyOrder[0])
				f.earlyOrder = f.earlyOrder[1:]
			}
			f.early[ev.Job] = o
			f.earlyOrder = append(f.earlyOrder, ev.Job)
		}
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	f.end(j, o)
}

// end records j's outcome, once.
func (f *follower) end(j *followed, o outcome) {
	f.mu.Lock()
	if j.done {
		f.mu.Unlock()
		return
	}
	j.done = true
	delete(f.jobs, j.id)
	for len(f.order) > 0 && f.order[0].done {
		f.order[0] = nil
		f.order = f.order[1:]
	}
	f.mu.Unlock()
	f.ended(j, o)
	f.mu.Lock()
	f.checkDone()
	f.mu.Unlock()
}

// due picks the jobs to look up at now: those whose time has come, oldest
// first, at most followPerRound. It drops the ended jobs from the order
// on the way (events end them in any order; end only drops them from the
// front), so the order holds only the jobs still followed.
func (f *follower) due(now time.Time) []*followed {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*followed
	kept := f.order[:0]
	for _, j := range f.order {
		if j.done {
			continue
		}
		kept = append(kept, j)
		if len(out) < followPerRound && !now.Before(j.due) {
			out = append(out, j)
		}
	}
	clear(f.order[len(kept):])
	f.order = kept
	return out
}

// later puts j's next lookup further off: twice as far each time, up to
// followMaxQuiet.
func (f *follower) later(now time.Time, j *followed) {
	f.mu.Lock()
	j.wait = min(2*j.wait, followMaxQuiet)
	j.due = now.Add(j.wait)
	f.mu.Unlock()
}

// round looks up the jobs due at now with lookup; it returns whether it
// used its whole budget on ended jobs (then another round should follow
// at once) and the first lookup error other than not-found.
func (f *follower) round(ctx context.Context, now time.Time, lookup func(context.Context, string) (protocol.JobInfo, error)) (more bool, err error) {
	jobs := f.due(now)
	running := 0
	for _, j := range jobs {
		info, err := lookup(ctx, j.id)
		switch {
		case errors.Is(err, client.ErrNotFound):
			f.end(j, outcome{})
			continue
		case err != nil:
			return false, err
		}
		switch info.State {
		case protocol.JobComplete, protocol.JobFailed:
			f.end(j, outcome{State: info.State, Code: info.Code, ExitCode: info.ExitCode, Error: info.Error})
		default:
			f.later(now, j)
			if running++; running == followRunning {
				return false, nil
			}
		}
	}
	return len(jobs) == followPerRound, nil
}

// lookups runs rounds until ctx ends or every job ended; it returns an
// error once followFailures rounds in a row could not reach the broker.
func (f *follower) lookups(ctx context.Context, lookup func(context.Context, string) (protocol.JobInfo, error)) error {
	t := time.NewTimer(followRound)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.allDone:
			return nil
		case now := <-t.C:
			more, err := f.round(ctx, now, lookup)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if failures++; failures == followFailures {
					return fmt.Errorf("following the jobs: %w (%d unfinished)", err, f.pending())
				}
			} else {
				failures = 0
			}
			if more {
				t.Reset(0)
			} else {
				t.Reset(followRound)
			}
		}
	}
}
