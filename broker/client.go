package broker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zmws/zmws/protocol"
)

// request is one client request being answered: enough to reply in the
// client's own form.
type request struct {
	client  string
	user    string // the client's key ("" when trusted: see Config.Access)
	form    protocol.Form
	service string
	meta    bool   // the client sent a meta frame: replies start with one
	ref     string // the client's reference for a submission, echoed
	told    bool   // an addressed sync client knows the job's ID
	// limit is who the client is for the per-client limits ("": none);
	// holdsSync says this sync job counts against its concurrency
	// (clientlimit.go).
	limit     string
	holdsSync bool
	target    string // a titanic.request's service, its job's (titanic.go)
}

// HandleClient takes one message from the client socket (frames after the
// ROUTER identity) and returns what to send. Malformed messages are dropped
// (logged) when the protocol cannot be told, and refused with
// protocol.CodeBadRequest when it can. user is the client's key (see
// Config.Access); a request outside its rights is refused with
// protocol.CodeForbidden.
func (b *Broker) HandleClient(now time.Time, from, user string, frames [][]byte) []protocol.Envelope {
	return b.HandleClientFrom(now, from, user, "", frames)
}

// HandleClientFrom is HandleClient for a message whose peer has the
// network address peer ("" for none: an in-process peer). The per-client
// limits (Config.ClientRate, Config.ClientConcurrency) count a client
// without a key by its address.
func (b *Broker) HandleClientFrom(now time.Time, from, user, peer string, frames [][]byte) []protocol.Envelope {
	b.out = b.out[:0]
	b.at = now
	b.checkAccess(now)
	m, err := protocol.DecodeClient(frames)
	if err != nil {
		if errors.Is(err, protocol.ErrNoService) {
			r := request{client: from, form: m.Form, meta: len(m.Body) > 0 && protocol.IsMeta(m.Body[0])}
			b.refuse(r, protocol.CodeBadRequest, "empty service name")
		}
		b.peerWarn("malformed client message", from).Err(err).Str(keyClient, hexID(from)).Int("frames", len(frames)).Msg("malformed client message")
		return b.out
	}
	meta, body, hasMeta, err := protocol.SplitMeta(m.Body)
	r := request{client: from, user: user, form: m.Form, service: m.Service, meta: hasMeta, ref: meta.Ref, limit: b.limitKey(user, peer)}
	if err != nil {
		b.peerWarn("malformed client meta", from).Err(err).Str(keyClient, hexID(from)).Str(keyService, m.Service).Msg("malformed client meta")
		b.refuse(r, protocol.CodeBadRequest, err.Error())
		return b.out
	}
	switch {
	case strings.HasPrefix(m.Service, protocol.MMIPrefix):
		b.mmi(r, body)
	case strings.HasPrefix(m.Service, protocol.ServerPrefix):
		b.query(now, r, meta, body)
	case strings.HasPrefix(m.Service, protocol.TitanicPrefix):
		b.titanicRequest(now, r, hasMeta, body)
	default:
		b.submit(now, r, meta, body)
	}
	return b.out
}

// submit makes a job of a request for NAME, SYNC-NAME or SYNC:NAME.
func (b *Broker) submit(now time.Time, r request, meta protocol.Meta, body [][]byte) {
	b.submitJob(now, r, meta, body, b.cfg.Archived)
}

// submitJob is submit; ask says whether an idempotency key the broker does
// not hold is looked up in the archive (the request then waits: see
// resubmit) or is new.
func (b *Broker) submitJob(now time.Time, r request, meta protocol.Meta, body [][]byte, ask bool) {
	name, sync := r.jobService()
	if !b.maySubmit(r, name) {
		return
	}
	// Two names for one ZMWS_PARAM_* variable would leave the winner to
	// chance at the worker: refused, as the gateway refuses them.
	if err := protocol.CheckParamNames(meta.Params); err != nil {
		b.countRefused(name, protocol.CodeBadRequest)
		b.refuse(r, protocol.CodeBadRequest, err.Error())
		return
	}
	s := b.services[name]
	if s == nil {
		b.countRefused(name, protocol.CodeUnknownService)
		b.refuse(r, protocol.CodeUnknownService, fmt.Sprintf("no worker has ever provided service %s", name))
		if b.log.Debug().Enabled() {
			b.log.Debug().Str(keyClient, hexID(r.client)).Str(keyService, name).Msg("unknown service refused")
		}
		return
	}
	key := meta.Key
	if key != "" && r.user != "" {
		// Each key has its idempotency keys to itself: no client finds
		// another's job by guessing its key, nor takes a key first.
		key = r.user + "|" + key
	}
	if key != "" && !sync {
		if j := b.keys[key]; j != nil {
			// Held for the commit while the job's record is not
			// committed: not only a submission awaiting it, but a job
			// retried before its first commit (a new value, with no one
			// to answer).
			b.keyHolder(r, meta.Key, name, j.id.String(), j.svc.name, j.uncommitted())
			return
		}
		if ask {
			// The meta is the request's own (decoded for it); the body
			// frames are the loop's until this call returns.
			b.ask("", key, waiting{op: opSubmit, r: r, meta: meta, body: copyFrames(body)})
			return
		}
	}
	prio, at, err := jobOptions(now, meta, sync)
	if err != nil {
		b.countRefused(name, protocol.CodeBadRequest)
		b.refuse(r, protocol.CodeBadRequest, err.Error())
		return
	}
	fp, attached := b.attachResend(now, r, name, body)
	if attached {
		return
	}
	taken, limited := b.rateLimited(now, r, s)
	if limited {
		return
	}
	giveBack := func() { // refused after all: the service's rate keeps its token
		if taken != nil {
			taken.CancelAt(now)
		}
	}
	if s.queue.Len()+s.scheduled >= b.cfg.MaxQueue {
		giveBack()
		b.countRefused(name, protocol.CodeQueueFull)
		b.refuse(r, protocol.CodeQueueFull, fmt.Sprintf("queue for service %s is full (%d jobs)", name, b.cfg.MaxQueue))
		b.peerWarn("queue full", name).Str(keyService, name).Int("queued", s.queue.Len()).Msg("queue full: job refused")
		return
	}
	if b.clientLimited(now, &r, name, sync) { // last: a job is made if it passes
		giveBack()
		return
	}
	j := &job{
		id:      b.newID(now),
		svc:     s,
		sync:    sync,
		params:  meta.Params,
		created: stampOf(now),
	}
	j.setInput(body)
	// A job belongs to the key that submitted it; a trusted peer (the
	// gateway) says on whose behalf it submits.
	if owner := r.user; owner != "" || meta.Owner != "" {
		if owner == "" {
			owner = meta.Owner
		}
		j.ensureExtra().owner = b.intern(owner)
	}
	if meta.TTRMillis > 0 {
		j.ensureExtra().ttr = time.Duration(meta.TTRMillis) * time.Millisecond
	}
	if meta.Retries > 0 && !sync {
		j.ensureExtra().retries = min(meta.Retries, maxRetries)
	}
	if prio != 0 {
		j.ensureExtra().priority = prio
	}
	if sync || b.cfg.Durable {
		reply := r
		j.ensureExtra().reply = &reply
	}
	b.jobs.put(j)
	b.noteResend(now, r, fp, j)
	if at.IsZero() {
		b.moveJob(now, j, stateQueued)
		s.queue.PushBack(j)
	} else {
		b.delayUntil(now, j, at)
		if b.cfg.Durable {
			b.newAt[j] = stampOf(at) // for its record (see scheduledAt)
		}
	}
	if x := b.statsOf(s); x != nil {
		x.submitted++
	}
	if !sync {
		if key != "" {
			j.ensureExtra().key = key
			b.keys[key] = j
		}
		b.markDirty(j)
		b.accepted(r, j.id.String(), j.awaitingCommit(), true)
	}
	if at.IsZero() {
		b.event(now, protocol.EventQueued, j, nil) // a scheduled job's comes at its time
	}
	b.dispatch(now, s)
	if sync && r.addressed() {
		if j.state == stateQueued {
			b.syncAccepted(j) // it waits: say so now
		} else {
			if len(b.accepts) == 0 {
				b.acceptScan = now.Add(acceptEvery)
			}
			b.accepts = append(b.accepts, dueAccept{j: j, at: now.Add(acceptDelay)})
		}
	}
}

// maySubmit reports whether r's key may submit to service, refusing r if
// not. Checked before the service is looked up, so a key learns nothing of
// services outside its rights.
func (b *Broker) maySubmit(r request, service string) bool {
	if b.mayUse(r.user, service) {
		return true
	}
	b.countRefused(service, protocol.CodeForbidden)
	b.forbidden(r, fmt.Sprintf("key %q may not submit to service %s", b.keyName(r.user), service))
	return false
}

// mayUse reports, without refusing anything, whether user may submit to
// service (or use no key: trusted).
func (b *Broker) mayUse(user, service string) bool {
	return b.cfg.Access == nil || user == "" || b.cfg.Access.MaySubmit(user, service)
}

// mayAdmin reports whether r's key may administer, refusing r if not.
func (b *Broker) mayAdmin(r request) bool {
	if b.cfg.Access == nil || r.user == "" || b.cfg.Access.MayAdmin(r.user) {
		return true
	}
	b.forbidden(r, fmt.Sprintf("key %q may not use %s (an admin operation)", b.keyName(r.user), r.service))
	return false
}

// forbidden refuses r with protocol.CodeForbidden and logs it with the
// key's name.
func (b *Broker) forbidden(r request, text string) {
	b.peerWarn("forbidden request", r.user+r.client).Str(keyClient, hexID(r.client)).Str(keyKey, b.keyName(r.user)).Str(keyService, r.service).
		Str(keyCode, protocol.CodeForbidden).Msg("request refused: outside its key's rights")
	b.refuse(r, protocol.CodeForbidden, text)
}

// maxOwners bounds the interned owner names (keys and tokens are few).
const maxOwners = 10_000

// intern returns one shared copy of an owner's name, so a million queued
// jobs of one key hold one string, not a million.
func (b *Broker) intern(owner string) string {
	if s, ok := b.owners[owner]; ok {
		return s
	}
	if len(b.owners) < maxOwners {
		b.owners[owner] = owner
	}
	return owner
}

// keyHolder answers a submission whose idempotency key (as the client gave
// it) names job id of service svc: with the job's ID, unless svc is not
// the service submitted to (name). durable holds the reply until the
// job's record is committed.
func (b *Broker) keyHolder(r request, key, name, id, svc string, durable bool) {
	if svc != name {
		b.countRefused(name, protocol.CodeConflict)
		b.refuse(r, protocol.CodeConflict, fmt.Sprintf("idempotency key %q was used for a job of another service (%s)", key, svc))
		return
	}
	b.accepted(r, id, durable, false)
}

// resubmit takes up a submission that waited for the archive to look up
// its idempotency key (key): rec is the job the key names there (nil:
// none, or the lookup failed: err). A job made under the key meanwhile, in
// memory, wins. A failed lookup refuses the submission: a new job could
// be the key's second, which the journal refuses, and the whole batch
// with it.
func (b *Broker) resubmit(now time.Time, w *waiting, key string, rec *JobRecord, err error) {
	name, _ := w.r.jobService()
	if rec == nil && err != nil && b.keys[key] == nil {
		b.countRefused(name, protocol.CodeStoreUnavailable)
		b.refuse(w.r, protocol.CodeStoreUnavailable, fmt.Sprintf("job not accepted: the job store could not be read for idempotency key %q; try again", w.meta.Key))
		return
	}
	if rec == nil || b.keys[key] != nil {
		b.submitJob(now, w.r, w.meta, w.body, false)
		return
	}
	svc := rec.Service
	j := b.lookup(rec.ID)
	if j != nil {
		svc = j.svc.name
	}
	b.keyHolder(w.r, w.meta.Key, name, rec.ID, svc, j != nil && j.uncommitted())
}

// accepted tells a client its job's ID; durable holds the reply until the
// job's record is committed. The reply says when no worker is connected
// for the job's service (protocol.CodeNoWorker): the job waits.
func (b *Broker) accepted(r request, id string, durable, first bool) {
	switch {
	case r.titanic():
		b.replyClient(r, protocol.CmdReply, []byte(protocol.TSPOK), []byte(id))
	case r.meta:
		m := protocol.Meta{Status: protocol.StatusAccepted, Job: id, Ref: r.ref}
		b.noWorker(&m, r.service)
		b.replyClient(r, protocol.CmdReply, protocol.EncodeMeta(m))
	default:
		b.replyClient(r, protocol.CmdReply, []byte(id))
	}
	if durable {
		if first {
			b.hold(nil) // refused with its job if the commit fails
		} else {
			b.hold(&r)
		}
	}
}

// addressed reports whether r's client matches replies by reference: an
// 18/MDP client that sent a meta frame with a ref. Such a client gets the
// ref in every reply, PARTIALs too, and a sync request's first reply is a
// PARTIAL that says the job was accepted (docs/PROTOCOL.md).
func (r request) addressed() bool {
	return r.meta && r.ref != "" && r.form.Version == protocol.V2
}

// acceptDelay is how long a sync job dispatched at once may run before its
// addressed client is told it was accepted. Most sync jobs end sooner, and
// their final reply carries the ID: no extra message. Due acceptances are
// sent by a scan every acceptEvery, not a timer each (a timer per job would
// make the loop Tick on every turn under load), so a client learns the ID
// within acceptDelay + acceptEvery: well under any client's Liveness
// (client.DefaultLiveness is 7.5 s).
const (
	acceptDelay = 100 * time.Millisecond
	acceptEvery = 250 * time.Millisecond
)

// dueAccept is a sync job whose client is to be told "accepted" at at,
// unless it knows the job's ID by then.
type dueAccept struct {
	j  *job
	at time.Time
}

// syncAccepted tells an addressed client its sync job's ID, in a PARTIAL
// of a meta frame alone, so it can ask about the job if the broker goes
// quiet: at once when the job waits in its queue (with no_worker when no
// worker is connected), else once it has run acceptDelay without a word.
func (b *Broker) syncAccepted(j *job) {
	r := j.x.reply
	r.told = true
	m := protocol.Meta{Status: protocol.StatusAccepted, Job: j.id.String(), Ref: r.ref}
	b.noWorker(&m, j.svc.name)
	b.replyClient(*r, protocol.CmdPartial, protocol.EncodeMeta(m))
}

// nextAccept is when deferred acceptances are next scanned (zero: none
// waits).
func (b *Broker) nextAccept() time.Time {
	if len(b.accepts) == 0 {
		return time.Time{}
	}
	return b.acceptScan
}

// acceptsDue, at its scan, tells the clients of the deferred acceptances
// due by now whose jobs still run without their client knowing the ID.
func (b *Broker) acceptsDue(now time.Time) {
	if len(b.accepts) == 0 || now.Before(b.acceptScan) {
		return
	}
	defer func() {
		if len(b.accepts) > 0 {
			b.acceptScan = now.Add(acceptEvery)
		}
	}()
	n := 0
	for n < len(b.accepts) && !now.Before(b.accepts[n].at) {
		j := b.accepts[n].j
		if j.x != nil && j.x.reply != nil && !j.x.reply.told && (j.state == stateQueued || j.state == stateActive) {
			b.syncAccepted(j)
		}
		n++
	}
	if n > 0 {
		clear(b.accepts[:n])
		b.accepts = b.accepts[n:]
	}
}

// noWorker marks an acceptance with protocol.CodeNoWorker when no worker
// is connected for service: the job waits in the queue until one comes.
func (b *Broker) noWorker(m *protocol.Meta, service string) {
	name, _ := protocol.SplitSync(service)
	if s := b.services[name]; s != nil && s.workers == 0 {
		m.Code = protocol.CodeNoWorker
		m.Error = "no worker is connected for service " + name + ": the job waits in its queue until one comes"
	}
}

// partial forwards a worker's PARTIAL to sync job j's client; an addressed
// client gets the job's ref and ID in a meta frame first.
func (b *Broker) partial(j *job, body [][]byte) {
	r := j.x.reply
	if !r.addressed() {
		b.replyClient(*r, protocol.CmdPartial, body...)
		return
	}
	r.told = true
	frames := make([][]byte, 0, 1+len(body))
	frames = append(frames, protocol.EncodeMeta(protocol.Meta{Ref: r.ref, Job: j.id.String()}))
	b.replyClient(*r, protocol.CmdPartial, append(frames, body...)...)
}

// copyFrames copies body frames into one buffer.
func copyFrames(body [][]byte) [][]byte {
	if len(body) == 0 {
		return nil
	}
	n := 0
	for _, f := range body {
		n += len(f)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(body))
	for i, f := range body {
		start := len(buf)
		buf = append(buf, f...)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}

// refuse answers a request that made no job.
func (b *Broker) refuse(r request, code, text string) {
	if r.titanic() {
		b.tspRefuse(r, code, text)
		return
	}
	if r.meta {
		b.replyClient(r, protocol.CmdReply, protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusRefused, Code: code, Error: text, Ref: r.ref}))
		return
	}
	b.replyClient(r, protocol.CmdReply, []byte(protocol.FailFrame), []byte(code), []byte(text))
}

// replyClient queues a message to a client in its form.
func (b *Broker) replyClient(r request, cmd protocol.Command, body ...[]byte) {
	b.out = append(b.out, protocol.Envelope{Peer: protocol.ToClient, To: r.client,
		Frames: protocol.EncodeClient(protocol.Message{Form: r.form, Cmd: cmd, Service: r.service, Body: body})})
}

// answer replies to a query with a successful payload; to a Titanic
// request (titanic.close), with TSP's "200" alone.
func (b *Broker) answer(r request, payload []byte) {
	if r.titanic() {
		b.replyClient(r, protocol.CmdReply, []byte(protocol.TSPOK))
		return
	}
	if r.meta {
		b.replyClient(r, protocol.CmdReply, protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete, Ref: r.ref}), payload)
		return
	}
	b.replyClient(r, protocol.CmdReply, payload)
}

// mmi answers the 8/MMI services: mmi.service says 200 when a worker ever
// offered the named service (zmws queues jobs for it), 404 otherwise; any
// other mmi.* name is 501.
func (b *Broker) mmi(r request, body [][]byte) {
	code := protocol.MMINotImplemented
	if r.service == protocol.MMIService {
		code = protocol.MMINotFound
		if len(body) > 0 {
			name, _ := protocol.SplitSync(string(body[0]))
			// A key learns nothing of services outside its rights.
			if _, ok := b.services[name]; ok && b.mayUse(r.user, name) {
				code = protocol.MMIFound
			}
		}
	}
	b.answer(r, []byte(code))
}

// replyFinal sends a sync job's final reply. A 7/MDP client, which cannot
// take partials, gets the whole (capped) output here; an 18/MDP client got the
// partials as they came and gets the final part only.
func (b *Broker) replyFinal(j *job, status protocol.Status, final [][]byte) {
	b.resendsDone(j, status)
	run := j.ensureRun()
	r := *j.x.reply
	if r.form.Version == protocol.V1 && run.partialLen > 0 {
		final = append([][]byte{run.output[:run.partialLen:run.partialLen]}, final...)
	}
	if r.meta {
		meta := protocol.EncodeMeta(protocol.Meta{Status: status, Job: j.id.String(), Attempt: int(j.attempts),
			Code: run.code, Error: run.err, ExitCode: run.exitCode, Ref: r.ref, OutputTruncated: run.truncated || run.streamCut})
		body := make([][]byte, 0, 1+len(final))
		body = append(body, meta)
		b.replyClient(r, protocol.CmdReply, append(body, final...)...)
		return
	}
	if status == protocol.StatusComplete {
		b.replyClient(r, protocol.CmdReply, final...)
		return
	}
	b.replyClient(r, protocol.CmdReply, []byte(protocol.FailFrame), []byte(run.code), []byte(run.err))
}
