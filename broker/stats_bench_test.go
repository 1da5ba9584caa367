package broker

import (
	"testing"
	"time"
)

// BenchmarkStats_PerJob is the counting one job costs the broker with
// Config.Stats, alone: submitted, the queue wait and the duration
// observed, completed. BenchmarkDispatch_Metrics measures it on the whole
// dispatch path.
func BenchmarkStats_PerJob(b *testing.B) {
	br := New(Config{Stats: true})
	s := &service{name: "echo"}
	j := &job{svc: s}
	r := &run{started: time.Unix(1000, 0)}
	now := r.started.Add(3 * time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		br.statsOf(s).submitted++
		s.stats.wait.Observe(2 * time.Millisecond)
		br.countFinished(now, j, stateComplete, r)
	}
	if s.stats.completed == 0 {
		b.Fatal("nothing counted")
	}
}
