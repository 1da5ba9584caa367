package broker_test

import (
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// serviceStats returns the stats of service name, failing when it has none.
func serviceStats(t *testing.T, st broker.Stats, name string) broker.ServiceStats {
	t.Helper()
	for _, s := range st.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no stats for service %s in %+v", name, st)
	return broker.ServiceStats{}
}

func codeN(cs []broker.CodeCount, code string) uint64 {
	for _, c := range cs {
		if c.Code == code {
			return c.N
		}
	}
	return 0
}

func TestBroker_StatsCountJobs(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Second, Liveness: 3, MaxQueue: 1, Stats: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))

	// One completes after 300 ms, having waited 0.
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	b.HandleWorker(at(300*time.Millisecond), "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}))
	// One fails after 2 s.
	id, _, _ = dispatched(t, one(t, b.HandleClient(at(time.Second), "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	// Meanwhile one queues (waits 2 s), the next is refused: queue full.
	b.HandleClient(at(time.Second), "c", "", zreq("S", nil))
	b.HandleClient(at(time.Second), "c", "", zreq("S", nil))
	b.HandleClient(at(time.Second), "c", "", zreq("NOPE", nil))
	if st := serviceStats(t, b.Stats(), "S"); st.Queued != 1 || st.Active != 1 || st.Busy != 1 || st.Idle != 0 {
		t.Fatalf("gauges while one runs and one waits: %+v", st)
	}
	out := b.HandleWorker(at(3*time.Second), "w1", "", final(id, protocol.Meta{Status: protocol.StatusFailed, Error: "no"}))
	one(t, out, protocol.ToWorker, "w1")
	// w1 goes silent with the third job: it is requeued, and waits.
	b.Tick(at(7 * time.Second))

	st := b.Stats()
	s := serviceStats(t, st, "S")
	if s.Submitted != 3 || s.Completed != 1 || codeN(s.Failed, protocol.CodeJobFailed) != 1 || s.Requeued != 1 {
		t.Errorf("counts: %+v", s)
	}
	if codeN(s.Refused, protocol.CodeQueueFull) != 1 || s.Queued != 1 || s.Active != 0 || s.Idle+s.Busy != 0 {
		t.Errorf("refusals and gauges: %+v", s)
	}
	if codeN(serviceStats(t, st, broker.UnknownService).Refused, protocol.CodeUnknownService) != 1 {
		t.Errorf("refusal of an unknown service not counted: %+v", st.Services)
	}
	// Durations 300 ms and 2 s; waits 0, 0 and 2 s (the requeued job's
	// second wait is not counted).
	bounds := broker.JobBuckets()
	bucket := func(d time.Duration) int {
		for i, b := range bounds {
			if d <= b {
				return i
			}
		}
		return len(bounds)
	}
	if h := s.Duration; h.Count != 2 || h.Sum != 2300*time.Millisecond || h.Counts[bucket(300*time.Millisecond)] != 1 || h.Counts[bucket(2*time.Second)] != 1 {
		t.Errorf("duration histogram: %+v", h)
	}
	if h := s.Wait; h.Count != 3 || h.Sum != 2*time.Second || h.Counts[0] != 2 || h.Counts[bucket(2*time.Second)] != 1 {
		t.Errorf("wait histogram: %+v", h)
	}
	if st.Workers != 0 || st.Jobs != 3 {
		t.Errorf("broker gauges: %d workers, %d jobs", st.Workers, st.Jobs)
	}
}

func TestBroker_StatsOffCountsNothing(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}))
	b.HandleClient(t0, "c", "", zreq("NOPE", nil))
	st := b.Stats()
	if len(st.Services) != 1 || st.Services[0].Submitted != 0 || st.Services[0].Completed != 0 || st.Services[0].Duration.Count != 0 || st.Services[0].Idle != 1 {
		t.Fatalf("stats without Config.Stats: %+v", st.Services)
	}
}

func TestHistogram_Observe(t *testing.T) {
	h := broker.NewHistogram([]time.Duration{time.Second, 2 * time.Second})
	for _, d := range []time.Duration{0, time.Second, time.Second + 1, 3 * time.Second} {
		h.Observe(d)
	}
	if h.Counts[0] != 2 || h.Counts[1] != 1 || h.Counts[2] != 1 || h.Count != 4 || h.Sum != 5*time.Second+1 {
		t.Fatalf("histogram %+v", h)
	}
	c := h.Clone()
	c.Counts[0] = 9
	if h.Counts[0] != 2 {
		t.Fatal("Clone shares its counts")
	}
}
