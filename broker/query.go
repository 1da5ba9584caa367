package broker

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/zmws/zmws/protocol"
)

// query answers the SERVER-* introspection services with JSON. meta is the
// request's (zero from a stock client): the paged listings read their limit
// and cursor from it.
func (b *Broker) query(now time.Time, r request, meta protocol.Meta, body [][]byte) {
	if b.failedQuery(now, r, meta, body) {
		return // failed.go: its own rights
	}
	switch r.service {
	case protocol.ServerServices, protocol.ServerJob, protocol.ServerHealth, protocol.ServerRetry:
		// Open to every key; SERVER-JOB and SERVER-RETRY check the job's
		// owner (answerInfo, retryJob).
	default:
		if !b.mayAdmin(r) {
			return
		}
	}
	var v any
	switch r.service {
	case protocol.ServerWorkers:
		switch {
		case len(body) == 0 || len(body[0]) == 0:
			v = b.Workers()
		case string(body[0]) == protocol.WorkersAll:
			v = b.AllWorkers()
		default:
			b.refuse(r, protocol.CodeBadRequest, "SERVER-WORKERS takes no frame (live workers) or "+strconv.Quote(protocol.WorkersAll)+
				" (gone ones too), not "+strconv.Quote(printable(body[0])))
			return
		}
	case protocol.ServerJobs:
		b.jobsPage(r, meta)
		return
	case protocol.ServerActive:
		v = b.Active()
	case protocol.ServerQueue:
		v = b.Queue()
	case protocol.ServerServices:
		b.servicesPage(r, meta)
		return
	case protocol.ServerHealth:
		h := b.Health()
		if b.cfg.Access != nil && r.user != "" && !b.cfg.Access.MayAdmin(r.user) {
			h.StoreError = ""
		}
		v = h
	case protocol.ServerCancel, protocol.ServerRetry:
		if len(body) == 0 || len(body[0]) == 0 {
			b.refuse(r, protocol.CodeBadRequest, r.service+" needs a job ID frame")
			return
		}
		if r.service == protocol.ServerCancel {
			b.cancel(now, r, string(body[0]))
		} else {
			b.retry(now, r, string(body[0]))
		}
		return
	case protocol.ServerForget:
		if len(body) == 0 || len(body[0]) == 0 {
			b.refuse(r, protocol.CodeBadRequest, "SERVER-FORGET needs a service name frame")
			return
		}
		b.serveForget(r, string(body[0]))
		return
	case protocol.ServerJob:
		if len(body) == 0 {
			b.refuse(r, protocol.CodeBadRequest, "SERVER-JOB needs a job ID frame")
			return
		}
		id := string(body[0])
		switch j := b.lookup(id); {
		case j != nil:
			b.answerInfo(r, b.jobInfo(j, true))
		case b.archived(id):
			b.ask(id, "", waiting{op: opJob, r: r, id: id})
		default:
			b.jobNotFound(r, id)
		}
		return
	case protocol.ServerPause:
		b.servePause(r, body)
		return
	case protocol.ServerResume:
		b.serveResume(now, r, body)
		return
	case protocol.ServerDrain:
		b.serveDrain(now, r, body)
		return
	case protocol.ServerSchedules:
		v = b.Schedules()
	case protocol.ServerReload:
		if b.cfg.Reload == nil {
			b.refuse(r, protocol.CodeBadRequest, "this broker has no keys to reload (it runs without --curve-key)")
			return
		}
		if err := b.cfg.Reload(); err != nil {
			b.log.Error().Err(err).Str(keyKey, b.keyName(r.user)).Msg("reload failed: what failed to load keeps its old state")
			b.refuse(r, protocol.CodeBadRequest, "reload failed (what failed to load keeps its old state): "+err.Error())
			return
		}
		b.log.Info().Str(keyKey, b.keyName(r.user)).Msg("keys reloaded")
		v = map[string]string{"reloaded": "ok"}
	default:
		b.refuse(r, protocol.CodeUnknownService, "no introspection service "+r.service+
			" (try SERVER-WORKERS, SERVER-JOBS, SERVER-ACTIVE, SERVER-QUEUE, SERVER-SERVICES, SERVER-JOB, SERVER-CANCEL, SERVER-RETRY, SERVER-RELOAD, SERVER-FORGET, SERVER-HEALTH, SERVER-PAUSE, SERVER-RESUME, SERVER-DRAIN, SERVER-SCHEDULES)")
		return
	}
	payload, err := json.Marshal(v)
	if err != nil { // cannot happen with these types; say so if it does
		b.log.Error().Err(err).Str(keyService, r.service).Msg("encode introspection")
		b.refuse(r, protocol.CodeBadRequest, "internal error encoding "+r.service)
		return
	}
	b.answer(r, payload)
}

// mustJSON encodes v, one of the broker's own JSON types, which cannot fail.
func mustJSON(v any) []byte {
	p, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("broker: encode %T: %v", v, err))
	}
	return p
}

// Workers describes every live worker, sorted by service then identity:
// SERVER-WORKERS.
func (b *Broker) Workers() []protocol.WorkerInfo {
	out := make([]protocol.WorkerInfo, 0, len(b.workers))
	for _, w := range b.workers {
		out = append(out, w.info())
	}
	sortWorkers(out)
	return out
}

// AllWorkers describes the live workers and the gone ones each service
// keeps (Config.KeepGone): SERVER-WORKERS all. They are sorted by service;
// within one, the live workers by identity, then the gone ones, most
// recently gone first.
func (b *Broker) AllWorkers() []protocol.WorkerInfo {
	n := len(b.workers)
	for _, s := range b.services {
		n += len(s.gone)
	}
	out := make([]protocol.WorkerInfo, 0, n)
	for _, w := range b.workers {
		out = append(out, w.info())
	}
	for _, s := range b.services {
		for _, w := range s.gone {
			out = append(out, w.info())
		}
	}
	sortWorkers(out)
	return out
}

func sortWorkers(ws []protocol.WorkerInfo) {
	sort.Slice(ws, func(i, k int) bool {
		a, c := &ws[i], &ws[k]
		if a.Service != c.Service {
			return a.Service < c.Service
		}
		if ag, cg := a.State == protocol.WorkerGone, c.State == protocol.WorkerGone; ag != cg {
			return cg
		}
		if !a.GoneAt.Equal(c.GoneAt) {
			return a.GoneAt.After(c.GoneAt)
		}
		return a.Identity < c.Identity
	})
}

// info describes w for SERVER-WORKERS.
func (w *worker) info() protocol.WorkerInfo {
	wi := protocol.WorkerInfo{
		Identity:      hexID(w.id),
		Service:       w.svc.name,
		State:         protocol.WorkerIdle,
		Protocol:      protocol.HeaderWorkerV1,
		Zmws:          w.zmws,
		Since:         w.since,
		LastHeartbeat: w.lastSeen,
		JobsDone:      w.completed + w.failed,
		Completed:     w.completed,
		Failed:        w.failed,
		Details:       w.details,
		Draining:      w.stop,
	}
	if w.form.Version == protocol.V2 {
		wi.Protocol = protocol.HeaderWorkerV2
	}
	switch {
	case !w.goneAt.IsZero():
		wi.State, wi.Job, wi.GoneAt, wi.GoneWhy = protocol.WorkerGone, w.goneJob, w.goneAt, w.goneWhy
	case len(w.jobs) > 0:
		wi.State, wi.Job = protocol.WorkerBusy, w.jobs[0].id.String()
	}
	return wi
}

// Jobs describes the retained finished jobs, newest first: every one, where
// SERVER-JOBS answers a page at a time.
func (b *Broker) Jobs() []protocol.JobInfo {
	out := make([]protocol.JobInfo, 0, len(b.history))
	n := len(b.history)
	for i := 1; i <= n; i++ {
		j := b.history[(b.histNext-i+n)%n]
		out = append(out, j.info(false))
	}
	return out
}

// Active describes running jobs, oldest first.
func (b *Broker) Active() []protocol.JobInfo {
	var out []protocol.JobInfo
	for _, w := range b.workers {
		for _, j := range w.jobs {
			out = append(out, j.info(false))
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].ID < out[k].ID })
	if out == nil {
		out = []protocol.JobInfo{}
	}
	return out
}

// maxQueueIDs bounds the job IDs listed per service in SERVER-QUEUE.
const maxQueueIDs = 100

// Queue describes each known service's queue, sorted by service.
func (b *Broker) Queue() []protocol.QueueInfo {
	out := make([]protocol.QueueInfo, 0, len(b.services))
	scheduled := b.scheduledJobs()
	for _, s := range b.sortedServices() {
		qi := protocol.QueueInfo{Service: s.name, Queued: s.queue.Len(), Jobs: []string{},
			Priorities: s.queue.Priorities(), Scheduled: s.scheduled, ScheduledJobs: scheduled[s]}
		for i := 0; i < s.queue.Len() && i < maxQueueIDs; i++ {
			qi.Jobs = append(qi.Jobs, s.queue.At(i).id.String())
		}
		if s.queue.Len() > 0 {
			head := s.queue.At(0)
			qi.Oldest, qi.Since = head.id.String(), head.created.Time()
		}
		out = append(out, qi)
	}
	return out
}

// Services describes every service ever announced, sorted by name: every
// one, where SERVER-SERVICES answers a page at a time.
func (b *Broker) Services() []protocol.ServiceInfo {
	out := make([]protocol.ServiceInfo, 0, len(b.services))
	for _, s := range b.sortedServices() {
		out = append(out, s.info())
	}
	return out
}

func (b *Broker) sortedServices() []*service {
	ss := make([]*service, 0, len(b.services))
	for _, s := range b.services {
		ss = append(ss, s)
	}
	sort.Slice(ss, func(i, k int) bool { return ss[i].name < ss[k].name })
	return ss
}

// Job describes one job the broker holds in memory (unfinished, or among
// the last Config.History finished), with its output when finished. Older
// jobs are the archive's: SERVER-JOB asks it (see Lookup).
func (b *Broker) Job(id string) (protocol.JobInfo, bool) {
	if j := b.lookup(id); j != nil {
		return b.jobInfo(j, true), true
	}
	return protocol.JobInfo{}, false
}

// answerInfo answers SERVER-JOB with info, if r's key may see the job: a
// key reads the jobs it submitted; an admin reads any.
func (b *Broker) answerInfo(r request, info protocol.JobInfo) {
	if b.cfg.Access != nil && r.user != "" && info.Owner != r.user && !b.cfg.Access.MayAdmin(r.user) {
		b.forbidden(r, fmt.Sprintf("key %q may see only the jobs it submitted", b.keyName(r.user)))
		return
	}
	b.answer(r, mustJSON(info))
}

// jobNotFound refuses a request for a job neither memory nor the archive
// holds.
func (b *Broker) jobNotFound(r request, id string) {
	if b.cfg.Archived {
		b.refuse(r, protocol.CodeNotFound, "no job "+printable([]byte(id))+" is known (finished jobs stay in the journal as --retain says)")
		return
	}
	b.refuse(r, protocol.CodeNotFound, "no job "+printable([]byte(id))+" is known (without a journal, finished jobs are kept for the last "+strconv.Itoa(b.cfg.History)+")")
}

func (j *job) info(withOutput bool) protocol.JobInfo {
	ji := protocol.JobInfo{
		ID:       j.id.String(),
		Service:  j.svc.name,
		Sync:     j.sync,
		State:    j.state.String(),
		Created:  j.created.Time(),
		Attempts: int(j.attempts),
		Params:   j.params,
		Owner:    j.owner(),
		Priority: int(j.priority()),
	}
	r := j.lastRun()
	if r == nil {
		return ji
	}
	if !r.notBefore.IsZero() && j.state == stateQueued {
		t := r.notBefore // a retry backing off
		ji.NotBefore = &t
	}
	ji.Worker, ji.ExitCode, ji.Code, ji.Error = hexID(r.worker), r.exitCode, r.code, r.err
	if !r.started.IsZero() {
		t := r.started
		ji.Started = &t
	}
	if !r.finished.IsZero() {
		t := r.finished
		ji.Finished = &t
	}
	if withOutput && (j.state == stateComplete || j.state == stateFailed) {
		ji.Output, ji.OutputTruncated = r.output, r.truncated
	}
	return ji
}

// event queues a lifecycle event for the events socket, when enabled and
// someone subscribes to it.
func (b *Broker) event(now time.Time, name string, j *job, fill func(*protocol.Event)) {
	if !b.cfg.Events || (b.cfg.Subscribed != nil && !b.cfg.Subscribed(name)) {
		return
	}
	e := protocol.Event{Event: name, Time: now, Job: j.id.String(), Service: j.svc.name, Attempt: int(j.attempts), Worker: hexID(j.worker())}
	if fill != nil {
		fill(&e)
	}
	payload, err := json.Marshal(e)
	if err != nil {
		b.log.Error().Err(err).Msg("encode event")
		return
	}
	b.out = append(b.out, protocol.Envelope{Peer: protocol.ToEvents, To: name, Frames: [][]byte{payload}})
}
