package broker

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Durability. The broker never writes to disk itself. With Config.Durable
// set, every change to an asynchronous job marks it dirty; the loop calls
// Flush to get one Batch holding the latest state of every dirty job (a job
// queued, dispatched and finished within one batch is written once),
// commits it, and only then sends the replies that hand out job IDs: the
// broker holds them back (they are not in what its methods return), and
// Committed returns them. A job ID is thus never given for a job a crash
// could lose. Dispatches and other replies go out at once: a job run before
// its record is durable was not yet accepted, and a finish lost in a crash
// makes the job run again (at least once).
//
// Sync jobs are held in memory only until they finish: their ID is given with
// their result, and a client that waited on a broker that died has no one to
// give a result to. Their finished record is written like any other.

// markDirty queues j's state for the next batch.
func (b *Broker) markDirty(j *job) {
	if !b.cfg.Durable || j.dirty || (j.sync && j.state != stateComplete && j.state != stateFailed) {
		return
	}
	j.dirty = true
	b.dirty = append(b.dirty, j)
}

// markCounts queues s's job counters for the next batch. They ride with
// the records of the jobs whose end changed them: one small record per
// service and batch, however many of its jobs the batch ends.
func (b *Broker) markCounts(s *service) {
	if !b.cfg.Durable || s.countsDirty {
		return
	}
	s.countsDirty = true
	b.dirtySvcs = append(b.dirtySvcs, s)
}

// hold moves the reply just queued (the last of b.out) to those that wait
// for the next batch's commit. r is the request it answers, refused by
// Rejected if the commit fails; nil for a new job's acceptance, which
// Rejected refuses with the job.
func (b *Broker) hold(r *request) {
	n := len(b.out) - 1
	b.heldNext = append(b.heldNext, b.out[n])
	b.heldFor = append(b.heldFor, r)
	b.out[n] = protocol.Envelope{}
	b.out = b.out[:n]
}

// Holding reports whether replies wait for the next batch's commit: the
// caller should Flush and commit it now, even when it holds no records (a
// resubmitted idempotency key whose job is in the batch being committed).
func (b *Broker) Holding() bool { return len(b.heldNext) > 0 }

// Pending reports whether Flush has records to give.
func (b *Broker) Pending() bool {
	return len(b.dirty) > 0 || len(b.dirtySvcs) > 0 || len(b.batch.Services) > 0 || len(b.batch.Deletes) > 0 || len(b.batch.Forgets) > 0 ||
		b.batch.Probe || len(b.dirtyScheds) > 0 || len(b.batch.Schedules) > 0
}

// probeEvery is how often a broker whose store failed its last commit asks
// for a probe commit (Batch.Probe), so that health comes back when
// the disk does, with no job to try it.
const probeEvery = 5 * time.Second

// probeDue asks for a probe commit when the store is failing and the last
// try is probeEvery old (from Tick).
func (b *Broker) probeDue(now time.Time) {
	if b.storeFailed.IsZero() || now.Before(b.probeAt) {
		return
	}
	b.batch.Probe = true
	b.probeAt = now.Add(probeEvery)
}

// Flush returns the records changed since the last Flush and forgets them;
// the replies held until now wait for this batch. The batch stays valid
// until the next Flush. The caller commits it and reports the outcome with
// Committed (and sends the held replies it returns) or Rejected, before the
// next Flush.
func (b *Broker) Flush() *Batch {
	clear(b.heldFlushed)
	b.heldFlushed, b.heldNext = b.heldNext, b.heldFlushed[:0]
	clear(b.heldForFlushed)
	b.heldForFlushed, b.heldFor = b.heldFor, b.heldForFlushed[:0]
	out := b.batch
	b.batch, b.recycled = b.recycled, out
	b.batch.Reset()
	b.flushed = append(b.flushed[:0], b.dirty...)
	for _, j := range b.dirty {
		j.dirty, j.flushed = false, true
		rec := j.record()
		if j.state == stateScheduled {
			rec.NotBefore = b.scheduledAt(j)
		}
		out.Jobs = append(out.Jobs, rec)
	}
	clear(b.dirty)
	b.dirty = b.dirty[:0]
	for _, s := range b.dirtySvcs {
		s.countsDirty = false
		if b.services[s.name] == s { // not forgotten since
			out.Counts = append(out.Counts, ServiceCounts{Name: s.name, Completed: s.completed, Failed: s.failed})
		}
	}
	clear(b.dirtySvcs)
	b.dirtySvcs = b.dirtySvcs[:0]
	b.flushSchedules(out)
	b.flushedEmpty = len(out.Jobs) == 0 && len(out.Services) == 0 && len(out.Deletes) == 0 && len(out.Counts) == 0 && !out.Probe &&
		len(out.Schedules) == 0
	return out
}

// Committed is told that the last flushed batch is durable: the IDs of its
// jobs may be handed out. It returns the replies held for the batch, to
// send now; they stay valid until the next Flush, whatever is called in
// between. A batch with records in it also shows the store works again (an
// empty one is not written at all).
func (b *Broker) Committed() []protocol.Envelope {
	if !b.flushedEmpty && !b.storeFailed.IsZero() {
		b.log.Info().Str("since", b.storeFailed.Format(time.RFC3339)).Msg("job store commits again")
		b.storeErr, b.storeFailed = "", time.Time{}
	}
	for _, j := range b.flushed {
		if j.x != nil {
			j.x.stored = true
		}
		b.settle(j)
	}
	clear(b.flushed)
	b.flushed = b.flushed[:0]
	return b.heldFlushed
}

// settle ends a job's part in a commit: an async job's ID is handed out (or
// refused) by now, so its reply-to is dropped. It forgets the job's
// idempotency key if the job itself was already forgotten (the store knows
// the key now).
func (b *Broker) settle(j *job) {
	j.flushed = false
	if len(b.newAt) > 0 {
		delete(b.newAt, j)
	}
	if !j.sync {
		j.dropReply()
	}
	if key := j.key(); key != "" && b.jobs.get(j.id) == nil && !j.dirty && b.keys[key] == j {
		delete(b.keys, key)
	}
}

// Rejected is told that the last flushed batch could not be made durable
// (err): every job of it whose ID was waiting to be handed out is refused
// instead, with protocol.CodeStoreUnavailable, and forgotten if it had not
// started. The other replies held for that batch (a resubmission's under
// an idempotency key, a SERVER-RETRY's or SERVER-CANCEL's answer) are
// refused with the same code in their place: every request is answered.
func (b *Broker) Rejected(now time.Time, err error) []protocol.Envelope {
	b.out = b.out[:0]
	for _, r := range b.heldForFlushed {
		if r != nil {
			b.refuse(*r, protocol.CodeStoreUnavailable, fmt.Sprintf("not recorded: the job store failed: %v (a change to a job may not survive a restart)", err))
		}
	}
	clear(b.heldFlushed)
	b.heldFlushed = b.heldFlushed[:0]
	clear(b.heldForFlushed)
	b.heldForFlushed = b.heldForFlushed[:0]
	if b.storeFailed.IsZero() {
		b.storeFailed = now
	}
	b.storeErr = err.Error()
	b.probeAt = now.Add(probeEvery)
	for _, j := range b.flushed {
		if j.awaitingCommit() {
			b.countRefused(j.svc.name, protocol.CodeStoreUnavailable)
			b.refuse(*j.x.reply, protocol.CodeStoreUnavailable, fmt.Sprintf("job not accepted: the job store failed: %v", err))
			if key := j.key(); key != "" {
				// Not accepted, so not the key's job, even if it runs on:
				// the key would hand out its ID, never stored, at once.
				if b.keys[key] == j {
					delete(b.keys, key)
				}
				j.x.key = ""
			}
			if j.state == stateQueued && j.svc.queue.Remove(j) || j.state == stateScheduled && b.undelay(j) {
				b.jobs.delete(j.id)
				// The job was never accepted, so it leaves the books without
				// a finish (no counter, no history: moveJob to no state);
				// failed only for the record a later batch may still write
				// of it, the one state set by hand.
				b.moveJob(now, j, 0)
				j.state = stateFailed
				j.fail(protocol.CodeStoreUnavailable, err.Error())
			}
		}
		b.settle(j)
		if key := j.key(); key != "" && b.jobs.get(j.id) == nil && b.keys[key] == j {
			delete(b.keys, key)
		}
	}
	clear(b.flushed)
	b.flushed = b.flushed[:0]
	// The services, counters and forgets the batch held go in the next
	// one, as they stand now: they change seldom, and the journal must not
	// keep an old count, or a forgotten service, for ever.
	for _, sv := range b.recycled.Services {
		if s := b.services[sv.Name]; s != nil && !slices.ContainsFunc(b.batch.Services, func(x ServiceRecord) bool { return x.Name == sv.Name }) {
			b.batch.Services = append(b.batch.Services, s.record())
		}
	}
	for _, c := range b.recycled.Counts {
		if s := b.services[c.Name]; s != nil {
			b.markCounts(s)
		}
	}
	for _, name := range b.recycled.Forgets {
		if b.services[name] == nil && !slices.Contains(b.batch.Forgets, name) {
			b.batch.Forgets = append(b.batch.Forgets, name)
		}
	}
	b.reflushSchedules(b.recycled)
	b.log.Error().Err(err).Msg("job store commit failed: submissions refused")
	return b.out
}

// Health is the broker's own state, as SERVER-HEALTH reports it (with the
// store's error, which the query shows to admins only).
func (b *Broker) Health() protocol.HealthInfo {
	switch {
	case !b.cfg.Durable:
		return protocol.HealthInfo{Store: protocol.StoreNone}
	case b.storeFailed.IsZero():
		return protocol.HealthInfo{Store: protocol.StoreOK}
	}
	since := b.storeFailed
	return protocol.HealthInfo{Store: protocol.StoreFailing, StoreError: b.storeErr, StoreFailedSince: &since}
}

// Restore loads what a store kept: every service ever seen; the unfinished
// jobs, queued again in creation order within their priority (scheduled
// ones wait for their time again) (a job that was running when the
// broker stopped is queued again and its next dispatch is attempt + 1, unless
// its attempts are spent: then it fails); and the newest finished jobs, for
// SERVER-JOBS. Call it once, before any message; send what it returns.
func (b *Broker) Restore(now time.Time, snap Snapshot) []protocol.Envelope {
	b.out = b.out[:0]
	b.restoreSchedules(snap.Schedules)
	for _, s := range snap.Services {
		// Last seen now: the clock of ForgetAfter restarts with the broker.
		rs := b.restoredService(s.Name, s.FirstSeen)
		rs.lastSeen = now
		rs.paused, rs.draining = s.Paused, s.Draining
	}
	for _, c := range snap.Counts {
		if s := b.services[c.Name]; s != nil {
			s.completed, s.failed = c.Completed, c.Failed
		}
	}
	// The newest finished jobs fill the history ring first, oldest first,
	// so jobs failed below come after them.
	finished := snap.Finished
	if len(finished) > b.cfg.History {
		finished = finished[len(finished)-b.cfg.History:]
	}
	for i := range finished {
		j := b.restoredJob(&finished[i])
		if j == nil {
			continue
		}
		state := stateComplete
		if finished[i].State == protocol.JobFailed {
			state = stateFailed
		}
		b.moveJob(now, j, state)
		b.remember(j)
	}
	jobs := snap.Jobs
	sort.Slice(jobs, func(i, k int) bool { return jobs[i].ID < jobs[k].ID })
	requeued, scheduled := 0, 0
	for i := range jobs {
		j := b.restoredJob(&jobs[i])
		if j == nil {
			continue
		}
		b.jobs.put(j)
		if key := j.key(); key != "" {
			b.keys[key] = j
		}
		if jobs[i].State == protocol.JobScheduled && jobs[i].NotBefore.After(now) {
			// Its record stays as it is: not marked dirty.
			b.delayUntil(now, j, jobs[i].NotBefore)
			scheduled++
			continue
		}
		// Queued first, even if it fails at once: that failure is a
		// finish, and counted.
		b.moveJob(now, j, stateQueued)
		if jobs[i].State == protocol.JobActive && int(j.attempts) >= b.cfg.MaxAttempts {
			j.fail(protocol.CodeWorkerLost, fmt.Sprintf("%v: the broker stopped during attempt %d of %d", errWorkerGone, j.attempts, b.cfg.MaxAttempts))
			b.finish(now, j, stateFailed)
			continue
		}
		r := j.lastRun()
		if r != nil {
			r.worker = ""
		}
		if r != nil && r.notBefore.After(now) {
			b.delay(j) // a retry still backing off
		} else {
			j.svc.queue.PushBack(j)
		}
		b.markDirty(j)
		requeued++
	}
	b.log.Info().Int("services", len(snap.Services)).Int("queued", requeued).Int("scheduled", scheduled).
		Int("finished", len(finished)).Msg("state restored from the job store")
	return b.out
}

// restoredService makes sure a service from the store is known.
func (b *Broker) restoredService(name string, firstSeen time.Time) *service {
	s := b.services[name]
	if s == nil {
		s = &service{name: name, firstSeen: firstSeen, lastSeen: firstSeen}
		b.services[name] = s
	}
	return s
}

// restoredJob rebuilds a job from its record (state left to the caller),
// or returns nil (logged) if the record's ID is not a job ID.
func (b *Broker) restoredJob(rec *JobRecord) *job {
	id, ok := parseJobID(rec.ID)
	if !ok {
		b.log.Error().Str(keyJob, printable([]byte(rec.ID))).Msg("stored job with an invalid ID ignored")
		return nil
	}
	j := &job{
		id: id, svc: b.restoredService(rec.Service, rec.Created), sync: rec.Sync,
		params: rec.Params, attempts: int32(rec.Attempts), created: stampOf(rec.Created),
	}
	j.setInput(rec.Input)
	if rec.Key != "" || rec.Owner != "" || rec.TTR != 0 || rec.Retries != -1 || rec.Priority != 0 {
		x := j.ensureExtra()
		x.key, x.owner, x.ttr, x.retries = rec.Key, b.intern(rec.Owner), rec.TTR, rec.Retries
		x.priority = int32(rec.Priority)
		x.stored = true
	}
	if rec.Started.IsZero() && rec.Finished.IsZero() && (rec.NotBefore.IsZero() || rec.State == protocol.JobScheduled) {
		return j // never dispatched nor ended: no run (a scheduled job's time is the caller's)
	}
	j.ensureExtra().run = &run{
		worker: rec.Worker, started: rec.Started, notBefore: rec.NotBefore, finished: rec.Finished,
		exitCode: rec.ExitCode, code: rec.Code, err: rec.Error, output: rec.Output, truncated: rec.Truncated,
	}
	return j
}

// record is j as the store keeps it. The record is read by the committer
// while the loop goes on, so it shares only what no longer changes: the
// output is taken once the job has finished.
func (j *job) record() *JobRecord {
	rec := &JobRecord{
		ID:       j.id.String(),
		Service:  j.svc.name,
		Sync:     j.sync,
		State:    j.state.String(),
		Params:   j.params,
		Input:    j.appendInput(nil),
		Key:      j.key(),
		Owner:    j.owner(),
		Attempts: int(j.attempts),
		Created:  j.created.Time(),
		TTR:      j.ttr(),
		Retries:  j.retries(),
		Priority: int(j.priority()),
	}
	if r := j.lastRun(); r != nil {
		rec.Started, rec.Finished, rec.Worker = r.started, r.finished, r.worker
		rec.ExitCode, rec.Code, rec.Error = r.exitCode, r.code, r.err
		// NotBefore set by retryLater is read here, never changed after.
		rec.NotBefore = r.notBefore
		if j.state == stateComplete || j.state == stateFailed {
			rec.Output, rec.Truncated = r.output, r.truncated
		}
	}
	return rec
}
