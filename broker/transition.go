package broker

import "time"

// State transitions. A job changes state only through moveJob, a worker
// only through moveWorker: each keeps there every count and list that
// follows from the states, so no caller edits them by hand. Where a thing
// is within a state stays the caller's: which end of the queue a queued
// job goes to, or the retry list (Broker.delayed); which worker holds an
// active job (worker.jobs).

// moveJob moves j to state to and keeps its service's counts:
//
//   - active: the jobs of s in state active (dispatched, at a worker).
//   - scheduled: the jobs of s waiting for their time (a delay, an at).
//   - requeued (Config.Stats): active → queued, a run that ended without a
//     result (its worker lost, a TTR overrun, a retry after FAIL, a job
//     given back or never delivered).
//   - completed and failed (journaled), and the finished stats: queued or
//     active → complete or failed, a finish.
//
// A job moved from no state (0) is one being made: submitted, restored
// from the journal, or rebuilt from the archive; it counts nothing, a
// finished one having been counted when it finished. A job moved to no
// state leaves the counts without a finish (a submission the journal
// refused). failed → queued is
// SERVER-RETRY's new value under the failed job's ID, which counts nothing
// either. now is the time of the move (a finish's duration).
func (b *Broker) moveJob(now time.Time, j *job, to jobState) {
	from, s := j.state, j.svc
	j.state = to
	switch from {
	case stateActive:
		s.active--
	case stateScheduled:
		s.scheduled--
	}
	switch to {
	case stateActive:
		s.active++
	case stateScheduled:
		s.scheduled++
	case stateQueued:
		if from == stateActive {
			b.countRequeued(j)
		}
	case stateComplete, stateFailed:
		if from != stateQueued && from != stateActive && from != stateScheduled {
			return
		}
		if to == stateComplete {
			s.completed++
		} else {
			s.failed++
		}
		b.markCounts(s)
		b.countFinished(now, j, to, j.ensureRun())
		if j.sync {
			b.syncEnded(j)
		}
	}
}

// workerState is where a worker is in its life, and so in which of its
// service's lists.
type workerState uint8

const (
	// workerNew: made for a READY, not yet live.
	workerNew workerState = iota
	// workerIdle: live, holding no job; in its service's idle list.
	workerIdle
	// workerWithRoom: busy, with room for a prefetched job; in its
	// service's with-room list.
	workerWithRoom
	// workerFull: busy, holding 1+prefetch jobs.
	workerFull
	// workerDraining: takes no more jobs: it gave one back (it is
	// stopping), or the broker is about to drop it with others (expiry,
	// TTR overrun) and none of them must be given the jobs of another.
	workerDraining
	// workerGone: left Broker.workers (see goneWorker).
	workerGone
)

// moveWorker moves w to state to and keeps what follows from it:
// Broker.workers and service.workers (the live workers), and the idle and
// with-room lists (their workers in states idle and with room). A worker
// moved enters its list at the back: the idle one is then the most
// recently used, and one moved from with room to with room (it took a
// job and has room still) waits for its next turn after the others. A
// caller that wants a worker to keep its place does not move it.
func (b *Broker) moveWorker(w *worker, to workerState) {
	s := w.svc
	switch w.state {
	case workerNew:
		s.workers++
		b.workers[w.id] = w
	case workerIdle:
		s.idle = without(s.idle, w)
	case workerWithRoom:
		s.withRoom = without(s.withRoom, w)
	}
	w.state = to
	switch to {
	case workerIdle:
		s.idle = append(s.idle, w)
	case workerWithRoom:
		s.withRoom = append(s.withRoom, w)
	case workerGone:
		s.workers--
		delete(b.workers, w.id)
	}
}

// loaded is the state a live worker that takes jobs is in by the jobs it
// holds: idle, with room, or full.
func (w *worker) loaded() workerState {
	switch {
	case len(w.jobs) == 0:
		return workerIdle
	case len(w.jobs) <= w.prefetch:
		return workerWithRoom
	}
	return workerFull
}
