package broker_test

import (
	"slices"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
)

// submitMeta submits an async job to service with m and returns its ID.
func submitMeta(t *testing.T, b *broker.Broker, now time.Time, service string, m protocol.Meta) string {
	t.Helper()
	_, md, _ := clientReply(t, one(t, b.HandleClient(now, "c", "", request(v2, service, protocol.EncodeMeta(m))), protocol.ToClient, "c"))
	if md.Status != protocol.StatusAccepted {
		t.Fatalf("submission %+v: %+v", m, md)
	}
	return md.Job
}

// drain has worker w run the queued jobs of its service one at a time (a
// FINAL each) and returns their IDs in the order they came; first is the
// job w runs now.
func drain(t *testing.T, b *broker.Broker, now time.Time, w, first string) []string {
	t.Helper()
	var order []string
	for id := first; id != ""; {
		order = append(order, id)
		r := requests(b.HandleWorker(now, w, "", final(id, protocol.Meta{Status: protocol.StatusComplete})))
		id = ""
		if len(r) == 1 {
			id, _, _ = dispatched(t, r[0])
		}
	}
	return order
}

// Higher priorities are dispatched first, FIFO within one; negative
// priorities come after the default.
func TestBroker_PriorityOrderFIFOWithin(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	busy := submitMeta(t, b, t0, "S", protocol.Meta{}) // w1 runs it: the rest queue
	var want [3][]string                               // by priority 10, 0, -1
	for i := range 12 {
		p := []int{0, 10, -1}[i%3]
		id := submitMeta(t, b, t0, "S", protocol.Meta{Priority: p})
		want[map[int]int{10: 0, 0: 1, -1: 2}[p]] = append(want[map[int]int{10: 0, 0: 1, -1: 2}[p]], id)
	}
	q := b.Queue()[0]
	if q.Queued != 12 || !slices.Equal(q.Priorities, []protocol.PriorityCount{{Priority: 10, Queued: 4}, {Priority: 0, Queued: 4}, {Priority: -1, Queued: 4}}) {
		t.Fatalf("queue: %+v", q)
	}
	all := slices.Concat(want[0], want[1], want[2])
	if !slices.Equal(q.Jobs, all) {
		t.Fatalf("SERVER-QUEUE order %v, want %v", q.Jobs, all)
	}
	if info, _ := b.Job(want[0][0]); info.Priority != 10 {
		t.Fatalf("job info: %+v", info)
	}
	got := drain(t, b, t0, "w1", busy)
	if !slices.Equal(got[1:], all) {
		t.Fatalf("dispatch order %v, want %v", got[1:], all)
	}
}

// A job whose worker is lost goes back to the head of its own priority: after
// the jobs of higher priorities, before the others of its own.
func TestBroker_PriorityRequeueAtHeadOfItsPriority(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Second, Liveness: 3})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	lost := submitMeta(t, b, t0, "S", protocol.Meta{Priority: 5}) // w1 runs it
	hi := submitMeta(t, b, t0, "S", protocol.Meta{Priority: 9})
	same := submitMeta(t, b, t0, "S", protocol.Meta{Priority: 5})
	low := submitMeta(t, b, t0, "S", protocol.Meta{})
	b.Tick(at(5 * time.Second)) // w1 is silent: expired, its job requeued
	if q := b.Queue()[0]; !slices.Equal(q.Jobs, []string{hi, lost, same, low}) {
		t.Fatalf("queue after the loss %v, want %v", q.Jobs, []string{hi, lost, same, low})
	}
	first, _, _ := dispatched(t, one(t, b.HandleWorker(at(5*time.Second), "w2", "", readyZ("S")), protocol.ToWorker, "w2"))
	if got := drain(t, b, at(5*time.Second), "w2", first); !slices.Equal(got, []string{hi, lost, same, low}) {
		t.Fatalf("dispatch order %v", got)
	}
}

// A prefetched job given back goes to the head of its priority too.
func TestBroker_PriorityGiveBackAtHeadOfItsPriority(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{Prefetch: 1}))
	run := submitMeta(t, b, t0, "S", protocol.Meta{Priority: 1})
	held := submitMeta(t, b, t0, "S", protocol.Meta{Priority: 1}) // waits at w1
	other := submitMeta(t, b, t0, "S", protocol.Meta{Priority: 1})
	low := submitMeta(t, b, t0, "S", protocol.Meta{})
	b.HandleWorker(t0, "w1", "", final(held, protocol.Meta{Status: protocol.StatusReturned}))
	if q := b.Queue()[0]; !slices.Equal(q.Jobs, []string{held, other, low}) {
		t.Fatalf("queue after the give-back %v, want %v", q.Jobs, []string{held, other, low})
	}
	_ = run
}

// Restore rebuilds each queue by priority, FIFO by ID within one, and keeps
// each job's priority.
func TestBroker_RestorePriorityOrder(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	rec := func(id string, p int) store.JobRecord {
		return store.JobRecord{ID: testID(id), Service: "S", State: protocol.JobQueued, Created: t0, Retries: -1, Priority: p}
	}
	b.Restore(at(time.Second), store.Snapshot{
		Services: []store.ServiceRecord{{Name: "S", FirstSeen: t0}},
		Jobs:     []store.JobRecord{rec("01E", 0), rec("01D", 7), rec("01A", 0), rec("01C", 7), rec("01B", -2)},
	})
	want := []string{testID("01C"), testID("01D"), testID("01A"), testID("01E"), testID("01B")}
	if q := b.Queue()[0]; !slices.Equal(q.Jobs, want) {
		t.Fatalf("restored queue %v, want %v", q.Jobs, want)
	}
	for _, r := range b.Flush().Jobs {
		if r.ID == testID("01C") && r.Priority != 7 {
			t.Fatalf("record of a restored job lost its priority: %+v", r)
		}
	}
	b.Committed()
}

func TestBroker_PriorityRecorded(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleClient(t0, "c", "", request(v2, "S", protocol.EncodeMeta(protocol.Meta{Priority: -3})))
	if jobs := b.Flush().Jobs; len(jobs) != 1 || jobs[0].Priority != -3 {
		t.Fatalf("records: %+v", jobs)
	}
}

// A job that overruns its time-to-run goes back to the head of its own
// priority too.
func TestBroker_PriorityTimeToRunRequeueAtHead(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	over := submitMeta(t, b, t0, "S", protocol.Meta{Priority: -1, TTRMillis: 1000}) // w1 runs it
	hi := submitMeta(t, b, t0, "S", protocol.Meta{})
	same := submitMeta(t, b, t0, "S", protocol.Meta{Priority: -1})
	b.Tick(at(time.Second)) // w1 is stopped, the job requeued
	if q := b.Queue()[0]; !slices.Equal(q.Jobs, []string{hi, over, same}) {
		t.Fatalf("queue after the overrun %v, want %v", q.Jobs, []string{hi, over, same})
	}
}
