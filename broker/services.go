package broker

import (
	"fmt"
	"time"

	"github.com/zmws/zmws/protocol"
)

// The registry of services is bounded (Config.MaxServices) and forgets a
// service no one uses (Config.ForgetAfter, or SERVER-FORGET): READYs with
// made-up names must not grow it, and its journal, for ever.

// busy says why s cannot be forgotten, or "" when nothing uses it: no
// worker, no queued, running or delayed job, and no operator's pause or
// drain (which would go with it). delayed counts s's jobs in the delayed
// heap (scheduled ones, and retries backing off); -1 has busy count them.
func (b *Broker) busy(s *service, delayed int) string {
	if delayed < 0 {
		delayed = 0
		for _, d := range b.delayed {
			if d.j.svc == s {
				delayed++
			}
		}
	}
	if s.workers > 0 || s.queue.Len() > 0 || s.active > 0 || delayed > 0 {
		return fmt.Sprintf("service %s has %d workers, %d queued, %d running and %d delayed jobs", s.name, s.workers, s.queue.Len(), s.active, delayed)
	}
	if s.paused || s.draining {
		return fmt.Sprintf("service %s is paused or draining (zmws resume %s first)", s.name, s.name)
	}
	return ""
}

// forgetService removes s from the registry, and from the journal.
func (b *Broker) forgetService(s *service, why string) {
	delete(b.services, s.name)
	if b.cfg.Durable {
		b.batch.Forgets = append(b.batch.Forgets, s.name)
	}
	b.log.Info().Str(keyService, s.name).Str("reason", why).Msg("service forgotten")
}

// forgetIdle forgets every service unused since ForgetAfter before now.
// The delayed heap is walked once for all of them, when one may go.
func (b *Broker) forgetIdle(now time.Time) {
	cutoff := now.Add(-b.cfg.ForgetAfter)
	var delayed map[*service]int
	for _, s := range b.services {
		if !s.lastSeen.Before(cutoff) || b.busy(s, 0) != "" {
			continue
		}
		if delayed == nil {
			delayed = make(map[*service]int)
			for _, d := range b.delayed {
				delayed[d.j.svc]++
			}
		}
		if delayed[s] == 0 {
			b.forgetService(s, "no worker and no job for "+b.cfg.ForgetAfter.String())
		}
	}
}

// serveForget answers SERVER-FORGET [name].
func (b *Broker) serveForget(r request, name string) {
	s := b.services[name]
	switch {
	case s == nil:
		b.refuse(r, protocol.CodeNotFound, "no service "+printable([]byte(name))+" is known")
	case b.busy(s, -1) != "":
		b.refuse(r, protocol.CodeConflict, b.busy(s, -1)+": it is not forgotten")
	default:
		b.forgetService(s, "asked by a client")
		b.answer(r, mustJSON(map[string]string{"forgotten": name}))
	}
}
