package broker_test

import (
	"slices"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// submitN submits n async jobs for service and returns the REQUESTs sent.
func submitN(t *testing.T, b *broker.Broker, service string, n int) []protocol.Envelope {
	t.Helper()
	var out []protocol.Envelope
	for range n {
		out = append(out, requests(b.HandleClient(t0, "c", "", zreq(service, nil)))...)
	}
	return out
}

// to lists who got each REQUEST, and the job IDs.
func to(t *testing.T, reqs []protocol.Envelope) (workers, ids []string) {
	t.Helper()
	for _, e := range reqs {
		id, _, _ := dispatched(t, e)
		workers, ids = append(workers, e.To), append(ids, id)
	}
	return workers, ids
}

// A worker that declared a prefetch of 2 holds 3 jobs; the rest queue.
// Its next job goes out when it sends a result.
func TestPrefetch_HoldsUpToOnePlusPrefetch(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{Prefetch: 2}))
	ws, ids := to(t, submitN(t, b, "S", 5))
	if !slices.Equal(ws, []string{"w1", "w1", "w1"}) {
		t.Fatalf("dispatched to %v, want w1 three times", ws)
	}
	out := b.HandleWorker(t0, "w1", "", final(ids[0], protocol.Meta{Status: protocol.StatusComplete}))
	if ws, _ := to(t, requests(out)); !slices.Equal(ws, []string{"w1"}) {
		t.Fatalf("after a result: %v, want one more for w1", ws)
	}
	// Results may only come for jobs it holds.
	out = b.HandleWorker(t0, "w1", "", final(ids[2], protocol.Meta{Status: protocol.StatusComplete}))
	if info, _ := b.Job(ids[2]); info.State != protocol.JobComplete {
		t.Fatalf("result of a job waiting at the worker: %+v", info)
	}
	if len(requests(out)) != 1 {
		t.Fatalf("after a second result: %d requests, want 1", len(requests(out)))
	}
	if st := b.Services()[0]; st.Active != 3 || st.Queued != 0 || st.WorkersBusy != 1 {
		t.Fatalf("service %+v, want 3 active, none queued", st)
	}
}

// Idle workers get work before busy ones with room, whatever their order.
func TestPrefetch_IdleWorkersFirst(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{Prefetch: 4}))
	b.HandleWorker(t0, "w2", "", readyZ("S"))
	b.HandleWorker(t0, "w3", "", readyWith("S", protocol.Meta{Prefetch: 1}))
	ws, _ := to(t, submitN(t, b, "S", 6))
	// One each first, then the ones with room in turn: w1, w3, w1 (w3 is full).
	if want := []string{"w1", "w2", "w3", "w1", "w3", "w1"}; !slices.Equal(ws, want) {
		t.Fatalf("dispatched to %v, want %v", ws, want)
	}
}

// A job waiting at its worker has no time-to-run running: its clock
// starts when the job before it ends.
func TestPrefetch_TimeToRunStartsWhenRun(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, TTR: time.Second})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{Prefetch: 1}))
	_, ids := to(t, submitN(t, b, "S", 2))
	b.HandleWorker(at(900*time.Millisecond), "w1", "", final(ids[0], protocol.Meta{Status: protocol.StatusComplete}))
	if out := b.Tick(at(1500 * time.Millisecond)); len(commands(out, protocol.CmdDisconnect)) != 0 {
		t.Fatalf("the second job overran 0.6s after it started: %+v", out)
	}
	out := b.Tick(at(1901 * time.Millisecond))
	if d := commands(out, protocol.CmdDisconnect); len(d) != 1 || d[0].To != "w1" {
		t.Fatalf("the second job did not overrun 1s after it started: %+v", out)
	}
}

// A worker lost with jobs waiting at it: the running one is queued again
// with its attempt counted, the waiting ones as they were, all in order at
// the head of the queue.
func TestPrefetch_LostWorkerRequeuesInOrder(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{Prefetch: 2}))
	_, ids := to(t, submitN(t, b, "S", 4)) // three at w1, one queued
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	if st := b.Services()[0]; st.Active != 0 || st.Queued != 4 {
		t.Fatalf("service %+v, want 4 queued", st)
	}
	var got []string
	var attempts []int
	for _, e := range requests(b.HandleWorker(t0, "w2", "", readyWith("S", protocol.Meta{Prefetch: 3}))) {
		id, m, _ := dispatched(t, e)
		got, attempts = append(got, id), append(attempts, m.Attempt)
	}
	queuedID := got[len(got)-1]
	if !slices.Equal(got[:3], ids) || slices.Contains(ids, queuedID) || len(got) != 4 {
		t.Fatalf("re-dispatched %v, want %v then the queued one", got, ids)
	}
	if !slices.Equal(attempts, []int{2, 1, 1, 1}) {
		t.Fatalf("attempts %v, want 2 for the one that ran, 1 for the others", attempts)
	}
}

// Cancelling a job waiting at a worker stops the worker (its running job
// is queued again) and fails the cancelled one; the rest are queued again.
func TestPrefetch_CancelWaitingJob(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{Prefetch: 2}))
	_, ids := to(t, submitN(t, b, "S", 3))
	out := b.HandleClient(t0, "q", "", request(v2, "SERVER-CANCEL", meta, []byte(ids[1])))
	if d := commands(out, protocol.CmdDisconnect); len(d) != 1 || d[0].To != "w1" {
		t.Fatalf("worker not stopped: %+v", out)
	}
	if info, _ := b.Job(ids[1]); info.State != protocol.JobFailed || info.Code != protocol.CodeCancelled {
		t.Fatalf("cancelled job: %+v", info)
	}
	for _, id := range []string{ids[0], ids[2]} {
		if info, _ := b.Job(id); info.State != protocol.JobQueued {
			t.Fatalf("job %s: %+v, want queued again", id, info)
		}
	}
	if st := b.Services()[0]; st.Active != 0 || st.Queued != 2 || st.WorkersIdle+st.WorkersBusy != 0 {
		t.Fatalf("service %+v", st)
	}
	// Neither spent an attempt: the running one was stopped for another's
	// sake, the other never started.
	for _, e := range requests(b.HandleWorker(t0, "w2", "", readyWith("S", protocol.Meta{Prefetch: 1}))) {
		if id, m, _ := dispatched(t, e); m.Attempt != 1 {
			t.Errorf("job %s re-dispatched as attempt %d, want 1", id, m.Attempt)
		}
	}
}

// A worker without a meta frame (stock MDP) never gets more than one job.
func TestPrefetch_StockWorkerOneAtATime(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	if ws, _ := to(t, submitN(t, b, "S", 3)); !slices.Equal(ws, []string{"w1"}) {
		t.Fatalf("dispatched to %v, want w1 once", ws)
	}
}

// A stopping worker gives back the jobs it had not started, last first:
// they go back to the head of the queue in order, their attempt not
// counted, and the worker gets no more jobs.
func TestPrefetch_GivenBackJobs(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{Prefetch: 2}))
	_, ids := to(t, submitN(t, b, "S", 3))
	returned := protocol.Meta{Status: protocol.StatusReturned}
	for _, id := range []string{ids[2], ids[1]} {
		if out := requests(b.HandleWorker(t0, "w1", "", final(id, returned))); len(out) != 0 {
			t.Fatalf("a draining worker got jobs: %+v", out)
		}
	}
	out := b.HandleWorker(t0, "w1", "", final(ids[0], protocol.Meta{Status: protocol.StatusComplete}))
	if len(requests(out)) != 0 {
		t.Fatalf("a draining worker got jobs after its last result: %+v", out)
	}
	if info, _ := b.Job(ids[1]); info.State != protocol.JobQueued {
		t.Fatalf("given back job: %+v", info)
	}
	var got []string
	for _, e := range requests(b.HandleWorker(t0, "w2", "", readyWith("S", protocol.Meta{Prefetch: 1}))) {
		id, m, _ := dispatched(t, e)
		if m.Attempt != 1 {
			t.Errorf("job %s re-dispatched as attempt %d, want 1", id, m.Attempt)
		}
		got = append(got, id)
	}
	if !slices.Equal(got, ids[1:]) {
		t.Fatalf("re-dispatched %v, want %v in order", got, ids[1:])
	}
}

// A worker lost on its running job's last attempt: that job fails, and the
// job waiting at it goes at once to a worker that is idle meanwhile.
func TestPrefetch_LostWorkerWaitingJobToIdleWorker(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, MaxAttempts: 1})
	b.HandleWorker(t0, "a", "", readyWith("S", protocol.Meta{Prefetch: 1}))
	b.HandleWorker(t0, "b", "", readyWith("S", protocol.Meta{Prefetch: 1}))
	ws, ids := to(t, submitN(t, b, "S", 3)) // j1 a, j2 b, j3 waits at a
	if !slices.Equal(ws, []string{"a", "b", "a"}) {
		t.Fatalf("dispatched to %v", ws)
	}
	b.HandleWorker(t0, "b", "", final(ids[1], protocol.Meta{Status: protocol.StatusComplete}))
	out := requests(b.HandleWorker(t0, "a", "", workerMsg(v2, protocol.CmdDisconnect, "")))
	if info, _ := b.Job(ids[0]); info.State != protocol.JobFailed {
		t.Fatalf("j1 on its last attempt: %+v", info)
	}
	if ws, got := to(t, out); !slices.Equal(ws, []string{"b"}) || got[0] != ids[2] {
		t.Fatalf("after a was lost: %v %v, want j3 to b", ws, got)
	}
}
