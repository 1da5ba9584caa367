package broker

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Resends of stock clients (Config.DedupeWindow). A stock MDP client that
// hears nothing within its timeout sends the same request again: the
// Guide's mdcliapi does, from a new socket (so a new routing id), three
// times in all. Without a meta frame the broker cannot tell such a resend
// from a new request, so a sync job that outlives the client's timeout
// runs once per resend. With a window set, a request from a stock client
// (no meta frame) that makes a job is remembered by its fingerprint: the
// client's key (CURVE; none without), the service as asked (NAME,
// SYNC-NAME, titanic.request and its target) and its body frames. The same
// fingerprint within the window of the first, while the broker holds the
// job (unfinished, or among the last Config.History finished), makes no
// job:
//
//   - an async job (NAME, titanic.request): the resend gets the job's ID,
//     after its commit;
//   - a sync job still queued or running: the resend waits for it and gets
//     its result when it ends (the job's whole retained output in one
//     frame, as for a 7/MDP client, or FAIL, code, error), beside the
//     first request's reply;
//   - a sync job that has finished: the resend gets that result at once.
//
// Past the window, or once the job has left memory, the same request is a
// new job, and the window starts again from it. The routing id is not in
// the fingerprint: the Guide's client resends from a new socket.
//
// Memory: at most maxResends fingerprints (about 200 bytes each: 2 MB),
// the oldest forgotten first, and at most maxResendWaiters resends waiting
// on one sync job (a further one drops the oldest waiting, whose client
// has most likely given up: it resent). Expired fingerprints are dropped
// as requests come, so the table needs no timer.

const (
	maxResends       = 10_000
	maxResendWaiters = 8
)

// resends is the table of Config.DedupeWindow: the fingerprints seen, and
// the resends waiting for sync jobs.
type resends struct {
	byFP    map[[sha256.Size]byte]*resend
	order   []*resend // oldest first
	waiters map[jobID][]request
}

// resend is a fingerprint seen at at, of the request that made job id.
type resend struct {
	fp [sha256.Size]byte
	id jobID
	at time.Time
}

// fingerprint is what tells a resend of r (whose body, after the meta
// frame, is body) from another request.
func fingerprint(r request, body [][]byte) [sha256.Size]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	put := func(p []byte) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write(p)
	}
	put([]byte(r.user))
	put([]byte(r.service))
	put([]byte(r.target))
	for _, f := range body {
		put(f)
	}
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

// dedupes reports whether r is a request whose resends are recognized.
func (b *Broker) dedupes(r request) bool { return b.cfg.DedupeWindow > 0 && !r.meta }

// attachResend answers r, a submission to service name with body, when it
// is a resend of a request whose job the broker holds (see above), and
// reports whether it did; fp is r's fingerprint for noteResend.
func (b *Broker) attachResend(now time.Time, r request, name string, body [][]byte) (fp [sha256.Size]byte, attached bool) {
	if !b.dedupes(r) {
		return fp, false
	}
	rs := b.resendTable()
	rs.expire(now.Add(-b.cfg.DedupeWindow))
	fp = fingerprint(r, body)
	e := rs.byFP[fp]
	if e == nil {
		return fp, false
	}
	j := b.jobs.get(e.id)
	if j == nil || j.svc.name != name {
		delete(rs.byFP, fp) // left memory: a new job
		return fp, false
	}
	switch {
	case !j.sync:
		b.accepted(r, j.id.String(), j.uncommitted(), false)
	case j.state == stateQueued || j.state == stateActive:
		ws := rs.waiters[j.id]
		if len(ws) == maxResendWaiters {
			ws = append(ws[:0], ws[1:]...)
		}
		rs.waiters[j.id] = append(ws, r)
	default:
		b.resendResult(r, j, j.state == stateComplete)
	}
	if b.log.Debug().Enabled() {
		b.log.Debug().Stringer(keyJob, j.id).Str(keyService, name).Str(keyClient, hexID(r.client)).Msg("resend attached to its job")
	}
	return fp, true
}

// noteResend remembers fp, the fingerprint of r, as that of new job j.
func (b *Broker) noteResend(now time.Time, r request, fp [sha256.Size]byte, j *job) {
	if !b.dedupes(r) {
		return
	}
	rs := b.resendTable()
	if len(rs.order) >= maxResends {
		rs.pop()
	}
	e := &resend{fp: fp, id: j.id, at: now}
	rs.byFP[fp] = e
	rs.order = append(rs.order, e)
}

// resendsDone answers the resends waiting for sync job j, which ends with
// status (from replyFinal).
func (b *Broker) resendsDone(j *job, status protocol.Status) {
	if b.resends == nil {
		return
	}
	ws, ok := b.resends.waiters[j.id]
	if !ok {
		return
	}
	delete(b.resends.waiters, j.id)
	for _, r := range ws {
		b.resendResult(r, j, status == protocol.StatusComplete)
	}
}

// resendResult answers a resend r of sync job j with its result: the
// retained output in one frame, or FAIL, code, error.
func (b *Broker) resendResult(r request, j *job, complete bool) {
	run := j.ensureRun()
	if complete {
		b.replyClient(r, protocol.CmdReply, run.output)
		return
	}
	b.replyClient(r, protocol.CmdReply, []byte(protocol.FailFrame), []byte(run.code), []byte(run.err))
}

// resendTable returns the broker's table of resends, made at first use.
func (b *Broker) resendTable() *resends {
	if b.resends == nil {
		b.resends = &resends{byFP: make(map[[sha256.Size]byte]*resend), waiters: make(map[jobID][]request)}
	}
	return b.resends
}

// expire forgets the fingerprints seen before since.
func (rs *resends) expire(since time.Time) {
	for len(rs.order) > 0 && rs.order[0].at.Before(since) {
		rs.pop()
	}
}

// pop forgets the oldest fingerprint.
func (rs *resends) pop() {
	e := rs.order[0]
	rs.order[0] = nil
	rs.order = rs.order[1:]
	if rs.byFP[e.fp] == e {
		delete(rs.byFP, e.fp)
	}
}
