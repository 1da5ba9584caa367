package broker_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// admin sends an introspection request from a stock client and returns its
// reply frames (after the service frame).
func admin(t *testing.T, b *broker.Broker, now time.Time, service string, body ...string) ([]protocol.Envelope, [][]byte) {
	t.Helper()
	var frames [][]byte
	for _, f := range body {
		frames = append(frames, []byte(f))
	}
	out := b.HandleClient(now, "admin", "", request(v1, service, frames...))
	e := one(t, out, protocol.ToClient, "admin")
	m, err := protocol.DecodeReply(e.Frames)
	if err != nil {
		t.Fatalf("%s: %v", service, err)
	}
	return out, m.Body
}

func serviceInfo(t *testing.T, b *broker.Broker, name string) protocol.ServiceInfo {
	t.Helper()
	for _, s := range b.Services() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no service %s", name)
	return protocol.ServiceInfo{}
}

// drainedBy reports whether out tells worker id to stop because it was
// drained.
func drainedBy(t *testing.T, out []protocol.Envelope, id string) bool {
	t.Helper()
	for _, e := range only(out, protocol.ToWorker) {
		if e.To != id {
			continue
		}
		m, err := protocol.DecodeWorker(e.Frames)
		if err != nil || m.Cmd != protocol.CmdDisconnect {
			continue
		}
		if md, _, ok, _ := protocol.SplitMeta(m.Body); ok && md.Code == protocol.CodeDrained {
			return true
		}
	}
	return false
}

func TestPause_QueuesAndResumeDispatches(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	_, reply := admin(t, b, t0, protocol.ServerPause, "S")
	var info protocol.ServiceInfo
	if err := json.Unmarshal(reply[0], &info); err != nil || !info.Paused {
		t.Fatalf("SERVER-PAUSE answered %q (%v)", reply, err)
	}
	for range 3 {
		out := b.HandleClient(t0, "c", "", zreq("S", nil))
		if _, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c")); md.Job == "" {
			t.Fatalf("a paused service refused a job: %+v", md)
		}
		none(t, out, protocol.ToWorker)
	}
	b.HandleWorker(t0, "w2", "", readyZ("S")) // a new worker gets nothing either
	if s := serviceInfo(t, b, "S"); s.Queued != 3 || s.Active != 0 || s.WorkersIdle != 2 || !s.Paused {
		t.Fatalf("paused service %+v, want 3 queued, 2 idle workers", s)
	}
	out, _ := admin(t, b, t0, protocol.ServerResume, "S")
	if n := len(requests(out)); n != 2 {
		t.Fatalf("resume dispatched %d jobs, want one to each idle worker", n)
	}
	if s := serviceInfo(t, b, "S"); s.Queued != 1 || s.Paused {
		t.Fatalf("resumed service %+v", s)
	}
}

func TestDrain_WorkerFinishesItsJobThenStops(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	job, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	out, reply := admin(t, b, t0, protocol.ServerDrain, "w1")
	var wi []protocol.WorkerInfo
	if err := json.Unmarshal(reply[0], &wi); err != nil || len(wi) != 1 || !wi[0].Draining || wi[0].State != protocol.WorkerBusy {
		t.Fatalf("SERVER-DRAIN answered %q (%v)", reply, err)
	}
	none(t, out, protocol.ToWorker) // its job runs on
	// A second job waits for another worker.
	none(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker)
	out = b.HandleWorker(t0, "w1", "", final(job, protocol.Meta{Status: protocol.StatusComplete}, "done"))
	if !drainedBy(t, out, "w1") || len(requests(out)) != 0 {
		t.Fatalf("after its job: %+v, want DISCONNECT drained and no new job", out)
	}
	if info, _ := b.Job(job); info.State != protocol.JobComplete {
		t.Fatalf("the drained worker's job %+v", info)
	}
	if ws := b.Workers(); len(ws) != 0 {
		t.Fatalf("live workers %+v, want none", ws)
	}
	all := b.AllWorkers()
	if len(all) != 1 || all[0].GoneWhy != protocol.GoneDrained {
		t.Fatalf("gone workers %+v, want w1 gone drained", all)
	}
	// The queued job goes to the next worker.
	one(t, b.HandleWorker(t0, "w2", "", readyZ("S")), protocol.ToWorker, "w2")
}

func TestDrain_ServiceStopsIdleAtOnceBusyAfterAndRefusesReady(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "busy", "", readyZ("S"))
	job, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "busy"))
	b.HandleWorker(t0, "idle", "", readyZ("S"))
	out, _ := admin(t, b, t0, protocol.ServerDrain, "S")
	if !drainedBy(t, out, "idle") || drainedBy(t, out, "busy") {
		t.Fatalf("drain: %+v, want only the idle worker told to stop", out)
	}
	if !drainedBy(t, b.HandleWorker(t0, "new", "", readyZ("S")), "new") {
		t.Fatal("a READY for a draining service was not told to stop")
	}
	none(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker)
	if !drainedBy(t, b.HandleWorker(t0, "busy", "", final(job, protocol.Meta{Status: protocol.StatusComplete})), "busy") {
		t.Fatal("the busy worker was not told to stop after its job")
	}
	if s := serviceInfo(t, b, "S"); !s.Draining || s.Queued != 1 || s.WorkersIdle+s.WorkersBusy != 0 {
		t.Fatalf("drained service %+v", s)
	}
	admin(t, b, t0, protocol.ServerResume, "S")
	one(t, b.HandleWorker(t0, "back", "", readyZ("S")), protocol.ToWorker, "back")
}

// A resume while a drained service's busy worker still runs its job takes
// that worker back: it is not told to stop, and gets the next job.
func TestDrain_ResumeTakesBackAWorkerStillBusy(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w", "", readyZ("S"))
	job, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w"))
	admin(t, b, t0, protocol.ServerDrain, "S")
	b.HandleClient(t0, "c", "", zreq("S", nil))
	admin(t, b, t0, protocol.ServerResume, "S")
	out := b.HandleWorker(t0, "w", "", final(job, protocol.Meta{Status: protocol.StatusComplete}))
	if drainedBy(t, out, "w") {
		t.Fatal("a resumed service's worker was told to stop")
	}
	one(t, out, protocol.ToWorker, "w")
}

func TestPause_BadRequests(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	for _, c := range []struct {
		service string
		body    []string
		code    string
	}{
		{protocol.ServerPause, nil, protocol.CodeBadRequest},
		{protocol.ServerResume, nil, protocol.CodeBadRequest},
		{protocol.ServerDrain, nil, protocol.CodeBadRequest},
		{protocol.ServerPause, []string{"NOPE"}, protocol.CodeNotFound},
		{protocol.ServerResume, []string{"NOPE"}, protocol.CodeNotFound},
		{protocol.ServerDrain, []string{"NOPE"}, protocol.CodeNotFound},
	} {
		_, reply := admin(t, b, t0, c.service, c.body...)
		if len(reply) < 2 || string(reply[0]) != protocol.FailFrame || string(reply[1]) != c.code {
			t.Errorf("%s %q answered %q, want FAIL %s", c.service, c.body, reply, c.code)
		}
	}
}

// Only admins pause, resume and drain.
func TestPause_AdminOnly(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, Access: newAccess()})
	b.HandleWorker(t0, "w1", "wall", readyZ("S"))
	for _, svc := range []string{protocol.ServerPause, protocol.ServerResume, protocol.ServerDrain} {
		out := b.HandleClient(t0, "c", "bob", request(v1, svc, []byte("S")))
		m, _ := protocol.DecodeReply(one(t, out, protocol.ToClient, "c").Frames)
		if len(m.Body) < 2 || string(m.Body[1]) != protocol.CodeForbidden {
			t.Errorf("%s by a non-admin: %q, want forbidden", svc, m.Body)
		}
	}
	if s := serviceInfo(t, b, "S"); s.Paused || s.Draining {
		t.Fatalf("a non-admin changed the service: %+v", s)
	}
	out := b.HandleClient(t0, "c", "alice", request(v1, protocol.ServerPause, []byte("S")))
	m, _ := protocol.DecodeReply(one(t, out, protocol.ToClient, "c").Frames)
	if string(m.Body[0]) == protocol.FailFrame {
		t.Fatalf("an admin's pause was refused: %q", m.Body)
	}
}

// Pause and drain are journaled with the service record and restored.
func TestPause_JournaledAndRestored(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("T"))
	b.Flush()
	b.Committed()
	admin(t, b, t0, protocol.ServerPause, "S")
	admin(t, b, t0, protocol.ServerDrain, "T")
	batch := b.Flush()
	got := map[string]broker.ServiceRecord{}
	for _, s := range batch.Services {
		got[s.Name] = s
	}
	if !got["S"].Paused || got["S"].Draining || !got["T"].Draining || got["S"].FirstSeen.IsZero() {
		t.Fatalf("journaled services %+v", batch.Services)
	}

	r := newBroker(t, broker.Config{Heartbeat: time.Hour, Durable: true})
	r.Restore(t0, broker.Snapshot{Services: []broker.ServiceRecord{got["S"], got["T"]}})
	r.HandleWorker(t0, "w1", "", readyZ("S"))
	none(t, r.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker)
	if !drainedBy(t, r.HandleWorker(t0, "w2", "", readyZ("T")), "w2") {
		t.Fatal("a restored draining service took a worker")
	}
	if s := serviceInfo(t, r, "S"); !s.Paused || s.Queued != 1 {
		t.Fatalf("restored service %+v", s)
	}
}

// HOST:PID drains every connection a process opened (its READY's details).
func TestDrain_HostPIDDrainsEveryConnectionOfAProcess(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "s0", "", readyZ("S")) // readyZ: host h, pid 1
	b.HandleWorker(t0, "s1", "", readyZ("T"))
	b.HandleWorker(t0, "other", "", readyWith("S", protocol.Meta{Worker: &protocol.WorkerDetails{Host: "h", PID: 2}}))
	out, reply := admin(t, b, t0, protocol.ServerDrain, "h:1")
	var wi []protocol.WorkerInfo
	if err := json.Unmarshal(reply[0], &wi); err != nil || len(wi) != 2 {
		t.Fatalf("SERVER-DRAIN h:1 answered %q (%v)", reply, err)
	}
	if !drainedBy(t, out, "s0") || !drainedBy(t, out, "s1") || drainedBy(t, out, "other") {
		t.Fatalf("drain h:1: %+v", out)
	}
	if ws := b.Workers(); len(ws) != 1 || ws[0].Identity != "other" {
		t.Fatalf("live workers %+v", ws)
	}
}

// A paused or draining service is not forgotten, by SERVER-FORGET or after
// ForgetAfter: its pause would go with it.
func TestPause_ServiceNotForgotten(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, ForgetAfter: time.Minute})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	admin(t, b, t0, protocol.ServerPause, "S")
	_, reply := admin(t, b, t0, protocol.ServerForget, "S")
	if len(reply) < 2 || string(reply[1]) != protocol.CodeConflict {
		t.Fatalf("SERVER-FORGET of a paused service: %q, want conflict", reply)
	}
	for m := 1; m <= 10; m++ {
		b.Tick(at(time.Duration(m) * time.Minute))
	}
	if s := serviceInfo(t, b, "S"); !s.Paused {
		t.Fatalf("paused service %+v", s)
	}
	admin(t, b, at(10*time.Minute), protocol.ServerResume, "S")
	for m := 11; m <= 14; m++ {
		b.Tick(at(time.Duration(m) * time.Minute))
	}
	for _, s := range b.Services() {
		if s.Name == "S" {
			t.Fatalf("resumed service kept past ForgetAfter: %+v", s)
		}
	}
}
