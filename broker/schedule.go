package broker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/zmws/zmws/protocol"
)

// Recurring schedules. The operator declares them (Config.Schedules); the
// broker fires them from Tick, at the times the loop passes in: it has no
// clock of its own, and Deadline includes the next tick, so a tick's job
// is made as soon as the loop wakes at or after the tick, never before.
//
// Each tick makes one async job of the schedule's service, with its params
// and input, as a submission would (journaled, a queued event). With
// Config.Durable, the tick is recorded (ScheduleRecord) in the batch that
// holds its job: both are committed, or neither, so a restart neither
// fires a committed tick again nor forgets one whose job is in the journal.
// A tick whose batch a crash lost counts as not fired: the catch-up rule
// then fires it, like a tick missed while the broker was down.
//
// The catch-up rule (Schedule.CatchUp) says what happens when several
// ticks are due at one Tick: after a restart, the ticks since the last one
// recorded; while running, the ticks of a stalled loop or a suspended
// machine:
//
//   - protocol.CatchUpOne (the default): one job, for the newest of them;
//     the others count as missed.
//   - protocol.CatchUpAll: a job for each, oldest first, up to the newest
//     protocol.MaxCatchUp; older ones count as missed.
//   - protocol.CatchUpNone: as CatchUpOne while running, but the ticks
//     that fell while the broker was down make no job at all: it takes up
//     its schedule from its start.
//
// A tick whose service no worker ever offered (or whose queue is full)
// makes no job: it is logged with the schedule's name and counted as
// skipped, and recorded as its last tick like any other.

// keySchedule is the log field of a schedule's name.
const keySchedule = "schedule"

// Schedule is a recurring job the operator declares.
type Schedule struct {
	Name    string // unique; the journal keeps its last tick under it
	Spec    string // a cron spec (ParseSpec)
	Service string // the service its jobs go to
	Params  map[string]string
	Input   []byte // the job's input: one frame (nil: none)
	// CatchUp is protocol.CatchUpOne (or ""), CatchUpNone or CatchUpAll.
	CatchUp string
}

// specParser reads cron specs: five fields (minute hour day-of-month month
// day-of-week), or six with seconds first, or a descriptor (@hourly,
// @every 10s, ...); a CRON_TZ=ZONE or TZ=ZONE prefix sets the zone, else
// the host's local zone is used.
var specParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSpec reads a cron spec; its Next(t) is the first tick after t.
// @every takes a whole number of seconds, at least one (the parser would
// round anything else without a word).
func ParseSpec(spec string) (cron.Schedule, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("empty cron spec")
	}
	rest := strings.TrimSpace(spec)
	if strings.HasPrefix(rest, "CRON_TZ=") || strings.HasPrefix(rest, "TZ=") {
		_, rest, _ = strings.Cut(rest, " ")
		rest = strings.TrimSpace(rest)
	}
	if d, ok := strings.CutPrefix(rest, "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err == nil && (every < time.Second || every%time.Second != 0) {
			return nil, fmt.Errorf("@every %v: want a whole number of seconds, at least 1s", every)
		}
	}
	return specParser.Parse(spec)
}

// ParseSchedule reads a --schedule value: NAME=SPEC=SERVICE. The spec may
// hold = itself (CRON_TZ=Europe/Paris 0 3 * * *): the name ends at the
// first =, the service starts after the last. The value is checked as
// CheckSchedules does.
func ParseSchedule(s string) (Schedule, error) {
	name, rest, ok := strings.Cut(s, "=")
	i := strings.LastIndexByte(rest, '=')
	if !ok || i < 0 {
		return Schedule{}, fmt.Errorf("%q: want NAME=CRONSPEC=SERVICE, like nightly=0 3 * * *=backup", s)
	}
	sc := Schedule{Name: strings.TrimSpace(name), Spec: strings.TrimSpace(rest[:i]), Service: strings.TrimSpace(rest[i+1:])}
	return sc, sc.Check()
}

// Check reports what is wrong with s, naming it and, for a bad spec, the
// spec.
func (s Schedule) Check() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("a schedule has no name (its spec is %q)", s.Spec)
	case s.Service == "":
		return fmt.Errorf("schedule %q: no service", s.Name)
	case strings.HasPrefix(s.Service, protocol.ServerPrefix) || strings.HasPrefix(s.Service, protocol.MMIPrefix):
		return fmt.Errorf("schedule %q: service %s is the broker's own", s.Name, s.Service)
	}
	if name, sync := protocol.SplitSync(s.Service); sync {
		return fmt.Errorf("schedule %q: service %s: a schedule makes async jobs, name the service (%s)", s.Name, s.Service, name)
	}
	if _, err := ParseSpec(s.Spec); err != nil {
		return fmt.Errorf("schedule %q: cron spec %q: %w", s.Name, s.Spec, err)
	}
	switch s.CatchUp {
	case "", protocol.CatchUpOne, protocol.CatchUpNone, protocol.CatchUpAll:
	default:
		return fmt.Errorf("schedule %q: catch_up %q: want %s, %s or %s", s.Name, s.CatchUp, protocol.CatchUpOne, protocol.CatchUpNone, protocol.CatchUpAll)
	}
	if err := protocol.CheckParamNames(s.Params); err != nil {
		return fmt.Errorf("schedule %q: params: %w", s.Name, err)
	}
	return nil
}

// CheckSchedules checks each schedule and that no two share a name.
func CheckSchedules(ss []Schedule) error {
	seen := make(map[string]bool, len(ss))
	var errs []error
	for _, s := range ss {
		if err := s.Check(); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("schedule %q is declared twice", s.Name))
		}
		seen[s.Name] = true
	}
	return errors.Join(errs...)
}

// schedule is a declared Schedule as the broker runs it.
type schedule struct {
	Schedule
	every   cron.Schedule
	next    time.Time // the next tick; zero until planned
	last    time.Time // the last tick fired or skipped (journaled)
	lastJob string    // the ID of the last tick's job, or ""
	// restored: a last tick came from the journal, so the first plan
	// applies the catch-up rule to the ticks since.
	restored bool
	planned  bool // next was set (zero: no tick within cron's five years)
	dirty    bool // its record waits for the next Flush (in Broker.dirtyScheds)

	fired, skipped, missed uint64
}

// newSchedules parses cfg's schedules; one that does not parse is logged
// and left out (the server checks them first: CheckSchedules).
func (b *Broker) newSchedules(ss []Schedule) {
	for _, s := range ss {
		if err := s.Check(); err != nil {
			b.log.Error().Err(err).Msg("schedule left out")
			continue
		}
		if slices.ContainsFunc(b.scheds, func(x *schedule) bool { return x.Name == s.Name }) {
			b.log.Error().Str(keySchedule, s.Name).Msg("schedule declared twice: the second left out")
			continue
		}
		every, _ := ParseSpec(s.Spec)
		if s.CatchUp == "" {
			s.CatchUp = protocol.CatchUpOne
		}
		b.scheds = append(b.scheds, &schedule{Schedule: s, every: every})
	}
	slices.SortFunc(b.scheds, func(x, y *schedule) int { return strings.Compare(x.Name, y.Name) })
}

// restoreSchedules takes the last ticks the journal kept. A record of a
// schedule no longer declared is deleted (its zero record in the next
// batch), so a schedule declared again later starts afresh.
func (b *Broker) restoreSchedules(recs []ScheduleRecord) {
	for _, rec := range recs {
		i := slices.IndexFunc(b.scheds, func(s *schedule) bool { return s.Name == rec.Name })
		if i < 0 {
			b.log.Info().Str(keySchedule, rec.Name).Msg("the journal's record of a schedule no longer declared is deleted")
			if b.cfg.Durable {
				b.batch.Schedules = append(b.batch.Schedules, ScheduleRecord{Name: rec.Name})
			}
			continue
		}
		s := b.scheds[i]
		s.last, s.lastJob, s.restored = rec.LastTick, rec.LastJob, !rec.LastTick.IsZero()
	}
}

// scanLimit bounds the due ticks counted one by one at one Tick: past it
// the count goes on from a day before now (a broker down for a year with
// an @every 1s schedule does not walk 31 million ticks).
const scanLimit = 100_000

// plan sets s's next tick, once, from now: the tick after its last
// recorded one, when the journal had one and the rule is not CatchUpNone
// (that tick may be past: due at once), else the tick after now. A last
// tick after now (the clock went back) counts as none.
func (s *schedule) plan(now time.Time) {
	if s.planned {
		return
	}
	s.planned = true
	if s.restored && !s.last.After(now) {
		t := s.every.Next(s.last)
		if s.CatchUp != protocol.CatchUpNone || t.After(now) {
			s.next = t
			return
		}
		s.missed += countDue(s.every, t, now)
	}
	s.restored = false
	s.next = s.every.Next(now)
}

// countDue counts the ticks from t (a tick) to now, inclusive, up to
// scanLimit.
func countDue(every cron.Schedule, t, now time.Time) uint64 {
	var n uint64
	for ; !t.IsZero() && !t.After(now) && n < scanLimit; t = every.Next(t) {
		n++
	}
	return n
}

// due returns the newest keep ticks of s due by now (its next tick and
// those after it, up to now), oldest first, and how many older due ticks
// it passed over (a lower bound past scanLimit). s.next must be due.
func (s *schedule) due(now time.Time, keep int) (ticks []time.Time, passed uint64) {
	ring := make([]time.Time, 0, min(keep, 16))
	start, scanned := 0, 0
	for t := s.next; !t.IsZero() && !t.After(now); t = s.every.Next(t) {
		if scanned++; scanned == scanLimit {
			// Too many to walk: go on from a day before now; the ticks
			// jumped over are not counted.
			if j := s.every.Next(now.Add(-24 * time.Hour)); j.After(t) && !j.After(now) {
				t = j
			}
		}
		if len(ring) < keep {
			ring = append(ring, t)
			continue
		}
		ring[start] = t
		start = (start + 1) % keep
		passed++
	}
	return append(ring[start:len(ring):len(ring)], ring[:start]...), passed
}

// nextTick is the earliest planned tick of any schedule (zero: none).
func (b *Broker) nextTick() time.Time {
	var d time.Time
	for _, s := range b.scheds {
		if !s.next.IsZero() && (d.IsZero() || s.next.Before(d)) {
			d = s.next
		}
	}
	return d
}

// schedulesDue plans the schedules not yet planned and fires those due by
// now (from Tick).
func (b *Broker) schedulesDue(now time.Time) {
	for _, s := range b.scheds {
		s.plan(now)
		if s.next.IsZero() || s.next.After(now) {
			continue
		}
		keep := 1
		if s.CatchUp == protocol.CatchUpAll {
			keep = protocol.MaxCatchUp
		}
		ticks, passed := s.due(now, keep)
		if passed > 0 {
			s.missed += passed
			b.log.Warn().Str(keySchedule, s.Name).Str(keyService, s.Service).Uint64("missed", passed).
				Time("newest", ticks[len(ticks)-1]).Str("catch_up", s.CatchUp).Msg("schedule ticks missed")
		}
		for _, t := range ticks {
			b.fire(now, s, t)
		}
		s.next = s.every.Next(ticks[len(ticks)-1])
		s.restored = false
	}
	b.nextSched = b.nextTick()
}

// fire makes the job of s's tick at, or skips it, and records the tick.
func (b *Broker) fire(now time.Time, s *schedule, at time.Time) {
	s.last = at
	b.markSchedule(s)
	svc := b.services[s.Service]
	var why string
	switch {
	case svc == nil:
		why = "no worker has ever provided service " + s.Service
	case svc.queue.Len()+svc.scheduled >= b.cfg.MaxQueue: // as submitJob: scheduled jobs count
		why = fmt.Sprintf("queue for service %s is full (%d jobs)", s.Service, b.cfg.MaxQueue)
	}
	if why != "" {
		s.skipped++
		b.peerWarn("schedule skipped", s.Name).Str(keySchedule, s.Name).Str(keyService, s.Service).
			Time("tick", at).Str("reason", why).Msg("schedule tick skipped")
		return
	}
	j := &job{
		id:      b.newID(now),
		svc:     svc,
		params:  s.Params,
		created: stampOf(now),
	}
	if s.Input != nil {
		j.setInput([][]byte{s.Input})
	}
	j.ensureExtra().owner = b.intern("schedule:" + s.Name)
	b.jobs.put(j)
	b.moveJob(now, j, stateQueued)
	svc.queue.PushBack(j)
	if x := b.statsOf(svc); x != nil {
		x.submitted++
	}
	s.fired++
	s.lastJob = j.id.String()
	b.markDirty(j)
	if b.cfg.Durable {
		b.firedJobs = append(b.firedJobs, j)
	}
	if b.log.Debug().Enabled() {
		b.log.Debug().Str(keySchedule, s.Name).Str(keyJob, s.lastJob).Str(keyService, svc.name).
			Time("tick", at).Dur("late", now.Sub(at)).Msg("schedule fired")
	}
	b.event(now, protocol.EventQueued, j, nil)
	b.dispatch(now, svc)
}

// markSchedule queues s's record for the next batch.
func (b *Broker) markSchedule(s *schedule) {
	if !b.cfg.Durable || s.dirty {
		return
	}
	s.dirty = true
	b.dirtyScheds = append(b.dirtyScheds, s)
}

// flushSchedules adds the records of the schedules fired since the last
// Flush to out (from Flush).
func (b *Broker) flushSchedules(out *Batch) {
	for _, s := range b.dirtyScheds {
		s.dirty = false
		out.Schedules = append(out.Schedules, ScheduleRecord{Name: s.Name, LastTick: s.last, LastJob: s.lastJob})
	}
	clear(b.dirtyScheds)
	b.dirtyScheds = b.dirtyScheds[:0]
	clear(b.firedFlushed)
	b.firedFlushed, b.firedJobs = b.firedJobs, b.firedFlushed[:0]
}

// reflushSchedules puts the schedule records of a batch that failed to
// commit in the next one, as they stand now (from Rejected), with the
// jobs their ticks made that are still held: a tick is recorded with its
// job, or not at all.
func (b *Broker) reflushSchedules(failed *Batch) {
	for _, j := range b.firedFlushed {
		if b.jobs.get(j.id) == j {
			b.markDirty(j)
		}
	}
	clear(b.firedFlushed)
	b.firedFlushed = b.firedFlushed[:0]
	for _, rec := range failed.Schedules {
		i := slices.IndexFunc(b.scheds, func(s *schedule) bool { return s.Name == rec.Name })
		if i < 0 {
			if !slices.ContainsFunc(b.batch.Schedules, func(x ScheduleRecord) bool { return x.Name == rec.Name }) {
				b.batch.Schedules = append(b.batch.Schedules, rec) // a delete
			}
			continue
		}
		b.markSchedule(b.scheds[i])
	}
}

// Schedules describes every schedule, by name: SERVER-SCHEDULES.
func (b *Broker) Schedules() []protocol.ScheduleInfo {
	out := make([]protocol.ScheduleInfo, 0, len(b.scheds))
	for _, s := range b.scheds {
		out = append(out, protocol.ScheduleInfo{
			Name: s.Name, Spec: s.Spec, Service: s.Service, CatchUp: s.CatchUp,
			Next: s.next, LastTick: s.last, LastJob: s.lastJob,
			Fired: s.fired, Skipped: s.skipped, Missed: s.missed,
		})
	}
	return out
}
