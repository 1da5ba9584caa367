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
//   - requeued (Config.Stats): active → queued, a run that ended without a
//     result (its worker lost, a TTR overrun, a retry after FAIL, a job
//     given back or never delivered).
//   - completed and failed (journaled), and the finished stats: queued or
//     active → complete or failed, a finish.
//
// A job moved from no state (0) is one being made: submitted, restored
// from the journal, or rebuilt from the archive; it counts nothing, a
// finished one having been counted when it finished. failed → queued is
// SERVER-RETRY's new value under the failed job's ID, which counts nothing
// either. now is the time of the move (a finish's duration).
func (b *Broker) moveJob(now time.Time, j *job, to jobState) {
	from, s := j.state, j.svc
	j.state = to
	if from == stateActive {
		s.active--
	}
	switch to {
	case stateActive:
		s.active++
	case stateQueued:
		if from == stateActive {
			b.countRequeued(j)
		}
	case stateComplete, stateFailed:
		if from != stateQueued && from != stateActive {
			return
		}
		if to == stateComplete {
			s.completed++
		} else {
			s.failed++
		}
		b.markCounts(s)
		b.countFinished(now, j, to, j.ensureRun())
	}
}
