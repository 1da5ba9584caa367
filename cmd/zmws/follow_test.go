package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

var ft0 = time.Unix(2_000_000, 0)

// ends records a follower's outcomes by job ID.
type ends struct {
	mu sync.Mutex
	by map[string]outcome
}

func (e *ends) end(j *followed, o outcome) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.by[j.id]; dup {
		panic("job ended twice: " + j.id)
	}
	e.by[j.id] = o
}

func TestFollower_EventsEarlyLateAndOthers(t *testing.T) {
	got := &ends{by: map[string]outcome{}}
	f := newFollower("S", got.end)
	three := 3
	f.add(ft0, "j1", 1)
	f.seen(protocol.Event{Event: protocol.EventCompleted, Job: "j2", Service: "S"}) // before its ID came back
	f.seen(protocol.Event{Event: protocol.EventCompleted, Job: "j1", Service: "OTHER"})
	f.seen(protocol.Event{Event: protocol.EventStarted, Job: "j1", Service: "S"})
	f.seen(protocol.Event{Event: protocol.EventRequeued, Job: "j1", Service: "S"})
	if len(got.by) != 0 {
		t.Fatalf("ended by another service's or a non-final event: %v", got.by)
	}
	f.add(ft0, "j2", 2)
	f.seen(protocol.Event{Event: protocol.EventFailed, Job: "j1", Service: "S", Code: "job_failed", ExitCode: &three})
	f.seen(protocol.Event{Event: protocol.EventFailed, Job: "j1", Service: "S"}) // a duplicate: ignored
	if got.by["j2"].State != protocol.JobComplete || got.by["j1"].State != protocol.JobFailed || *got.by["j1"].ExitCode != 3 {
		t.Fatalf("outcomes %v", got.by)
	}
	select {
	case <-f.done():
		t.Fatal("done before submitted")
	default:
	}
	f.submitted()
	select {
	case <-f.done():
	default:
		t.Fatal("not done with every job ended")
	}
}

func TestFollower_LookupsOldestFirstWithBackoff(t *testing.T) {
	got := &ends{by: map[string]outcome{}}
	f := newFollower("S", got.end)
	for i := range 20 {
		f.add(ft0, fmt.Sprintf("j%02d", i), i+1)
	}
	f.submitted()
	var asked []string
	state := map[string]string{"j00": protocol.JobComplete, "j01": protocol.JobFailed, "j02": "gone"}
	lookup := func(_ context.Context, id string) (protocol.JobInfo, error) {
		asked = append(asked, id)
		switch s := state[id]; s {
		case "":
			return protocol.JobInfo{ID: id, State: protocol.JobActive}, nil
		case "gone":
			return protocol.JobInfo{}, fmt.Errorf("query: %w", client.ErrNotFound)
		default:
			return protocol.JobInfo{ID: id, State: s, Error: "why"}, nil
		}
	}
	ctx := context.Background()
	// Nothing is due before followQuiet.
	if more, err := f.round(ctx, ft0.Add(time.Second), lookup); more || err != nil || len(asked) != 0 {
		t.Fatalf("early round: %v %v asked %v", more, err, asked)
	}
	// At 2s: the oldest first; the round ends after followRunning jobs
	// still running.
	now := ft0.Add(followQuiet)
	if _, err := f.round(ctx, now, lookup); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 3+followRunning || asked[0] != "j00" || asked[3] != "j03" {
		t.Fatalf("asked %v", asked)
	}
	if got.by["j00"].State != protocol.JobComplete || got.by["j01"].Error != "why" || got.by["j02"].State != "" || len(got.by) != 3 {
		t.Fatalf("outcomes %v", got.by)
	}
	// The running ones wait twice as long; the rest are due now.
	asked = nil
	f.round(ctx, now.Add(time.Second), lookup)
	if len(asked) != 1 || asked[0] != "j19" {
		t.Fatalf("second round asked %v, want only j19", asked)
	}
	asked = nil
	f.round(ctx, now.Add(2*followQuiet), lookup)
	if len(asked) != followRunning || asked[0] != "j03" {
		t.Fatalf("third round asked %v", asked)
	}
	if f.pending() != 17 {
		t.Fatalf("pending %d", f.pending())
	}
	// A lookup that fails stops the round with its error.
	if _, err := f.round(ctx, now.Add(time.Hour), func(context.Context, string) (protocol.JobInfo, error) {
		return protocol.JobInfo{}, client.ErrTimeout
	}); !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("failing lookup: %v", err)
	}
}

// TestFollower_LooksPastJobsEventsEnded: jobs ended by events in the
// middle of the order leave it, so a long job at the front does not hide
// the ones behind from their lookups.
func TestFollower_LooksPastJobsEventsEnded(t *testing.T) {
	got := &ends{by: map[string]outcome{}}
	f := newFollower("S", got.end)
	const n = 10000
	for i := range n {
		f.add(ft0, fmt.Sprintf("j%05d", i), i+1)
	}
	for i := 1; i < n-1; i++ { // all but the first and the last end by events
		f.seen(protocol.Event{Event: protocol.EventCompleted, Job: fmt.Sprintf("j%05d", i), Service: "S"})
	}
	due := f.due(ft0.Add(followQuiet))
	if len(due) != 2 || due[0].id != "j00000" || due[1].id != fmt.Sprintf("j%05d", n-1) || len(f.order) != 2 {
		t.Fatalf("due %d (order %d), want the first and the last", len(due), len(f.order))
	}
}
