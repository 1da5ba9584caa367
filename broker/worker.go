package broker

import (
	"encoding/hex"
	"fmt"
	"slices"
	"time"
	"unicode"

	"github.com/zmws/zmws/protocol"
)

// HandleWorker takes one message from the worker socket (frames after the
// ROUTER identity) and returns what to send. Per 7/MDP and 18/MDP, an invalid
// command from a worker (a second READY, a REQUEST, an unknown command byte,
// a message from a worker that never said READY) is answered with DISCONNECT
// and the worker is forgotten; messages whose protocol cannot be told are
// dropped. A REPLY or PARTIAL for a job the worker does not hold is dropped:
// it is a late answer for a job already given to another worker.
//
// user is the key the peer authenticated with (see Config.Access). A
// worker is known by its key as well as its routing id: a message from its
// routing id under another key drops the worker (its job is requeued) and
// disconnects the peer, so no one can act for a worker whose key it lacks.
func (b *Broker) HandleWorker(now time.Time, from, user string, frames [][]byte) []protocol.Envelope {
	b.out = b.out[:0]
	b.at = now
	w := b.workers[from]
	if b.checkAccess(now); w != nil && b.workers[from] == nil {
		return b.out // dropped by the new keys: already told why
	}
	m, err := protocol.DecodeWorker(frames)
	if err != nil {
		ev := b.peerWarn("malformed worker message", from).Err(err).Str(keyWorker, hexID(from)).Int("frames", len(frames))
		if m.Form.Version == 0 {
			// Only the protocol header is certain; answer when it was valid.
			if form, ok := workerForm(frames); ok {
				m.Form = form
			}
		}
		if m.Form.Version != 0 {
			ev.Msg("malformed worker message: disconnecting")
			if w != nil {
				b.dropWorker(now, w, protocol.GoneProtocolError, "sent a malformed message")
			}
			b.disconnect(from, m.Form)
			return b.out
		}
		ev.Msg("malformed worker message: dropped")
		return b.out
	}
	if w != nil && b.cfg.Access != nil && !b.sameKey(now, w, user, m.Form) {
		return b.out
	}
	if w == nil {
		switch m.Cmd {
		case protocol.CmdReady:
			b.ready(now, from, user, m)
		case protocol.CmdDisconnect:
			// Nothing to forget.
		default:
			b.log.Debug().Str(keyWorker, hexID(from)).Stringer("command", m.Cmd).Msg("message from unknown worker: disconnecting")
			b.disconnect(from, m.Form)
		}
		return b.out
	}
	w.lastSeen = now
	w.svc.lastSeen = now
	switch m.Cmd {
	case protocol.CmdHeartbeat:
	case protocol.CmdPartial:
		j := b.held(w, m)
		if j == nil {
			return b.out
		}
		r := j.lastRun()
		r.appendOutput(m.Body, b.cfg.MaxOutput)
		r.partialLen = len(r.output)
		if j.sync && j.x.reply.form.Version == protocol.V2 && !r.streamCut {
			n := 0
			for _, f := range m.Body {
				n += len(f)
			}
			if r.streamedLen+n > b.cfg.MaxStream {
				r.streamCut = true
				b.peerWarn("stream cut", w.id).Str(keyJob, j.id.String()).Str(keyService, w.svc.name).Int("bytes", r.streamedLen).
					Msg("sync job's output past --max-stream: later partials are dropped")
			} else {
				b.partial(j, m.Body)
				r.streamed = true
				r.streamedLen += n
			}
		}
	case protocol.CmdReply:
		j := b.held(w, m)
		if j == nil {
			return b.out
		}
		b.complete(now, w, j, m.Body)
	case protocol.CmdDisconnect:
		b.log.Info().Str(keyWorker, hexID(w.id)).Str(keyService, w.svc.name).Msg("worker disconnected")
		b.dropWorker(now, w, protocol.GoneDisconnected, "disconnected")
	default: // READY again, REQUEST
		b.peerWarn("invalid worker command", w.id).Str(keyWorker, hexID(w.id)).Str(keyService, w.svc.name).Stringer("command", m.Cmd).
			Msg("invalid command from worker: disconnecting")
		b.dropWorker(now, w, protocol.GoneProtocolError, "sent an invalid command")
		b.disconnect(from, m.Form)
	}
	return b.out
}

// workerForm reads the version and delimiter of a message that failed to
// decode, when its header frame is a worker header.
func workerForm(frames [][]byte) (protocol.Form, bool) {
	var f protocol.Form
	if len(frames) > 0 && len(frames[0]) == 0 {
		f.Delimiter = true
		frames = frames[1:]
	}
	if len(frames) == 0 {
		return f, false
	}
	switch string(frames[0]) {
	case protocol.HeaderWorkerV1:
		f.Version = protocol.V1
	case protocol.HeaderWorkerV2:
		f.Version = protocol.V2
	default:
		return f, false
	}
	return f, true
}

// sameKey reports whether a message from w's routing id may act for w: it
// carries w's key. If not, w is dropped and the peer told DISCONNECT.
func (b *Broker) sameKey(now time.Time, w *worker, user string, form protocol.Form) bool {
	if user != w.user {
		b.log.Warn().Str(keyWorker, hexID(w.id)).Str(keyService, w.svc.name).Str(keyKey, b.keyName(user)).Str("worker_key", b.keyName(w.user)).
			Msg("message under another key for a worker: dropping the worker")
		b.dropWorker(now, w, protocol.GoneForbidden, "its connection was taken over by another key")
		b.disconnect(w.id, form)
		return false
	}
	return true
}

// checkAccess checks every worker's key again once the key set has
// changed (a reload), before the input at hand: a worker whose key may no
// longer offer its service is dropped at once (its jobs queued again) and
// told DISCONNECT forbidden, whether it speaks or stays silent, so it is
// sent no job after the reload.
func (b *Broker) checkAccess(now time.Time) {
	if b.cfg.Access == nil {
		return
	}
	gen := b.cfg.Access.Generation()
	if gen == b.accessGen {
		return
	}
	b.accessGen = gen
	for _, w := range b.workers {
		if w.gen == gen {
			continue
		}
		if b.cfg.Access.MayOffer(w.user, w.svc.name) {
			w.gen = gen
			continue
		}
		b.log.Warn().Str(keyWorker, hexID(w.id)).Str(keyService, w.svc.name).Str(keyKey, b.keyName(w.user)).
			Msg("worker key no longer may offer its service: dropping the worker")
		b.dropWorker(now, w, protocol.GoneForbidden, "its key no longer may offer the service")
		b.forbid(w.id, w.form, fmt.Sprintf("key %q may no longer offer service %s", b.keyName(w.user), w.svc.name))
	}
}

// ready registers a new worker and gives it work if its service has some.
func (b *Broker) ready(now time.Time, id, user string, m protocol.Message) {
	if err := protocol.ValidWorkerService(m.Service); err != nil {
		b.peerWarn("invalid service name", id).Err(err).Str(keyWorker, hexID(id)).Msg("worker refused: invalid service name")
		b.disconnect(id, m.Form)
		return
	}
	w := &worker{id: id, user: user, form: m.Form, since: now, lastSeen: now}
	if a := b.cfg.Access; a != nil {
		if user == "" || !a.MayOffer(user, m.Service) {
			b.peerWarn("forbidden ready", user+id).Str(keyWorker, hexID(id)).Str(keyService, m.Service).Str(keyKey, b.keyName(user)).
				Str(keyCode, protocol.CodeForbidden).Msg("worker refused: its key may not offer the service")
			b.forbid(id, m.Form, fmt.Sprintf("key %q may not offer service %s", b.keyName(user), m.Service))
			return
		}
		w.gen = a.Generation()
	}
	var declared *protocol.Meta
	if len(m.Body) > 0 && protocol.IsMeta(m.Body[0]) {
		w.zmws = true
		// A zmws worker takes messages with and without the empty
		// delimiter; without, each costs a frame less. The worker library
		// in auto mode sends it until it sees the broker send none.
		if w.form.Version == protocol.V2 {
			w.form.Delimiter = false
		}
		if meta, err := protocol.DecodeMeta(m.Body[0]); err == nil {
			w.details = meta.Worker
			declared = &meta
		} else {
			b.peerWarn("bad ready meta", id).Err(err).Str(keyWorker, hexID(id)).Msg("worker READY meta ignored")
		}
	}
	s := b.services[m.Service]
	if s == nil && len(b.services) >= b.cfg.MaxServices {
		b.peerWarn("service limit", id).Str(keyWorker, hexID(id)).Str(keyService, m.Service).Int("services", len(b.services)).
			Msg("worker refused: the broker knows --max-services services")
		b.refuseWorker(id, m.Form, protocol.CodeServiceLimit, fmt.Sprintf(
			"the broker knows %d services, its limit: a new one is refused (forget unused ones: zmws services forget NAME)", len(b.services)))
		return
	}
	if s == nil {
		s = &service{name: m.Service, firstSeen: now}
		b.services[m.Service] = s
		if b.cfg.Durable {
			b.batch.Services = append(b.batch.Services, s.record())
			if i := slices.Index(b.batch.Forgets, s.name); i >= 0 {
				// Forgotten and announced again before the batch went: the
				// forget would come after the record (Batch) and
				// forget the service again. The old counters go instead.
				b.batch.Forgets = slices.Delete(b.batch.Forgets, i, i+1)
				b.markCounts(s)
			}
		}
		b.log.Info().Str(keyService, s.name).Msg("new service")
	}
	if s.draining {
		b.refuseDrained(id, m.Form, s)
		return
	}
	s.lastSeen = now
	s.back(id)
	w.svc = s
	if declared != nil {
		// The latest READY sets the service's defaults: workers of one
		// service are expected to agree.
		if declared.TTRMillis > 0 {
			s.ttr = time.Duration(declared.TTRMillis) * time.Millisecond
		}
		if declared.Retries > 0 {
			s.retries = min(declared.Retries, maxRetries)
		}
		w.prefetch = min(max(declared.Prefetch, 0), maxPrefetch)
	}
	if exp := now.Add(b.ttl + time.Millisecond); b.nextExpiry.IsZero() || exp.Before(b.nextExpiry) {
		b.nextExpiry = exp
	}
	if b.nextHeartbeat.IsZero() {
		b.nextHeartbeat = now.Add(b.cfg.Heartbeat)
	}
	b.log.Info().Str(keyWorker, hexID(id)).Str(keyService, s.name).Str("protocol", m.Form.Version.String()).
		Bool("zmws", w.zmws).Msg("worker ready")
	b.moveWorker(w, workerIdle)
	b.dispatch(now, s)
}

// maxPrefetch caps the jobs a worker may hold beyond the one it runs.
const maxPrefetch = 64

// held returns the job w holds if m is about it, or nil (logged) if not.
func (b *Broker) held(w *worker, m protocol.Message) *job {
	for _, j := range w.jobs {
		if j.hasID(m.Address) {
			return j
		}
	}
	b.peerWarn("reply for a job not held", w.id).Str(keyWorker, hexID(w.id)).Str(keyService, w.svc.name).Str(keyJob, printable(m.Address)).
		Stringer("command", m.Cmd).Msg("reply for a job the worker does not hold: dropped")
	return nil
}

// release takes j, which ended, from w's jobs; the next one waiting at w
// starts its time-to-run, and w goes back to the idle list when it holds
// none, or the with-room list when it has room again, unless it is draining.
func (b *Broker) release(now time.Time, w *worker, j *job) {
	head := w.jobs[0] == j
	i := slices.Index(w.jobs, j)
	w.jobs = slices.Delete(w.jobs, i, i+1)
	if head && len(w.jobs) > 0 {
		b.startClock(now, w.jobs[0]) // the worker starts it now
	}
	// A draining worker takes no more jobs; one with room still keeps
	// its turn.
	if to := w.loaded(); w.state != workerDraining && to != w.state {
		b.moveWorker(w, to)
	}
	if w.stop && len(w.jobs) == 0 {
		b.stopDrained(now, w) // drained, and its last job ended
	}
}

// complete ends j with the worker's final reply and makes w idle again.
func (b *Broker) complete(now time.Time, w *worker, j *job, body [][]byte) {
	state, r := stateComplete, j.lastRun()
	meta, rest, ok, err := protocol.SplitMeta(body)
	if err == nil && ok && meta.Status == protocol.StatusReturned {
		b.givenBack(now, w, j)
		return
	}
	switch {
	case err != nil:
		// A zmws worker whose status we cannot read: the job failed, and
		// the output is kept for whoever looks.
		state = stateFailed
		r.code, r.err = protocol.CodeJobFailed, "worker sent an unreadable status: "+err.Error()
	case ok && meta.Status == protocol.StatusFailed:
		state = stateFailed
		r.code, r.err, r.exitCode = protocol.CodeJobFailed, meta.Error, meta.ExitCode
		if r.err == "" {
			r.err = "job failed"
		}
	case ok:
		r.exitCode = meta.ExitCode
	}
	if ok && meta.OutputTruncated {
		r.truncated = true // cut by the worker; appendOutput may cut it too
	}
	r.appendOutput(rest, b.cfg.MaxOutput)
	r.deadline = time.Time{}
	b.release(now, w, j)
	if state == stateFailed {
		w.failed++
	} else {
		w.completed++
	}
	if state == stateFailed && b.retryLater(now, j) {
		b.dispatch(now, w.svc)
		return
	}
	b.finish(now, j, state)
	if j.sync {
		status := protocol.StatusComplete
		if state == stateFailed {
			status = protocol.StatusFailed
		}
		b.replyFinal(j, status, rest)
	}
	b.dispatch(now, w.svc)
}

// givenBack takes back a job w says it did not start (it is stopping): the
// job goes to the head of its queue as if never dispatched, and w gets no
// more jobs. A worker gives back its waiting jobs last first, so they keep
// their order.
func (b *Broker) givenBack(now time.Time, w *worker, j *job) {
	s := w.svc
	b.moveWorker(w, workerDraining)
	b.release(now, w, j)
	b.requeueUnstarted(now, w, j, "given back, not started: its worker is stopping")
	b.log.Info().Stringer(keyJob, j.id).Str(keyService, s.name).Str(keyWorker, hexID(w.id)).Msg("job given back by its worker, queued again")
	b.dispatch(now, s)
}

// finish records a job's end: history, counters, event. The caller sends
// any sync reply.
func (b *Broker) finish(now time.Time, j *job, state jobState) {
	b.moveJob(now, j, state)
	r := j.ensureRun()
	r.finished = now
	if state == stateComplete {
		j.dropInput() // the job will not run again
	}
	b.markDirty(j)
	b.remember(j)
	ev := b.log.Debug()
	if state == stateFailed {
		ev = b.log.Info().Str(keyCode, r.code).Str("error", r.err)
	}
	if ev.Enabled() {
		ev.Stringer(keyJob, j.id).Str(keyService, j.svc.name).Str(keyWorker, hexID(r.worker)).
			Int32(keyAttempt, j.attempts).Dur(keyElapsed, now.Sub(j.created.Time())).Stringer("state", state).Msg("job finished")
	}
	name := protocol.EventCompleted
	if state == stateFailed {
		name = protocol.EventFailed
	}
	// No failure text: a worker's (a command's stderr) may quote the job's
	// parameters or input, and events reach every watcher. The code and
	// exit code say what happened; the job's record has the text.
	b.event(now, name, j, func(e *protocol.Event) {
		e.ExitCode, e.Code = r.exitCode, r.code
		if !r.started.IsZero() {
			e.Elapsed = now.Sub(r.started).Seconds()
		}
	})
}

// remember puts a finished job in the history ring; the job it displaces is
// forgotten (it stays in the job store, when there is one).
func (b *Broker) remember(j *job) {
	b.jobs.put(j)
	if len(b.history) < b.cfg.History {
		b.history = append(b.history, j)
	} else {
		old := b.history[b.histNext]
		if b.jobs.get(old.id) == old { // not if a retry runs under the same ID
			b.jobs.delete(old.id)
		}
		// An idempotency key outlives the job in memory until the job's
		// record is committed: the store answers for it after that.
		if key := old.key(); key != "" && !old.dirty && !old.flushed && b.keys[key] == old {
			delete(b.keys, key)
		}
		b.history[b.histNext] = j
	}
	b.histNext = (b.histNext + 1) % b.cfg.History
	b.histSeq++
}

// appendOutput keeps the first max bytes of a job's output.
func (r *run) appendOutput(frames [][]byte, max int) {
	for _, f := range frames {
		room := max - len(r.output)
		if len(f) > room {
			r.output = append(r.output, f[:room]...)
			r.truncated = true
			return
		}
		r.output = append(r.output, f...)
	}
}

// hexID renders a socket identity for logs and JSON: as is when printable,
// hex otherwise (libzmq's generated identities are 5 binary bytes).
func hexID(id string) string {
	for _, r := range id {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return hex.EncodeToString([]byte(id))
		}
	}
	return id
}

// printable renders an untrusted frame for a log line.
func printable(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return hexID(string(b))
}

// Unreachable tells the broker that a message to worker id could not be
// sent (the peer is gone, or its queue is full): the worker is dropped and
// its job requeued at once instead of after Heartbeat × Liveness.
//
// undelivered lists the jobs whose REQUEST to the worker could not be sent
// (protocol.Envelope.Job of each failed envelope). Such a job never reached
// the worker: it goes back to the head of its queue as if never dispatched,
// its attempt not counted, however many gone workers it was given to. An
// attempt counts a dispatch the worker may have received: one whose
// REQUEST was handed to the socket.
func (b *Broker) Unreachable(now time.Time, id string, undelivered ...string) []protocol.Envelope {
	b.out = b.out[:0]
	w := b.workers[id]
	if w == nil {
		return b.out
	}
	// Last first: each goes to the head of its queue, so they keep their
	// order, ahead of the jobs that reached w (requeued by dropWorker).
	for i := len(w.jobs) - 1; i >= 0; i-- {
		j := w.jobs[i]
		t := j.id.text()
		if !slices.Contains(undelivered, string(t[:])) {
			continue
		}
		w.jobs = slices.Delete(w.jobs, i, i+1)
		b.requeueUnstarted(now, w, j, "never reached worker "+hexID(w.id)+": unreachable")
		b.log.Info().Stringer(keyJob, j.id).Str(keyService, j.svc.name).Str(keyWorker, hexID(w.id)).
			Int32(keyAttempt, j.attempts).Msg("job never reached its worker, queued again")
	}
	b.dropWorker(now, w, protocol.GoneUnreachable, "unreachable")
	b.dispatch(now, w.svc)
	return b.out
}
