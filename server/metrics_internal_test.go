package server

import (
	"testing"

	"github.com/zmws/zmws/broker"
)

// TestCollector_ServiceCap: the first services seen keep their labels; the
// rest are summed under OtherServices; a forgotten service's place goes to
// the next one.
func TestCollector_ServiceCap(t *testing.T) {
	c := &collector{cap: 2, labelled: map[string]bool{}}
	svc := func(name string, submitted uint64) broker.ServiceStats {
		s := broker.ServiceStats{Name: name, Submitted: submitted, Idle: 1,
			Failed:   []broker.CodeCount{{Code: "job_failed", N: submitted}},
			Duration: broker.NewHistogram(broker.JobBuckets()), Wait: broker.NewHistogram(broker.JobBuckets())}
		s.Duration.Observe(0)
		return s
	}
	names := func(ss []broker.ServiceStats) map[string]broker.ServiceStats {
		m := map[string]broker.ServiceStats{}
		for _, s := range ss {
			m[s.Name] = s
		}
		return m
	}
	got := names(c.group([]broker.ServiceStats{svc("B", 1), svc("C", 2)}))
	if len(got) != 2 || got["B"].Submitted != 1 || got["C"].Submitted != 2 {
		t.Fatalf("under the cap: %+v", got)
	}
	// A sorts first but came later: B and C keep their labels.
	got = names(c.group([]broker.ServiceStats{svc("A", 4), svc("B", 1), svc("C", 2), svc("D", 8), {Name: broker.UnknownService}}))
	o := got[OtherServices]
	if len(got) != 4 || got["B"].Submitted != 1 || o.Submitted != 12 || o.Idle != 2 || o.Duration.Count != 2 ||
		len(o.Failed) != 1 || o.Failed[0].N != 12 {
		t.Fatalf("past the cap: %+v", got)
	}
	if _, ok := got[broker.UnknownService]; !ok {
		t.Error("_unknown must not take a place, nor be summed")
	}
	// B is forgotten: A, the first of the rest, takes its place.
	got = names(c.group([]broker.ServiceStats{svc("A", 4), svc("C", 2), svc("D", 8)}))
	if len(got) != 3 || got["A"].Submitted != 4 || got[OtherServices].Submitted != 8 {
		t.Fatalf("after B is forgotten: %+v", got)
	}
}
