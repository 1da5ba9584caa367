package broker

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Pausing and draining, for maintenance, as beanstalkd's pause-tube and a
// process manager's drain:
//
//	SERVER-PAUSE  [service]   its jobs are accepted and queue; none is dispatched
//	SERVER-DRAIN  [service]   the same, and each of its workers is told to stop
//	                          (DISCONNECT, code drained) once it holds no job;
//	                          a worker saying READY for it is told the same
//	SERVER-DRAIN  [identity]  one live worker (or HOST:PID: every connection of
//	                          that process, as its READY told them): no new job;
//	                          each told to stop once it holds none
//	SERVER-RESUME [service]   ends the pause or the drain; its queue dispatches
//
// A service's pause and drain are journaled with its record, so a restart
// keeps them. A worker's drain is not: it ends with its connection, which
// a broker restart ends too. Jobs a worker already holds (the running one
// and its prefetched ones) run to their end in every case.

// stopped reports whether s dispatches nothing: it is paused or draining.
func (s *service) stopped() bool { return s.paused || s.draining }

// record is s's journal record.
func (s *service) record() ServiceRecord {
	return ServiceRecord{Name: s.name, FirstSeen: s.firstSeen, Paused: s.paused, Draining: s.draining}
}

// markService has s's record journaled in the next batch, as it stands.
func (b *Broker) markService(s *service) {
	if !b.cfg.Durable {
		return
	}
	if i := slices.IndexFunc(b.batch.Services, func(x ServiceRecord) bool { return x.Name == s.name }); i >= 0 {
		b.batch.Services[i] = s.record()
		return
	}
	b.batch.Services = append(b.batch.Services, s.record())
}

// servePause answers SERVER-PAUSE [service].
func (b *Broker) servePause(r request, body [][]byte) {
	s := b.namedService(r, body)
	if s == nil {
		return
	}
	if !s.paused {
		s.paused = true
		b.markService(s)
		b.log.Info().Str(keyService, s.name).Str(keyKey, b.keyName(r.user)).Int("queued", s.queue.Len()).Msg("service paused: its jobs queue, none is dispatched")
	}
	b.answer(r, mustJSON(s.info()))
}

// serveResume answers SERVER-RESUME [service]: the service dispatches
// again, and its workers still finishing their last job before they stop
// take jobs again, but those drained by their own identity (a worker's
// drain ends with its connection).
func (b *Broker) serveResume(now time.Time, r request, body [][]byte) {
	s := b.namedService(r, body)
	if s == nil {
		return
	}
	if s.stopped() {
		s.paused, s.draining = false, false
		b.markService(s)
		for _, w := range b.workersWhere(func(w *worker) bool { return w.svc == s && w.stop && !w.ownDrain }) {
			b.undrain(w)
		}
		b.log.Info().Str(keyService, s.name).Str(keyKey, b.keyName(r.user)).Int("queued", s.queue.Len()).Msg("service resumed")
		b.dispatch(now, s)
	}
	b.answer(r, mustJSON(s.info()))
}

// serveDrain answers SERVER-DRAIN [service or worker identity]. A name
// that is both is the service.
func (b *Broker) serveDrain(now time.Time, r request, body [][]byte) {
	if len(body) == 0 || len(body[0]) == 0 {
		b.refuse(r, protocol.CodeBadRequest, "SERVER-DRAIN needs a frame: a service name, or a worker's identity as SERVER-WORKERS shows it")
		return
	}
	name := string(body[0])
	if s := b.services[name]; s != nil {
		if !s.draining {
			s.draining = true
			b.markService(s)
			b.log.Info().Str(keyService, s.name).Str(keyKey, b.keyName(r.user)).Int("workers", s.workers).Msg("service draining: no new jobs, its workers stop once idle")
			for _, w := range b.workersWhere(func(w *worker) bool { return w.svc == s }) {
				b.drainWorker(now, w)
			}
		}
		b.answer(r, mustJSON(s.info()))
		return
	}
	var drained []protocol.WorkerInfo
	for _, w := range b.workersWhere(func(w *worker) bool {
		return hexID(w.id) == name || w.details != nil && w.details.Host != "" && fmt.Sprintf("%s:%d", w.details.Host, w.details.PID) == name
	}) {
		drained = append(drained, w.info()) // before it may be gone
		b.log.Info().Str(keyWorker, hexID(w.id)).Str(keyService, w.svc.name).Str(keyKey, b.keyName(r.user)).Int("jobs", len(w.jobs)).Msg("worker draining: no new jobs, it stops once idle")
		w.ownDrain = true
		b.drainWorker(now, w)
	}
	if len(drained) == 0 {
		b.refuse(r, protocol.CodeNotFound, "no service, no live worker and no HOST:PID is called "+printable(body[0])+" (zmws services and zmws workers list them)")
		return
	}
	sortWorkers(drained)
	for i := range drained {
		drained[i].Draining = true
	}
	b.answer(r, mustJSON(drained))
}

// workersWhere returns the live workers that match, in routing-id order
// (not the map's), so what is done to them, and the next dispatch after,
// depend on the input alone.
func (b *Broker) workersWhere(match func(*worker) bool) []*worker {
	var ws []*worker
	for _, w := range b.workers {
		if match(w) {
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(x, y *worker) int { return strings.Compare(x.id, y.id) })
	return ws
}

// namedService returns the service body names, or nil when it names none
// (refused).
func (b *Broker) namedService(r request, body [][]byte) *service {
	if len(body) == 0 || len(body[0]) == 0 {
		b.refuse(r, protocol.CodeBadRequest, r.service+" needs a service name frame")
		return nil
	}
	s := b.services[string(body[0])]
	if s == nil {
		b.refuse(r, protocol.CodeNotFound, "no service "+printable(body[0])+" is known")
	}
	return s
}

// drainWorker gives w no new job, and tells it to stop now if it holds
// none, else when its last one ends (release).
func (b *Broker) drainWorker(now time.Time, w *worker) {
	if w.stop {
		return
	}
	w.stop = true
	b.moveWorker(w, workerDraining)
	if len(w.jobs) == 0 {
		b.stopDrained(now, w)
	}
}

// undrain takes w, drained with its service, back into service.
func (b *Broker) undrain(w *worker) {
	w.stop = false
	b.moveWorker(w, w.loaded())
}

// stopDrained tells drained worker w, which holds no job, to stop, and
// forgets it.
func (b *Broker) stopDrained(now time.Time, w *worker) {
	b.refuseWorker(w.id, w.form, protocol.CodeDrained, fmt.Sprintf("drained by an operator (service %s): stop", w.svc.name))
	b.log.Info().Str(keyWorker, hexID(w.id)).Str(keyService, w.svc.name).Msg("drained worker told to stop")
	b.dropWorker(now, w, protocol.GoneDrained, "drained")
}

// refuseDrained tells a worker that says READY for draining service s to
// stop.
func (b *Broker) refuseDrained(id string, form protocol.Form, s *service) {
	b.log.Info().Str(keyWorker, hexID(id)).Str(keyService, s.name).Msg("worker refused: its service is draining")
	b.refuseWorker(id, form, protocol.CodeDrained, "service "+s.name+" is draining (SERVER-RESUME ends it): stop")
}
