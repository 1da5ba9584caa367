package broker

import (
	"slices"
	"strings"
	"time"

	"github.com/zmws/zmws/protocol"
)

// The broker's own counts for monitoring (Config.Stats): plain counters and
// histogram buckets per service, kept by the loop goroutine as jobs move
// and read by it (Stats) when someone asks, so that counting costs a few
// increments per job and no lock. The server turns them into Prometheus
// metrics; the broker knows nothing of Prometheus.

// jobBounds are the upper bounds of the buckets of the job duration and
// queue wait histograms: 1 ms to an hour.
var jobBounds = [...]time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour,
}

// JobBuckets returns the upper bounds of the buckets of ServiceStats'
// Duration and Wait histograms, in increasing order.
func JobBuckets() []time.Duration { return jobBounds[:] }

// Histogram counts durations in buckets. Bounds are the buckets' upper
// bounds (inclusive), in increasing order; Counts has one count per bound,
// not cumulative, and one more for durations past the last bound. The zero
// Histogram has one bucket, for every duration.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Sum    time.Duration
	Count  uint64
}

// NewHistogram returns an empty Histogram with these bucket bounds, which
// it keeps (the caller must not change them).
func NewHistogram(bounds []time.Duration) Histogram {
	return Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
}

// Observe counts d in its bucket.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(h.Bounds) && d > h.Bounds[i] {
		i++
	}
	if h.Counts == nil {
		h.Counts = make([]uint64, len(h.Bounds)+1)
	}
	h.Counts[i]++
	h.Sum += d
	h.Count++
}

// Clone returns a copy of h that shares no counts with it.
func (h Histogram) Clone() Histogram {
	h.Counts = slices.Clone(h.Counts)
	return h
}

// CodeCount is how many jobs of a service ended (or were refused) with an
// error code.
type CodeCount struct {
	Code string
	N    uint64
}

// codeCounts counts by code. Codes are the broker's own constants
// (protocol.Code*), a handful, so a slice searched in order is the
// cheapest map.
type codeCounts []CodeCount

func (cs *codeCounts) add(code string) {
	for i := range *cs {
		if (*cs)[i].Code == code {
			(*cs)[i].N++
			return
		}
	}
	*cs = append(*cs, CodeCount{Code: code, N: 1})
}

// svcStats is what the broker counts of one service while it runs (not
// journaled: the counts start at zero with the broker).
type svcStats struct {
	submitted uint64 // jobs accepted (async and sync)
	completed uint64
	requeued  uint64 // jobs queued again: worker lost, time-to-run, retry, not started
	failed    codeCounts
	refused   codeCounts
	duration  Histogram // a finished run: dispatch to its end
	wait      Histogram // submission to first dispatch
}

func newSvcStats() *svcStats {
	return &svcStats{duration: NewHistogram(jobBounds[:]), wait: NewHistogram(jobBounds[:])}
}

// UnknownService is the service name under which Stats counts refusals
// that named no known service (unknown_service, or forbidden by a key for
// a name the broker does not know): their names are the callers' choice,
// and would make the metrics' labels unbounded.
const UnknownService = "_unknown"

// ServiceStats is a service's counts and gauges, as Stats reports them.
type ServiceStats struct {
	Name      string
	FirstSeen time.Time
	// Submitted counts jobs accepted; Completed and Failed (by code) the
	// jobs that finished so; Requeued the times a job was queued again;
	// Refused (by code) the submissions refused. All since the broker
	// started.
	Submitted uint64
	Completed uint64
	Requeued  uint64
	Failed    []CodeCount
	Refused   []CodeCount
	// Queued and Active are the jobs waiting and running now, Scheduled
	// those waiting for their time (a delay); Idle and Busy the live
	// workers without and with a job.
	Queued, Active, Scheduled, Idle, Busy int
	// Paused and Draining: an operator stopped its dispatch (SERVER-PAUSE,
	// SERVER-DRAIN). Summed, they count services.
	Paused, Draining int
	// Duration is the time finished runs took, from dispatch to their
	// end; Wait the time jobs waited from submission to their first
	// dispatch.
	Duration Histogram
	Wait     Histogram
}

// Stats is a snapshot of the broker's counts (Config.Stats).
type Stats struct {
	// Services holds every known service, by name, then UnknownService
	// when a refusal was counted under it.
	Services []ServiceStats
	// Workers is the number of live workers; Jobs the jobs the broker
	// holds in memory (queued, active and retained finished ones).
	Workers int
	Jobs    int
	// Schedules are the recurring schedules and their tick counts.
	Schedules []protocol.ScheduleInfo
}

// Stats returns a copy of the broker's counts: zero counts unless
// Config.Stats is set (the gauges are filled in either way). It costs a
// walk over the services; the server calls it when metrics are scraped.
func (b *Broker) Stats() Stats {
	st := Stats{Services: make([]ServiceStats, 0, len(b.services)+1), Workers: len(b.workers), Jobs: b.jobs.len()}
	for _, s := range b.services {
		ss := ServiceStats{Name: s.name, FirstSeen: s.firstSeen, Queued: s.queue.Len(), Active: s.active, Scheduled: s.scheduled,
			Idle: len(s.idle), Busy: s.workers - len(s.idle)}
		if s.paused {
			ss.Paused = 1
		}
		if s.draining {
			ss.Draining = 1
		}
		if x := s.stats; x != nil {
			ss.Submitted, ss.Completed, ss.Requeued = x.submitted, x.completed, x.requeued
			ss.Failed, ss.Refused = slices.Clone(x.failed), slices.Clone(x.refused)
			ss.Duration, ss.Wait = x.duration.Clone(), x.wait.Clone()
		}
		st.Services = append(st.Services, ss)
	}
	slices.SortFunc(st.Services, func(a, b ServiceStats) int { return strings.Compare(a.Name, b.Name) })
	if len(b.unknownRefused) > 0 {
		st.Services = append(st.Services, ServiceStats{Name: UnknownService, Refused: slices.Clone(b.unknownRefused)})
	}
	if len(b.scheds) > 0 {
		st.Schedules = b.Schedules()
	}
	return st
}

// statsOf returns s's counts, making them if Config.Stats is set; nil
// otherwise.
func (b *Broker) statsOf(s *service) *svcStats {
	if s.stats == nil && b.cfg.Stats {
		s.stats = newSvcStats()
	}
	return s.stats
}

// countRefused counts a refused submission for the service name.
func (b *Broker) countRefused(name, code string) {
	if !b.cfg.Stats {
		return
	}
	if s := b.services[name]; s != nil {
		b.statsOf(s).refused.add(code)
		return
	}
	b.unknownRefused.add(code)
}

// countRequeued counts j queued again.
func (b *Broker) countRequeued(j *job) {
	if x := b.statsOf(j.svc); x != nil {
		x.requeued++
	}
}

// countFinished counts j, which finished now in state.
func (b *Broker) countFinished(now time.Time, j *job, state jobState, r *run) {
	x := b.statsOf(j.svc)
	if x == nil {
		return
	}
	if state == stateComplete {
		x.completed++
	} else {
		x.failed.add(cmpCode(r.code))
	}
	if !r.started.IsZero() {
		x.duration.Observe(now.Sub(r.started))
	}
}

// cmpCode is the code a failed job is counted under.
func cmpCode(code string) string {
	if code == "" {
		return protocol.CodeJobFailed
	}
	return code
}
