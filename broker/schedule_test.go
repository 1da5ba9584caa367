package broker_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// scheduled is a durable broker with the schedules ss, a heartbeat long
// enough to stay out of the way, and service S known (a worker offered it
// once, then left), so the jobs its ticks make stay queued.
func scheduled(t *testing.T, ss ...broker.Schedule) *broker.Broker {
	t.Helper()
	if err := broker.CheckSchedules(ss); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour, Schedules: ss})
	b.HandleWorker(t0, "w0", "", readyZ("S"))
	b.HandleWorker(t0, "w0", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	b.Flush()
	b.Committed()
	return b
}

func every1s(name, service string) broker.Schedule {
	return broker.Schedule{Name: name, Spec: "@every 1s", Service: service}
}

func schedInfo(t *testing.T, b *broker.Broker, name string) protocol.ScheduleInfo {
	t.Helper()
	for _, s := range b.Schedules() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no schedule %q in %+v", name, b.Schedules())
	return protocol.ScheduleInfo{}
}

func queued(b *broker.Broker, service string) int {
	for _, q := range b.Queue() {
		if q.Service == service {
			return q.Queued
		}
	}
	return 0
}

func TestBroker_ScheduleFiresAtItsTickNotBefore(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour, Schedules: []broker.Schedule{
		{Name: "s", Spec: "@every 1s", Service: "S", Params: map[string]string{"p": "v"}, Input: []byte("in")},
	}})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Flush()
	b.Committed()
	b.Tick(t0) // plans the first tick: one second after t0
	if d := b.Deadline(); !d.Equal(at(time.Second)) {
		t.Fatalf("deadline %v, want the tick at %v", d, at(time.Second))
	}
	none(t, b.Tick(at(time.Second-time.Millisecond)), protocol.ToWorker)
	if b.Pending() {
		t.Fatal("a record 1 ms before the tick")
	}
	id, md, body := dispatched(t, one(t, b.Tick(at(time.Second)), protocol.ToWorker, "w1"))
	if md.Params["p"] != "v" || len(body) != 1 || string(body[0]) != "in" {
		t.Fatalf("the tick's job has params %v and input %q, want the schedule's", md.Params, body)
	}
	batch := b.Flush()
	if len(batch.Jobs) != 1 || batch.Jobs[0].ID != id {
		t.Fatalf("batch jobs %+v, want the tick's job %s", batch.Jobs, id)
	}
	want := broker.ScheduleRecord{Name: "s", LastTick: at(time.Second), LastJob: id}
	if len(batch.Schedules) != 1 || batch.Schedules[0] != want {
		t.Fatalf("batch schedules %+v, want %+v in the batch of its job", batch.Schedules, want)
	}
	b.Committed()
	info := schedInfo(t, b, "s")
	if !info.Next.Equal(at(2*time.Second)) || info.LastJob != id || info.Fired != 1 || info.CatchUp != protocol.CatchUpOne {
		t.Fatalf("SERVER-SCHEDULES entry %+v", info)
	}
	if d := b.Deadline(); !d.Equal(at(2 * time.Second)) {
		t.Fatalf("deadline %v, want the next tick", d)
	}
}

func TestBroker_ScheduleEverySecondForTenSecondsMakesTenJobs(t *testing.T) {
	b := scheduled(t, every1s("s", "S"))
	b.Tick(t0)
	end := at(10 * time.Second)
	// The loop as the server runs it: Tick at each deadline, and now and
	// then between them.
	for now := t0; !now.After(end); {
		b.Tick(now)
		next := b.Deadline()
		if step := now.Add(300 * time.Millisecond); step.Before(next) {
			next = step
		}
		now = next
	}
	if n := queued(b, "S"); n != 10 {
		t.Fatalf("%d jobs queued over 10 s of @every 1s, want 10", n)
	}
	if info := schedInfo(t, b, "s"); info.Fired != 10 || info.Missed != 0 || !info.LastTick.Equal(end) {
		t.Fatalf("schedule %+v", info)
	}
}

func TestBroker_ScheduleWithSecondsField(t *testing.T) {
	b := scheduled(t, broker.Schedule{Name: "even", Spec: "CRON_TZ=UTC */2 * * * * *", Service: "S"})
	b.Tick(t0) // t0 is an even second
	if d := b.Deadline(); !d.Equal(at(2 * time.Second)) {
		t.Fatalf("deadline %v, want %v", d, at(2*time.Second))
	}
	b.Tick(at(time.Second))
	b.Tick(at(2 * time.Second))
	if n := queued(b, "S"); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
}

// The catch-up rules, at a restart 10 s after the last tick the journal
// kept: ticks t0-9s ... t0 are due at once.
func TestBroker_ScheduleRestoreAppliesCatchUpRule(t *testing.T) {
	for _, c := range []struct {
		rule         string
		downFor      time.Duration
		jobs, missed int
		lastTick     time.Time
	}{
		{protocol.CatchUpOne, 10 * time.Second, 1, 9, t0},
		{"", 10 * time.Second, 1, 9, t0}, // the default
		{protocol.CatchUpAll, 10 * time.Second, 10, 0, t0},
		{protocol.CatchUpAll, 150 * time.Second, protocol.MaxCatchUp, 150 - protocol.MaxCatchUp, t0},
		{protocol.CatchUpNone, 10 * time.Second, 0, 10, t0.Add(-10 * time.Second)},
		// Down for less than a period: nothing missed, the next tick on time.
		{protocol.CatchUpOne, 0, 0, 0, t0},
		{protocol.CatchUpNone, 0, 0, 0, t0},
	} {
		t.Run(c.rule+"/"+c.downFor.String(), func(t *testing.T) {
			s := every1s("s", "S")
			s.CatchUp = c.rule
			b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour, Schedules: []broker.Schedule{s}})
			last := t0.Add(-c.downFor)
			b.Restore(t0.Add(300*time.Millisecond), broker.Snapshot{
				Services:  []broker.ServiceRecord{{Name: "S", FirstSeen: last}},
				Schedules: []broker.ScheduleRecord{{Name: "s", LastTick: last, LastJob: "01JQ0000000000000000000001"}},
			})
			now := t0.Add(300 * time.Millisecond)
			b.Tick(now)
			if n := queued(b, "S"); n != c.jobs {
				t.Fatalf("%d jobs after the restart, want %d", n, c.jobs)
			}
			info := schedInfo(t, b, "s")
			if info.Missed != uint64(c.missed) || !info.LastTick.Equal(c.lastTick) || !info.Next.Equal(at(time.Second)) {
				t.Fatalf("schedule %+v: want %d missed, last tick %v, next %v", info, c.missed, c.lastTick, at(time.Second))
			}
			batch := b.Flush()
			if len(batch.Jobs) != c.jobs {
				t.Fatalf("%d job records, want %d", len(batch.Jobs), c.jobs)
			}
			if c.jobs > 0 && (len(batch.Schedules) != 1 || !batch.Schedules[0].LastTick.Equal(t0)) {
				t.Fatalf("schedule records %+v, want the last tick t0 with its jobs", batch.Schedules)
			}
			b.Committed()
			// Then on schedule: one job at the next tick.
			b.Tick(at(time.Second))
			if n := queued(b, "S"); n != c.jobs+1 {
				t.Fatalf("%d jobs after the next tick, want %d", n, c.jobs+1)
			}
		})
	}
}

// A tick recorded in the journal is not fired again: a restart right after
// a commit makes no job for it.
func TestBroker_ScheduleCommittedTickNotFiredAgain(t *testing.T) {
	b := scheduled(t, every1s("s", "S"))
	b.Tick(t0)
	b.Tick(at(time.Second))
	batch := b.Flush()
	recs := append([]broker.ScheduleRecord(nil), batch.Schedules...)
	b.Committed()

	b2 := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour, Schedules: []broker.Schedule{every1s("s", "S")}})
	b2.Restore(at(time.Second+5*time.Millisecond), broker.Snapshot{Services: []broker.ServiceRecord{{Name: "S", FirstSeen: t0}}, Schedules: recs})
	b2.Tick(at(time.Second + 5*time.Millisecond))
	if n := queued(b2, "S"); n != 0 {
		t.Fatalf("%d jobs after a restart right after the tick's commit, want 0 (it was fired)", n)
	}
	b2.Tick(at(2 * time.Second))
	if n := queued(b2, "S"); n != 1 {
		t.Fatalf("%d jobs at the next tick, want 1", n)
	}
}

func TestBroker_ScheduleUnknownServiceSkipped(t *testing.T) {
	b := scheduled(t, every1s("s", "nosuch"))
	b.Tick(t0)
	out := b.Tick(at(time.Second))
	none(t, out, protocol.ToWorker)
	info := schedInfo(t, b, "s")
	if info.Skipped != 1 || info.Fired != 0 || info.LastJob != "" || !info.LastTick.Equal(at(time.Second)) {
		t.Fatalf("schedule %+v: want one tick skipped", info)
	}
	batch := b.Flush()
	if len(batch.Jobs) != 0 || len(batch.Schedules) != 1 {
		t.Fatalf("batch %+v: want the skipped tick's record and no job", batch)
	}
	// Once a worker offers it, the next tick makes a job.
	b.HandleWorker(at(1500*time.Millisecond), "w", "", readyZ("nosuch"))
	one(t, b.Tick(at(2*time.Second)), protocol.ToWorker, "w")
}

func TestBroker_ScheduleRecordOfUndeclaredScheduleDeleted(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour})
	b.Restore(t0, broker.Snapshot{Schedules: []broker.ScheduleRecord{{Name: "gone", LastTick: t0}}})
	batch := b.Flush()
	if len(batch.Schedules) != 1 || batch.Schedules[0] != (broker.ScheduleRecord{Name: "gone"}) {
		t.Fatalf("schedule records %+v, want the delete of gone's", batch.Schedules)
	}
}

func TestBroker_ScheduleRecordAgainAfterFailedCommit(t *testing.T) {
	b := scheduled(t, every1s("s", "S"))
	b.Tick(t0)
	b.Tick(at(time.Second))
	if batch := b.Flush(); len(batch.Schedules) != 1 {
		t.Fatalf("schedule records %+v", batch.Schedules)
	}
	b.Rejected(at(time.Second), errors.New("disk full"))
	if !b.Pending() {
		t.Fatal("nothing pending after a failed commit of a tick's record")
	}
	batch := b.Flush()
	if len(batch.Schedules) != 1 || !batch.Schedules[0].LastTick.Equal(at(time.Second)) {
		t.Fatalf("schedule records %+v, want the tick's again", batch.Schedules)
	}
	// And its job with it: a record of the tick without its job would
	// lose the tick in a crash.
	if len(batch.Jobs) != 1 || batch.Jobs[0].ID != batch.Schedules[0].LastJob {
		t.Fatalf("job records %+v, want the tick's job %s again", batch.Jobs, batch.Schedules[0].LastJob)
	}
}

func TestBroker_ServerSchedulesQuery(t *testing.T) {
	b := scheduled(t, every1s("b", "S"), broker.Schedule{Name: "a", Spec: "CRON_TZ=UTC 0 3 * * *", Service: "S", CatchUp: protocol.CatchUpAll})
	b.Tick(t0)
	_, _, rest := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerSchedules, nil)), protocol.ToClient, "c"))
	var got []protocol.ScheduleInfo
	if err := json.Unmarshal(rest[0], &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Fatalf("SERVER-SCHEDULES %+v, want a then b", got)
	}
	if want := time.Date(1970, 1, 1, 3, 0, 0, 0, time.UTC); !got[0].Next.Equal(want) || got[0].CatchUp != protocol.CatchUpAll || got[0].Spec != "CRON_TZ=UTC 0 3 * * *" {
		t.Fatalf("a: %+v, want next %v", got[0], want)
	}
}

func TestCheckSchedules_NamesTheScheduleAndSpec(t *testing.T) {
	for _, c := range []struct {
		s    []broker.Schedule
		want string
	}{
		{[]broker.Schedule{{Name: "nightly", Spec: "0 3 * *", Service: "S"}}, `schedule "nightly": cron spec "0 3 * *"`},
		{[]broker.Schedule{{Name: "n", Spec: "@every -1s", Service: "S"}}, `schedule "n": cron spec "@every -1s"`},
		{[]broker.Schedule{{Name: "n", Spec: "CRON_TZ=Nowhere/Land 0 3 * * *", Service: "S"}}, `schedule "n": cron spec "CRON_TZ=Nowhere/Land 0 3 * * *"`},
		{[]broker.Schedule{{Name: "n", Spec: "", Service: "S"}}, `schedule "n": cron spec ""`},
		{[]broker.Schedule{{Spec: "@hourly", Service: "S"}}, `a schedule has no name`},
		{[]broker.Schedule{{Name: "n", Spec: "@hourly"}}, `schedule "n": no service`},
		{[]broker.Schedule{{Name: "n", Spec: "@hourly", Service: "SYNC-S"}}, `schedule "n": service SYNC-S`},
		{[]broker.Schedule{{Name: "n", Spec: "@hourly", Service: "S", CatchUp: "some"}}, `schedule "n": catch_up "some"`},
		{[]broker.Schedule{every1s("n", "S"), every1s("n", "T")}, `schedule "n" is declared twice`},
	} {
		err := broker.CheckSchedules(c.s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckSchedules(%+v) = %v, want an error with %q", c.s, err, c.want)
		}
	}
	if err := broker.CheckSchedules([]broker.Schedule{every1s("a", "S"), {Name: "b", Spec: "*/5 * * * * *", Service: "S"}, {Name: "c", Spec: "TZ=Europe/Paris 0 3 * * 1-5", Service: "S"}}); err != nil {
		t.Fatal(err)
	}
}

func TestParseSchedule(t *testing.T) {
	s, err := broker.ParseSchedule("nightly=CRON_TZ=UTC 0 3 * * *=backup")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "nightly" || s.Spec != "CRON_TZ=UTC 0 3 * * *" || s.Service != "backup" {
		t.Fatalf("%+v", s)
	}
	for _, bad := range []string{"nightly", "nightly=@hourly", "nightly=0 3 * *=backup", "=@hourly=S"} {
		if _, err := broker.ParseSchedule(bad); err == nil {
			t.Errorf("ParseSchedule(%q): no error", bad)
		}
	}
}

func TestBroker_ScheduleJobAnnouncedQueued(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Events: true, Heartbeat: time.Hour, Schedules: []broker.Schedule{every1s("s", "S")}})
	b.HandleWorker(t0, "w0", "", readyZ("S"))
	b.HandleWorker(t0, "w0", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	b.Tick(t0)
	ev := one(t, b.Tick(at(time.Second)), protocol.ToEvents, protocol.EventQueued)
	var e protocol.Event
	if err := json.Unmarshal(ev.Frames[0], &e); err != nil || e.Service != "S" || !e.Time.Equal(at(time.Second)) {
		t.Fatalf("queued event %s (%v)", ev.Frames[0], err)
	}
	if info := schedInfo(t, b, "s"); e.Job != info.LastJob {
		t.Fatalf("event for job %s, the tick's is %s", e.Job, info.LastJob)
	}
}

// After a long outage the due ticks are not walked one by one past a
// bound: one job still goes to the newest tick, and the missed count is a
// lower bound.
func TestBroker_ScheduleLongOutage(t *testing.T) {
	for _, rule := range []string{protocol.CatchUpOne, protocol.CatchUpAll} {
		s := every1s("s", "S")
		s.CatchUp = rule
		b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour, Schedules: []broker.Schedule{s}})
		b.Restore(t0, broker.Snapshot{
			Services:  []broker.ServiceRecord{{Name: "S", FirstSeen: t0}},
			Schedules: []broker.ScheduleRecord{{Name: "s", LastTick: t0.Add(-30 * 24 * time.Hour)}},
		})
		b.Tick(t0)
		want := 1
		if rule == protocol.CatchUpAll {
			want = protocol.MaxCatchUp
		}
		info := schedInfo(t, b, "s")
		if n := queued(b, "S"); n != want || !info.LastTick.Equal(t0) || info.Missed < 86400 {
			t.Fatalf("%s after 30 days down: %d jobs, schedule %+v; want %d, the last tick t0, at least a day missed", rule, n, info, want)
		}
	}
}
