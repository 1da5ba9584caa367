package broker_test

import (
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// Tests of how the features meet: priorities and delays, pause and drain,
// schedules, Titanic, resends and the rate limits.

// titanic.close of a scheduled job deletes it: it must not run at its
// time, nor count as scheduled after.
func TestBroker_TitanicCloseOfScheduledJob(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Tick(t0)
	id := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 1000})
	wantTSP(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicClose, id)), "c", protocol.TitanicClose, protocol.TSPOK)
	if s := serviceInfo(t, b, "S"); s.Scheduled != 0 || s.Failed != 1 {
		t.Fatalf("after the close: %+v, want nothing scheduled and the job failed (cancelled)", s)
	}
	none(t, b.Tick(at(2*time.Second)), protocol.ToWorker)
	if q := b.Queue()[0]; q.Queued != 0 || q.Scheduled != 0 {
		t.Fatalf("SERVER-QUEUE after the job's time: %+v", q)
	}
}
