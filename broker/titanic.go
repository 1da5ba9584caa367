package broker

import (
	"fmt"
	"strings"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Titanic (9/TSP). The broker serves titanic.request, titanic.reply and
// titanic.close itself, over the jobs it holds and its journal, so a stock
// Titanic client (the Guide's ticlient, over 7/MDP or 18/MDP) needs no
// Titanic proxy:
//
//   - titanic.request [service, frames...] is an async submission of the
//     frames to service, under the same rules (rights, unknown service,
//     queue bound, rate, the journal commit before the ID is handed out);
//     its acceptance is ["200", job ID], a refusal [status, code, text]
//     (protocol.TSPStatus).
//   - titanic.reply [id]: ["300"] while the job is queued or running;
//     ["200", output] once it completed; ["500", code, text] once it
//     failed for good (a failure is not the service's answer); ["400",
//     not_found, text] for a job neither memory nor the journal holds.
//     A job the broker no longer holds waits for a Lookup.
//   - titanic.close [id] deletes the job: from memory at once, from the
//     journal with the next batch, and the ["200"] waits for that commit. A
//     job still scheduled, queued or running is cancelled first (as SERVER-CANCEL
//     would), since a closed request must not run. An unknown ID is closed
//     too (9/TSP: close is idempotent).
//
// Titanic replies never carry a meta frame, and a Titanic request with one
// is refused: Titanic is for stock clients. The Titanic-ness of a request
// rides in its service name (request.titanic), so the common reply paths
// (refuse, accepted, answer) speak TSP to it, and in request.target, the
// service a titanic.request's job goes to.

// Lookup operations of Titanic requests (apart from lookup.go's).
const (
	opTitanicReply lookupOp = iota + 64
	opTitanicClose
)

// titanic reports whether r asked a Titanic service: its replies are TSP
// status frames.
func (r request) titanic() bool { return strings.HasPrefix(r.service, protocol.TitanicPrefix) }

// jobService returns the service r's job goes to, and whether it is a sync
// job: a titanic.request's target, else the name r asked for.
func (r request) jobService() (name string, sync bool) {
	if r.target != "" {
		return r.target, false
	}
	return protocol.SplitSync(r.service)
}

// titanicRequest answers a request to a titanic.* service; hasMeta says it
// began with a meta frame.
func (b *Broker) titanicRequest(now time.Time, r request, hasMeta bool, body [][]byte) {
	r.meta, r.ref = false, ""
	if hasMeta {
		b.refuse(r, protocol.CodeBadRequest, r.service+" takes no meta frame (Titanic replies carry none)")
		return
	}
	switch r.service {
	case protocol.TitanicRequest:
		if len(body) == 0 || len(body[0]) == 0 {
			b.refuse(r, protocol.CodeBadRequest, "titanic.request needs a service name frame, then the request's frames")
			return
		}
		name := string(body[0])
		if err := protocol.ValidWorkerService(name); err != nil {
			b.refuse(r, protocol.CodeBadRequest, fmt.Sprintf("titanic.request: %v: the first frame names the service that runs the request", err))
			return
		}
		r.target = name
		b.submitJob(now, r, protocol.Meta{}, body[1:], false)
	case protocol.TitanicReply, protocol.TitanicClose:
		if len(body) == 0 || len(body[0]) == 0 {
			b.refuse(r, protocol.CodeBadRequest, r.service+" needs a job ID frame (the one titanic.request answered)")
			return
		}
		id := string(body[0])
		j := b.lookup(id)
		switch {
		case j != nil && r.service == protocol.TitanicReply:
			b.titanicReply(r, id, j.owner(), j.tspView())
		case j != nil:
			b.titanicClose(now, r, id, j)
		case r.service == protocol.TitanicReply && b.archived(id):
			b.ask(id, "", waiting{op: opTitanicReply, r: r, id: id})
		case r.service == protocol.TitanicReply:
			b.titanicNotFound(r, id)
		case b.archived(id) && !b.mayAdminQuiet(r.user):
			// Whose job it is, only the journal knows.
			b.ask(id, "", waiting{op: opTitanicClose, r: r, id: id})
		default:
			b.titanicClose(now, r, id, nil)
		}
	default:
		b.replyClient(r, protocol.CmdReply, []byte(protocol.TSPNotImplemented), []byte(protocol.CodeUnknownService),
			[]byte("no Titanic service "+r.service+" (try titanic.request, titanic.reply, titanic.close)"))
	}
}

// titanicLookedUp takes up a Titanic request that waited for the journal
// (w.op opTitanicReply or opTitanicClose): rec is the job's record there
// (nil: none, or the lookup failed: err). A job back in memory meanwhile
// wins.
func (b *Broker) titanicLookedUp(now time.Time, w *waiting, rec *JobRecord, err error) {
	if j := b.lookup(w.id); j != nil {
		if w.op == opTitanicReply {
			b.titanicReply(w.r, w.id, j.owner(), j.tspView())
		} else {
			b.titanicClose(now, w.r, w.id, j)
		}
		return
	}
	switch {
	case rec == nil && err != nil:
		b.refuse(w.r, protocol.CodeStoreUnavailable, "the job store could not be read for job "+printable([]byte(w.id))+"; try again")
	case w.op == opTitanicReply && rec == nil:
		b.titanicNotFound(w.r, w.id)
	case w.op == opTitanicReply:
		b.titanicReply(w.r, w.id, rec.Owner, tspView{state: rec.State, output: rec.Output, code: rec.Code, err: rec.Error})
	case rec == nil || b.mayRead(w.r, rec.Owner): // else refused
		b.titanicClose(now, w.r, w.id, nil)
	}
}

// tspView is what titanic.reply tells of a job.
type tspView struct {
	state     string // protocol.JobQueued, ...
	output    []byte
	code, err string
}

// tspView returns what titanic.reply tells of j.
func (j *job) tspView() tspView {
	v := tspView{state: j.state.String()}
	if r := j.lastRun(); r != nil {
		v.output, v.code, v.err = r.output, r.code, r.err
	}
	return v
}

// titanicReply answers titanic.reply for job id of owner, if r's key may
// read it.
func (b *Broker) titanicReply(r request, id, owner string, v tspView) {
	if !b.mayRead(r, owner) {
		return
	}
	switch v.state {
	case protocol.JobComplete:
		b.replyClient(r, protocol.CmdReply, []byte(protocol.TSPOK), v.output)
	case protocol.JobFailed:
		b.replyClient(r, protocol.CmdReply, []byte(protocol.TSPError), []byte(v.code), []byte("job "+id+" failed: "+v.err))
	default:
		b.replyClient(r, protocol.CmdReply, []byte(protocol.TSPPending))
	}
}

// titanicNotFound answers titanic.reply for a job neither memory nor the
// journal holds: never made, closed, or pruned.
func (b *Broker) titanicNotFound(r request, id string) {
	b.refuse(r, protocol.CodeNotFound, "no job "+printable([]byte(id))+" is known (closed, never made, or no longer retained)")
}

// titanicClose answers titanic.close of job id: j in memory, cancelled
// first when unfinished, or nil for one the broker does not hold. The job
// leaves memory at once and the journal with the next batch; the "200"
// waits for that commit, so a closed job does not come back with a
// restart. An ID that is no job ID has nothing to delete.
func (b *Broker) titanicClose(now time.Time, r request, id string, j *job) {
	if j != nil && !b.mayRead(r, j.owner()) {
		return
	}
	_, isID := parseJobID(id)
	del := isID && b.cfg.Durable
	if j != nil && (j.state == stateQueued || j.state == stateActive || j.state == stateScheduled) {
		b.cancelJob(now, r, id, j) // its answer (answer) is the "200", held
	} else {
		b.replyClient(r, protocol.CmdReply, []byte(protocol.TSPOK))
		if del {
			b.hold(&r)
		}
	}
	if j != nil {
		if b.jobs.get(j.id) == j {
			b.jobs.delete(j.id)
		}
		if key := j.key(); key != "" {
			if b.keys[key] == j {
				delete(b.keys, key)
			}
			// The key is free now: the job's record goes without it,
			// ahead of any job made under the key since (the journal
			// applies a batch's records before its deletes).
			j.x.key = ""
			b.markDirty(j)
		}
		b.log.Info().Stringer(keyJob, j.id).Str(keyService, j.svc.name).Msg("job closed (titanic.close)")
	}
	if del {
		b.batch.Deletes = append(b.batch.Deletes, id)
	}
}

// mayRead reports whether r's key may read or close a job of owner,
// refusing r if not: a key the jobs it submitted, an admin any.
func (b *Broker) mayRead(r request, owner string) bool {
	if b.cfg.Access == nil || r.user == "" || owner == r.user || b.cfg.Access.MayAdmin(r.user) {
		return true
	}
	b.forbidden(r, fmt.Sprintf("key %q may see only the jobs it submitted", b.keyName(r.user)))
	return false
}

// mayAdminQuiet reports, refusing nothing, whether user may administer (or
// is trusted: no key, or no Access).
func (b *Broker) mayAdminQuiet(user string) bool {
	return b.cfg.Access == nil || user == "" || b.cfg.Access.MayAdmin(user)
}

// tspRefuse answers a Titanic request that is refused with code: the TSP
// status (protocol.TSPStatus), the code, the text.
func (b *Broker) tspRefuse(r request, code, text string) {
	b.replyClient(r, protocol.CmdReply, []byte(protocol.TSPStatus(code)), []byte(code), []byte(text))
}
