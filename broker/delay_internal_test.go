package broker

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// scheduledJobs walks the heap best first and falls back to a full pass;
// both list the same jobs: each service's earliest maxQueueIDs scheduled
// ones, in time order, retries left out.
func TestScheduledJobs_WalkAndPassAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		name  string
		early map[string]int // jobs per service due in the first minute
		late  map[string]int // jobs per service due an hour later
	}{
		{"one service", map[string]int{"A": 500}, nil},
		{"few jobs", map[string]int{"A": 3, "B": 1}, nil},
		{"mixed", map[string]int{"A": 300, "B": 300, "C": 40}, nil},
		{"one far behind", map[string]int{"A": 5000}, map[string]int{"B": 3}}, // the walk gives up
	} {
		t.Run(c.name, func(t *testing.T) {
			b := New(Config{Heartbeat: time.Hour})
			add := func(jobs map[string]int, from time.Duration) {
				for name, n := range jobs {
					s := b.services[name]
					if s == nil {
						s = &service{name: name}
						b.services[name] = s
					}
					for range n {
						j := &job{id: b.newID(t0), svc: s}
						at := t0.Add(from + time.Duration(rng.Int64N(int64(time.Minute))))
						if rng.IntN(10) == 0 { // a retry backing off: not listed
							j.state = stateQueued
							j.ensureRun().notBefore = at
							b.delay(j)
							continue
						}
						b.delayUntil(t0, j, at)
					}
				}
			}
			add(c.early, 0)
			add(c.late, time.Hour)
			walk, pass := b.scheduledJobs(), b.scheduledJobsByPass()
			if !reflect.DeepEqual(walk, pass) {
				t.Fatalf("walk and pass differ")
			}
			for s, list := range walk {
				if len(list) != min(s.scheduled, maxQueueIDs) {
					t.Errorf("service %s: %d listed of %d scheduled", s.name, len(list), s.scheduled)
				}
				for i := 1; i < len(list); i++ {
					if list[i].At.Before(list[i-1].At) {
						t.Errorf("service %s: out of order at %d", s.name, i)
					}
				}
			}
		})
	}
}
