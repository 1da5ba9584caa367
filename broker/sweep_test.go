package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// Found by TestBroker_RandomSequences: when one Tick expires several
// workers, the job of the first dropped must not go to another that the
// same sweep drops next (attempt spent on a dead worker, REQUEST to it).
func TestBroker_ExpirySweepGivesNoJobToAnotherExpiredWorker(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Second, Liveness: 3})
	// Ten busy workers, then ten idle ones, all silent from t0. Which is
	// dropped first would be the map's choice: with twenty, some busy one
	// goes before some idle one.
	for i := range 10 {
		b.HandleWorker(t0, fmt.Sprintf("busy%d", i), "", readyZ("S"))
	}
	_, ids := to(t, submitN(t, b, "S", 10))
	for i := range 10 {
		b.HandleWorker(t0, fmt.Sprintf("idle%d", i), "", readyZ("S"))
	}
	out := b.Tick(at(4 * time.Second))
	if reqs := requests(out); len(reqs) != 0 {
		w, _ := to(t, reqs)
		t.Fatalf("jobs sent to workers expired in the same sweep: %v", w)
	}
	if n := len(b.Workers()); n != 0 {
		t.Fatalf("%d workers left, want none", n)
	}
	for _, id := range ids {
		if info, ok := b.Job(id); !ok || info.State != protocol.JobQueued || info.Attempts != 1 {
			t.Fatalf("job %s: %+v, want queued after 1 attempt", id, info)
		}
	}
}

// Found by TestBroker_RandomSequences: when one Tick stops several
// workers that overran the time-to-run, the job of the first stopped must
// not go to another one's prefetch room: that one is stopped next.
func TestBroker_OverrunSweepGivesNoJobToAnotherStoppedWorker(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, TTR: time.Second})
	for i := range 10 {
		b.HandleWorker(t0, fmt.Sprintf("p%d", i), "", readyWith("S", protocol.Meta{Prefetch: 1}))
	}
	submitN(t, b, "S", 10) // one each: idle workers first
	out := b.Tick(at(2 * time.Second))
	if reqs := requests(out); len(reqs) != 0 {
		w, _ := to(t, reqs)
		t.Fatalf("jobs sent to workers stopped in the same sweep: %v", w)
	}
	if q := b.Queue(); len(q) != 1 || q[0].Queued != 10 {
		t.Fatalf("queue %+v, want the 10 jobs", q)
	}
}
