package broker

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zmws/zmws/protocol"
)

// maxRetries bounds the opt-in retries of a failed job.
const maxRetries = 100

// effectiveRetries is how often a FAIL of j is retried: its own opt-in, or
// its service's default. Sync jobs are never retried: their caller has seen
// the failed attempt's output.
func (j *job) effectiveRetries() int {
	if j.sync {
		return 0
	}
	if r := j.retries(); r >= 0 {
		return r
	}
	return j.svc.retries
}

// budget is how many dispatches j may have: the broker's MaxAttempts, or
// more when j opted in to retries.
func (j *job) budget(maxAttempts int) int {
	return max(maxAttempts, 1+j.effectiveRetries())
}

// timeToRun is j's time-to-run: its own, its service's, or the default.
func (j *job) timeToRun(def time.Duration) time.Duration {
	switch {
	case j.ttr() > 0:
		return j.ttr()
	case j.svc.ttr > 0:
		return j.svc.ttr
	}
	return def
}

// retryLater schedules another attempt of a job whose worker said FAIL, when
// it opted in to retries and has some left: after RetryBackoff, doubled for
// each attempt so far, at most RetryBackoffMax.
func (b *Broker) retryLater(now time.Time, j *job) bool {
	if attempts := int(j.attempts); attempts >= 1+j.effectiveRetries() || attempts >= j.budget(b.cfg.MaxAttempts) {
		return false
	}
	delay := b.cfg.RetryBackoff
	for i := int32(1); i < j.attempts && delay < b.cfg.RetryBackoffMax; i++ {
		delay *= 2
	}
	delay = min(delay, b.cfg.RetryBackoffMax)
	r := j.lastRun()
	why := r.err
	b.moveJob(now, j, stateQueued)
	r.worker = ""
	r.notBefore = now.Add(delay)
	r.output, r.partialLen, r.truncated = r.output[:0], 0, false
	b.delay(j)
	b.markDirty(j)
	b.log.Info().Stringer(keyJob, j.id).Str(keyService, j.svc.name).Int32(keyAttempt, j.attempts).
		Dur("backoff", delay).Str("error", why).Msg("failed job will be retried")
	b.event(now, protocol.EventRequeued, j, func(e *protocol.Event) {
		e.Error = fmt.Sprintf("failed (%s); retry in %v", why, delay)
	})
	r.code, r.err, r.exitCode = "", "", nil
	return true
}

// overrun stops jobs running past their time-to-run: the worker is told
// DISCONNECT (a zmws worker cancels the handler and reconnects) and
// forgotten, and the job is queued again or, its attempts spent, fails with
// protocol.CodeTimeout. It recomputes nextTTR.
func (b *Broker) overrun(now time.Time) {
	// Recompute from scratch. The jobs stopped here may be dispatched
	// again at once, and dispatch notes their new deadlines itself.
	b.nextTTR = time.Time{}
	var over []*worker
	for _, w := range b.workers {
		if len(w.jobs) == 0 {
			continue
		}
		r := w.jobs[0].lastRun()
		if r.deadline.IsZero() {
			continue
		}
		if now.Before(r.deadline) {
			b.noteTTR(r.deadline)
			continue
		}
		over = append(over, w)
	}
	// None of them is given the jobs of another (a worker with prefetch
	// room is in its with-room list), and they go in routing-id order.
	slices.SortFunc(over, func(x, y *worker) int { return strings.Compare(x.id, y.id) })
	for _, w := range over {
		b.moveWorker(w, workerDraining)
	}
	for _, w := range over {
		j, r := w.jobs[0], w.jobs[0].lastRun()
		ttr := r.deadline.Sub(r.started)
		b.log.Warn().Stringer(keyJob, j.id).Str(keyService, j.svc.name).Str(keyWorker, hexID(w.id)).
			Dur("ttr", ttr).Msg("job overran its time-to-run: stopping it")
		b.disconnect(w.id, w.form)
		b.forget(now, w, protocol.GoneTimeout)
		b.lost(now, j, w, fmt.Sprintf("exceeded its time-to-run of %v", ttr), protocol.CodeTimeout)
		b.dispatch(now, j.svc) // lost may not have: jobs given back still wait
	}
}

// noteTTR keeps nextTTR at or before deadline.
func (b *Broker) noteTTR(deadline time.Time) {
	if b.nextTTR.IsZero() || deadline.Before(b.nextTTR) {
		b.nextTTR = deadline
	}
}

// startClock starts the time-to-run of j, which its worker starts now.
func (b *Broker) startClock(now time.Time, j *job) {
	r := j.lastRun()
	r.started = now
	if ttr := j.timeToRun(b.cfg.TTR); ttr > 0 {
		r.deadline = now.Add(ttr)
		b.noteTTR(r.deadline)
	}
}

// forget removes a busy worker the broker stopped for reason (a
// protocol.Gone* word) and whose running job the caller takes care of;
// jobs waiting at the worker go back to their queue.
func (b *Broker) forget(now time.Time, w *worker, reason string) {
	b.goneWorker(now, w, reason)
	b.unstarted(now, w)
	w.jobs[0].lastRun().deadline = time.Time{}
	w.jobs = nil
}

// cancel answers SERVER-CANCEL: a queued, scheduled or backing-off job is removed, a
// running one is stopped through its worker (DISCONNECT); either way it
// fails with protocol.CodeCancelled. A finished job cannot be cancelled.
func (b *Broker) cancel(now time.Time, r request, id string) {
	switch j := b.lookup(id); {
	case j != nil:
		b.cancelJob(now, r, id, j)
	case b.archived(id):
		// An archived job has finished; the lookup tells it from none.
		b.ask(id, "", waiting{op: opCancel, r: r, id: id})
	default:
		b.refuse(r, protocol.CodeNotFound, "no job "+printable([]byte(id))+" is known")
	}
}

// cancelJob cancels j, which the broker holds, for r.
func (b *Broker) cancelJob(now time.Time, r request, id string, j *job) {
	switch j.state {
	case stateComplete, stateFailed:
		b.refuse(r, protocol.CodeConflict, "job "+id+" has already finished ("+j.state.String()+")")
		return
	case stateQueued:
		if !j.svc.queue.Remove(j) {
			b.undelay(j)
		}
	case stateScheduled:
		b.undelay(j)
	case stateActive:
		if w := b.workers[j.worker()]; w != nil && slices.Contains(w.jobs, j) {
			// The worker is told to go, which stops its running job; jobs
			// waiting at it go back to their queue. If j was one of those,
			// the running one is queued again too.
			b.disconnect(w.id, w.form)
			head := w.jobs[0]
			b.forget(now, w, protocol.GoneCancelled)
			if head != j {
				j.svc.queue.Remove(j)
				// Stopped for another job's sake: this attempt does not count.
				head.attempts--
				b.lost(now, head, w, "worker "+hexID(w.id)+" stopped to cancel "+id+", which waited at it", protocol.CodeWorkerLost)
			}
			b.dispatch(now, j.svc)
		}
	}
	j.fail(protocol.CodeCancelled, "cancelled by request")
	b.finish(now, j, stateFailed)
	if j.sync {
		b.replyFinal(j, protocol.StatusFailed, nil)
	}
	b.log.Info().Stringer(keyJob, j.id).Str(keyService, j.svc.name).Msg("job cancelled")
	b.answerJob(r, j)
}

// retry answers SERVER-RETRY: a failed job is queued again under its ID,
// with a fresh budget of attempts (its attempt count restarts). Only failed
// jobs can be retried; a completed one is submitted anew instead.
func (b *Broker) retry(now time.Time, r request, id string) {
	j := b.lookup(id)
	if j == nil && b.archived(id) {
		b.ask(id, "", waiting{op: opRetry, r: r, id: id})
		return
	}
	b.retryJob(now, r, id, j)
}

// retryJob retries j (nil: no such job) for r: an admin any job, another
// key only its own, as a bulk retry (failed.go) does.
func (b *Broker) retryJob(now time.Time, r request, id string, j *job) {
	if j != nil && b.cfg.Access != nil && r.user != "" && j.owner() != r.user && !b.cfg.Access.MayAdmin(r.user) {
		b.forbidden(r, fmt.Sprintf("key %q may retry only the jobs it submitted", b.keyName(r.user)))
		return
	}
	n, code, text := b.requeue(now, id, j)
	if n == nil {
		b.refuse(r, code, text)
		return
	}
	b.log.Info().Stringer(keyJob, n.id).Str(keyService, n.svc.name).Msg("failed job queued again by request")
	b.answerJob(r, n)
	b.dispatch(now, n.svc)
}

// requeue queues the failed job j (nil: no such job) again under its ID
// and returns its new value, or nil and why not (a protocol code and the
// text). The caller logs, answers, and dispatches the job's service.
func (b *Broker) requeue(now time.Time, id string, j *job) (n *job, code, text string) {
	if j == nil {
		return nil, protocol.CodeNotFound, "no job " + printable([]byte(id)) + " is known"
	}
	if j.state != stateFailed {
		return nil, protocol.CodeConflict, "job " + id + " is " + j.state.String() + ": only failed jobs can be retried"
	}
	if j.sync {
		return nil, protocol.CodeConflict, "job " + id + " was synchronous: its caller is gone; submit it again"
	}
	// Its service may have been forgotten since (and announced again):
	// the job goes to the service as it is now, as a submission would.
	svc := b.services[j.svc.name]
	if svc == nil {
		return nil, protocol.CodeUnknownService, "job " + id + " is of service " + j.svc.name + ", forgotten since: no worker provides it"
	}
	if svc.queue.Len()+svc.scheduled >= b.cfg.MaxQueue { // as submitJob: scheduled jobs count
		b.countRefused(svc.name, protocol.CodeQueueFull)
		return nil, protocol.CodeQueueFull, fmt.Sprintf("queue for service %s is full (%d jobs)", svc.name, b.cfg.MaxQueue)
	}
	// A new job value under the same ID, without a run: the failed run
	// stays in the history ring as it was.
	c := *j
	n = &c
	n.svc = svc
	n.attempts = 0
	n.dirty, n.flushed = false, false
	if n.x != nil {
		x := *n.x // its own: dropInput changes it
		x.run = nil
		n.x = &x
		n.dropReply()
	}
	b.jobs.put(n)
	if key := n.key(); key != "" {
		b.keys[key] = n
	}
	b.moveJob(now, n, stateQueued)
	n.svc.queue.PushBack(n)
	b.markDirty(n)
	b.event(now, protocol.EventQueued, n, nil)
	return n, "", ""
}

// answerJob replies with j's description, after the job store has it.
func (b *Broker) answerJob(r request, j *job) {
	payload := mustJSON(b.jobInfo(j, false))
	b.answer(r, payload)
	if b.cfg.Durable {
		b.hold(&r)
	}
}
