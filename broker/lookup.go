package broker

import (
	"fmt"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Archive lookups. The broker holds in memory every unfinished job and the
// last Config.History finished ones; a journal (the Archive) keeps finished
// jobs for longer. With Config.Archived set, a request that needs a job the
// broker does not hold (SERVER-JOB, SERVER-CANCEL and SERVER-RETRY of an
// older job, a submission whose idempotency key is not in memory) waits,
// and the broker emits a Lookup for it instead of a reply (so do the
// listings and bulk retries of failed jobs: failed.go). The loop takes
// the Lookups after each input, answers each off its own goroutine
// (Lookup.Ask, which may block on I/O), and feeds every Answer back with
// LookedUp, which returns the reply. The broker itself never calls an
// Archive: storage is never read on the loop goroutine.
//
//	send(b.HandleClient(now, from, user, frames)) // SERVER-JOB of an old job: no reply yet
//	for _, l := range b.Lookups() { go func() { answers <- l.Ask(archive) }() }
//	...
//	send(b.LookedUp(time.Now(), <-answers)) // the reply
//
// A waiting request sees the broker as it is when its Answer comes, not as
// it was when it came: LookedUp looks in memory again first (a resubmitted
// idempotency key may have made its job meanwhile, a retried job may be
// back). Replies to one client may thus come in another order than its
// requests. Every Lookup must be answered once; answers may come in any
// order. At most MaxLookups wait at once: past that, a request that needs
// one is refused with protocol.CodeStoreUnavailable.

// MaxLookups bounds the Lookups emitted and not yet answered: what a slow
// archive makes the broker hold (a request each, with a submission's
// input), and a size for the loop's queues that never fills.
const MaxLookups = 1024

// Lookup asks an Archive for one job: by ID, or by idempotency key (then
// the job the key names). Only the broker makes them.
type Lookup struct {
	ID  string // the job's ID; "" when Key is set
	Key string // an idempotency key, as the broker keeps it (owner|key)
	// Failed, when set, asks for a page of failed jobs instead (see
	// FailedQuery); ID and Key are "".
	Failed *FailedQuery
	seq    uint64 // the waiting request it answers
}

// Answer is what an Archive says of a Lookup.
type Answer struct {
	Lookup Lookup
	Found  bool       // the archive retains the job
	Rec    JobRecord  // the job's record, when Found
	Failed FailedPage // the page of failed jobs a Lookup.Failed asked for
	// Err says the lookup failed: the broker logs it and answers as not
	// found, except a submission's idempotency key, which it refuses
	// (protocol.CodeStoreUnavailable) rather than make a second job
	// under a key the journal may hold.
	Err error
}

// Ask answers l from a. It calls a and may block: call it off the loop
// goroutine. A key whose job is gone by the time it is read is not found.
func (l Lookup) Ask(a Archive) Answer {
	ans := Answer{Lookup: l}
	if l.Failed != nil {
		fa, ok := a.(FailedArchive)
		if !ok {
			ans.Err = fmt.Errorf("broker: the archive %T cannot list failed jobs", a)
			return ans
		}
		ans.Failed, ans.Err = fa.Failed(*l.Failed)
		return ans
	}
	id := l.ID
	if l.Key != "" {
		var ok bool
		if id, ok, ans.Err = a.JobByKey(l.Key); ans.Err != nil || !ok {
			return ans
		}
	}
	ans.Rec, ans.Found, ans.Err = a.Job(id)
	ans.Found = ans.Found && ans.Err == nil
	return ans
}

// lookupOp is what a waiting request does with its Answer.
type lookupOp uint8

const (
	opJob    lookupOp = iota + 1 // SERVER-JOB
	opCancel                     // SERVER-CANCEL
	opRetry                      // SERVER-RETRY
	opSubmit                     // a submission with an idempotency key
	opFailed                     // SERVER-JOBS or SERVER-RETRY of failed jobs
)

// waiting is a request held for a Lookup's Answer.
type waiting struct {
	op   lookupOp
	r    request
	id   string        // the job asked for (opJob, opCancel, opRetry)
	meta protocol.Meta // a submission's meta and body frames, its own copy
	body [][]byte
	// failed is a request for failed jobs (opFailed).
	failed *failedOp
}

// Lookups returns the Lookups emitted since the last call, and forgets
// them. The slice is valid until the next call. The caller answers each
// one (LookedUp) exactly once.
func (b *Broker) Lookups() []Lookup {
	out := b.lookups
	b.lookups, b.lookupsSpare = b.lookupsSpare[:0], out
	return out
}

// ask holds w until the Answer to a Lookup by id or key comes, or refuses
// w's request when MaxLookups already wait.
func (b *Broker) ask(id, key string, w waiting) {
	if len(b.waiting) >= MaxLookups {
		b.peerWarn("lookups full", "").Int("waiting", len(b.waiting)).Msg("archive lookups at their bound: request refused")
		b.refuse(w.r, protocol.CodeStoreUnavailable, fmt.Sprintf("the job store is slow: %d lookups wait; try again", MaxLookups))
		return
	}
	b.lookupSeq++
	b.waiting[b.lookupSeq] = &w
	l := Lookup{ID: id, Key: key, seq: b.lookupSeq}
	if w.failed != nil {
		q := w.failed.q
		l.Failed = &q
	}
	b.lookups = append(b.lookups, l)
}

// LookedUp takes the Answer to a Lookup and returns the reply to the
// request that waited for it. An Answer to no waiting Lookup (answered
// twice) is ignored.
func (b *Broker) LookedUp(now time.Time, a Answer) []protocol.Envelope {
	b.out = b.out[:0]
	b.at = now
	w := b.waiting[a.Lookup.seq]
	if w == nil {
		b.log.Error().Uint64("lookup", a.Lookup.seq).Msg("answer to no waiting lookup ignored")
		return b.out
	}
	delete(b.waiting, a.Lookup.seq)
	if a.Err != nil {
		b.log.Error().Err(a.Err).Str(keyJob, printable([]byte(a.Lookup.ID))).Msg("job lookup")
	}
	var rec *JobRecord
	if a.Found {
		rec = &a.Rec
	}
	switch w.op {
	case opJob:
		if j := b.lookup(w.id); j != nil {
			b.answerInfo(w.r, b.jobInfo(j, true))
		} else if rec != nil {
			b.answerInfo(w.r, recordInfo(rec))
		} else {
			b.jobNotFound(w.r, w.id)
		}
	case opCancel:
		if j := b.lookup(w.id); j != nil {
			b.cancelJob(now, w.r, w.id, j)
		} else if rec != nil {
			b.refuse(w.r, protocol.CodeConflict, "job "+w.id+" has already finished")
		} else {
			b.refuse(w.r, protocol.CodeNotFound, "no job "+printable([]byte(w.id))+" is known")
		}
	case opRetry:
		j := b.lookup(w.id)
		if j == nil && rec != nil {
			j = b.archivedJob(now, rec)
		}
		b.retryJob(now, w.r, w.id, j)
	case opSubmit:
		b.resubmit(now, w, a.Lookup.Key, rec, a.Err)
	case opTitanicReply, opTitanicClose:
		b.titanicLookedUp(now, w, rec, a.Err)
	case opFailed:
		if a.Err != nil {
			b.refuse(w.r, protocol.CodeStoreUnavailable, "the job store could not list the failed jobs; try again")
			break
		}
		b.answerFailed(now, w.r, *w.failed, a.Failed)
	}
	return b.out
}

// archivedJob rebuilds a finished job from its archived record, or returns
// nil (logged) if the record's ID is not a job ID. A service the broker
// does not know is not made for it: the job keeps a service of its own,
// which a retry refuses (unknown_service) as it would a forgotten one.
func (b *Broker) archivedJob(now time.Time, rec *JobRecord) *job {
	_, known := b.services[rec.Service]
	j := b.restoredJob(rec)
	if !known {
		delete(b.services, rec.Service)
	}
	if j != nil {
		state := stateFailed
		if rec.State == protocol.JobComplete {
			state = stateComplete
		}
		b.moveJob(now, j, state)
	}
	return j
}

// recordInfo describes an archived job for SERVER-JOB, with its output.
func recordInfo(rec *JobRecord) protocol.JobInfo {
	ji := protocol.JobInfo{
		ID: rec.ID, Service: rec.Service, Sync: rec.Sync, State: rec.State, Created: rec.Created,
		Attempts: rec.Attempts, Worker: hexID(rec.Worker), ExitCode: rec.ExitCode, Code: rec.Code,
		Error: rec.Error, Params: rec.Params, Owner: rec.Owner, Output: rec.Output, OutputTruncated: rec.Truncated,
	}
	if !rec.Started.IsZero() {
		ji.Started = &rec.Started
	}
	if !rec.Finished.IsZero() {
		ji.Finished = &rec.Finished
	}
	return ji
}

// archived reports whether a job asked for by id, not in memory, may be in
// the archive: then the request waits for a Lookup.
func (b *Broker) archived(id string) bool {
	return b.cfg.Archived && len(id) <= 64
}
