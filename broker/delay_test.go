package broker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
)

// A delayed job is scheduled: it is not dispatched 1 ms before its time,
// the broker's deadline is its time, and it is dispatched at it.
func TestBroker_DelayedJobRunsAtItsTimeNotBefore(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Tick(t0)
	id := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 1500})
	due := at(1500 * time.Millisecond)
	info, _ := b.Job(id)
	if info.State != protocol.JobScheduled || info.NotBefore == nil || !info.NotBefore.Equal(due) {
		t.Fatalf("delayed job: %+v", info)
	}
	q := b.Queue()[0]
	if q.Queued != 0 || q.Scheduled != 1 || len(q.ScheduledJobs) != 1 || q.ScheduledJobs[0].ID != id || !q.ScheduledJobs[0].At.Equal(due) {
		t.Fatalf("SERVER-QUEUE: %+v", q)
	}
	if s := b.Services()[0]; s.Scheduled != 1 || s.Queued != 0 {
		t.Fatalf("SERVER-SERVICES: %+v", s)
	}
	if d := b.Deadline(); !d.Equal(due) {
		t.Fatalf("deadline %v, want the job's time %v", d.Sub(t0), due.Sub(t0))
	}
	none(t, b.Tick(due.Add(-time.Millisecond)), protocol.ToWorker)
	none(t, b.Tick(due.Add(-time.Nanosecond)), protocol.ToWorker)
	if got, _, _ := dispatched(t, one(t, b.Tick(due), protocol.ToWorker, "w1")); got != id {
		t.Fatalf("dispatched %s, want %s", got, id)
	}
	if info, _ := b.Job(id); info.State != protocol.JobActive || info.NotBefore != nil {
		t.Fatalf("due job: %+v", info)
	}
}

// Jobs due at the same instant are queued in submission order; once due,
// a job goes by its priority like any other.
func TestBroker_DelayedJobsOrder(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	busy := submitMeta(t, b, t0, "S", protocol.Meta{})
	due := "1970-01-01T00:16:50Z" // t0 + 10 s
	late := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 20_000, Priority: 9})
	a := submitMeta(t, b, t0, "S", protocol.Meta{At: due})
	c := submitMeta(t, b, t0, "S", protocol.Meta{At: due})
	hi := submitMeta(t, b, t0, "S", protocol.Meta{At: due, Priority: 1})
	now := submitMeta(t, b, t0, "S", protocol.Meta{})
	q := b.Queue()[0]
	if q.Scheduled != 4 || len(q.ScheduledJobs) != 4 || q.ScheduledJobs[0].ID != a || q.ScheduledJobs[1].ID != c || q.ScheduledJobs[2].ID != hi || q.ScheduledJobs[3].ID != late {
		t.Fatalf("SERVER-QUEUE: %+v", q)
	}
	b.Tick(at(10 * time.Second))
	got := drain(t, b, at(10*time.Second), "w1", busy)
	want := []string{busy, hi, now, a, c}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestBroker_CancelScheduledJob(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Tick(t0)
	id := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 1000})
	md, info := ask(t, b, protocol.ServerCancel, id)
	if md.Status != protocol.StatusComplete || info.State != protocol.JobFailed || info.Code != protocol.CodeCancelled {
		t.Fatalf("cancel: %+v %+v", md, info)
	}
	if q := b.Queue()[0]; q.Scheduled != 0 || len(q.ScheduledJobs) != 0 {
		t.Fatalf("SERVER-QUEUE after the cancel: %+v", q)
	}
	if d := b.Deadline(); !d.After(at(time.Second)) {
		t.Fatalf("deadline %v: the cancelled job still counts", d.Sub(t0))
	}
	none(t, b.Tick(at(2*time.Second)), protocol.ToWorker)
}

// A time in the past queues the job now; one too far ahead, or malformed,
// or on a sync job, is refused naming the field.
func TestBroker_DelayBounds(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("S"))
	out := b.HandleClient(t0, "c", "", request(v2, "S", protocol.EncodeMeta(protocol.Meta{At: "1970-01-01T00:00:01Z"})))
	one(t, out, protocol.ToWorker, "w1") // at once
	for _, c := range []struct {
		service string
		m       protocol.Meta
		field   string
	}{
		{"S", protocol.Meta{DelayMillis: protocol.MaxDelay.Milliseconds() + 1}, "delay_ms"},
		{"S", protocol.Meta{DelayMillis: -1}, "delay_ms"},
		{"S", protocol.Meta{At: t0.Add(protocol.MaxDelay + time.Second).UTC().Format(time.RFC3339)}, "meta at"},
		{"S", protocol.Meta{At: "tomorrow"}, "meta at"},
		{"S", protocol.Meta{At: "1970-01-01T00:16:50Z", DelayMillis: 5}, "delay_ms and at"},
		{"SYNC-S", protocol.Meta{DelayMillis: 5}, "delay_ms"},
		{"SYNC-S", protocol.Meta{At: "1970-01-01T00:16:50Z"}, "meta at"},
		{"S", protocol.Meta{Priority: 1 << 31}, "priority"},
	} {
		_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", request(v2, c.service, protocol.EncodeMeta(c.m))), protocol.ToClient, "c"))
		if md.Status != protocol.StatusRefused || md.Code != protocol.CodeBadRequest || !strings.Contains(md.Error, c.field) {
			t.Errorf("%s %+v: %+v, want bad_request naming %q", c.service, c.m, md, c.field)
		}
	}
	// The largest delay allowed is taken.
	id := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: protocol.MaxDelay.Milliseconds()})
	if info, _ := b.Job(id); info.State != protocol.JobScheduled {
		t.Fatalf("job delayed by MaxDelay: %+v", info)
	}
}

// A scheduled job's record says so, with its time; restored, it waits again
// (its record untouched), and one whose time passed while the broker was
// down is queued at once.
func TestBroker_DelayedJobJournaledAndRestored(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleClient(t0, "c", "", request(v2, "S", protocol.EncodeMeta(protocol.Meta{DelayMillis: 60_000, Priority: 2})))
	jobs := b.Flush().Jobs
	if len(jobs) != 1 || jobs[0].State != protocol.JobScheduled || !jobs[0].NotBefore.Equal(at(time.Minute)) || jobs[0].Priority != 2 {
		t.Fatalf("records: %+v", jobs)
	}
	_, md, _ := clientReply(t, one(t, b.Committed(), protocol.ToClient, "c"))
	if md.Status != protocol.StatusAccepted || md.Job != jobs[0].ID {
		t.Fatalf("reply after the commit: %+v", md)
	}

	r := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour})
	rec := *jobs[0]
	past := store.JobRecord{ID: testID("01A"), Service: "S", State: protocol.JobScheduled, Created: t0, Retries: -1, NotBefore: at(time.Second)}
	r.Restore(at(10*time.Second), store.Snapshot{Services: []store.ServiceRecord{{Name: "S", FirstSeen: t0}}, Jobs: []store.JobRecord{rec, past}})
	info, _ := r.Job(rec.ID)
	if info.State != protocol.JobScheduled || info.NotBefore == nil || !info.NotBefore.Equal(at(time.Minute)) || info.Priority != 2 {
		t.Fatalf("restored scheduled job: %+v", info)
	}
	if info, _ := r.Job(past.ID); info.State != protocol.JobQueued {
		t.Fatalf("restored job whose time passed: %+v", info)
	}
	for _, j := range r.Flush().Jobs {
		if j.ID == rec.ID {
			t.Fatalf("restored scheduled job written again: %+v", j)
		}
	}
	r.Committed()
	r.Tick(at(10 * time.Second))
	r.HandleWorker(at(10*time.Second), "w1", "", readyZ("S")) // takes the past one
	if d := r.Deadline(); !d.Equal(at(time.Minute)) {
		t.Fatalf("deadline %v, want the restored job's time", d.Sub(t0))
	}
	none(t, r.Tick(at(time.Minute-time.Millisecond)), protocol.ToWorker)
	r.HandleWorker(at(time.Minute), "w2", "", readyZ("S"))
	if got, _, _ := dispatched(t, one(t, r.Tick(at(time.Minute)), protocol.ToWorker, "w2")); got != rec.ID {
		t.Fatalf("dispatched %s, want %s", got, rec.ID)
	}
}

// A failed commit refuses a scheduled job like any other: it never runs.
func TestBroker_DelayedJobRefusedByFailedCommit(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleClient(t0, "c", "", request(v2, "S", protocol.EncodeMeta(protocol.Meta{DelayMillis: 1000})))
	b.Flush()
	_, md, _ := clientReply(t, one(t, b.Rejected(t0, errors.New("disk full")), protocol.ToClient, "c"))
	if md.Status != protocol.StatusRefused || md.Code != protocol.CodeStoreUnavailable {
		t.Fatalf("reply: %+v", md)
	}
	if q := b.Queue()[0]; q.Scheduled != 0 {
		t.Fatalf("refused job still scheduled: %+v", q)
	}
	none(t, b.Tick(at(2*time.Second)), protocol.ToWorker)
}

// A scheduled job's queued event comes at its time, just before it starts.
func TestBroker_DelayedJobQueuedEventAtItsTime(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, Events: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Tick(t0)
	out := b.HandleClient(t0, "c", "", request(v2, "S", protocol.EncodeMeta(protocol.Meta{DelayMillis: 1000})))
	none(t, out, protocol.ToEvents)
	var names []string
	for _, e := range only(b.Tick(at(time.Second)), protocol.ToEvents) {
		names = append(names, e.To)
	}
	if strings.Join(names, " ") != "queued started" {
		t.Fatalf("events at its time: %v, want queued started", names)
	}
}
