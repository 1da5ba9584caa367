package broker_test

import (
	"strings"
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

// A submission refused by the client's own limit takes nothing from the
// service's rate (--rate): a refusal takes nothing from the allowance.
func TestRate_ClientRefusalTakesNothingFromServiceRate(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, Rates: map[string]broker.Rate{"S": {PerSecond: 1, Burst: 2}},
		ClientRate: broker.Rate{PerSecond: 1, Burst: 1}})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if md := submitFrom(t, b, t0, "a1", "", "10.0.0.1", "S"); md.Status != protocol.StatusAccepted {
		t.Fatalf("first: %+v", md)
	}
	if md := submitFrom(t, b, t0, "a2", "", "10.0.0.1", "S"); md.Code != protocol.CodeRateLimited || !strings.Contains(md.Error, "--client-rate") {
		t.Fatalf("second from the same client: %+v, want refused by --client-rate", md)
	}
	if md := submitFrom(t, b, t0, "b1", "", "10.0.0.2", "S"); md.Status != protocol.StatusAccepted {
		t.Fatalf("another client, within the service's burst of 2: %+v", md)
	}
}

// A submission refused queue_full takes nothing from the service's rate.
func TestRate_QueueFullRefusalTakesNothingFromServiceRate(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, MaxQueue: 1, Rates: map[string]broker.Rate{"S": {PerSecond: 1, Burst: 2}}})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	id := submitMeta(t, b, t0, "S", protocol.Meta{})
	_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToClient, "c"))
	if md.Code != protocol.CodeQueueFull {
		t.Fatalf("second: %+v, want queue_full", md)
	}
	admin(t, b, t0, protocol.ServerCancel, id)
	if id := submitMeta(t, b, t0, "S", protocol.Meta{}); id == "" {
		t.Fatal("no job")
	}
}

// Scheduled jobs count against --max-queue (docs/PROTOCOL.md), for a
// retry and a schedule's tick as for a submission.
func TestBroker_ScheduledJobsCountAgainstTheQueueBoundForRetryAndTick(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, MaxQueue: 2, History: 10,
		Schedules: []broker.Schedule{every1s("s", "S")}})
	b.HandleWorker(t0, "w", "", readyZ("S"))
	b.Tick(t0)
	failed := failJobs(t, b, "w", "S", 1, t0)
	b.HandleWorker(t0, "w", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 60_000})
	submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 60_000})
	refusedWith(t, b.HandleClient(t0, "c", "", zreq("S", nil)), "c", protocol.CodeQueueFull)
	refusedWith(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerRetry, nil, failed[0])), "c", protocol.CodeQueueFull)
	b.Tick(at(1500 * time.Millisecond))
	if s := schedInfo(t, b, "s"); s.Fired != 0 || s.Skipped != 1 {
		t.Fatalf("a tick into a queue full of scheduled jobs: %+v, want it skipped", s)
	}
	if s := serviceInfo(t, b, "S"); s.Queued+s.Scheduled != 2 {
		t.Fatalf("service %+v: past the bound of 2", s)
	}
}

// A worker drained by its identity stays drained through a pause and
// resume of its service: SERVER-RESUME ends the service's pause or drain,
// not the worker's, which ends with its connection.
func TestDrain_WorkerDrainOutlivesServiceResume(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	job, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	admin(t, b, t0, protocol.ServerDrain, "w1")
	b.HandleClient(t0, "c", "", zreq("S", nil)) // waits
	admin(t, b, t0, protocol.ServerPause, "S")
	admin(t, b, t0, protocol.ServerResume, "S")
	out := b.HandleWorker(t0, "w1", "", final(job, protocol.Meta{Status: protocol.StatusComplete}))
	if !drainedBy(t, out, "w1") || len(requests(out)) != 0 {
		t.Fatalf("the drained worker's job done after a pause and resume of its service: %+v, want it told to stop and given nothing", out)
	}
	if s := serviceInfo(t, b, "S"); s.Queued != 1 {
		t.Fatalf("service %+v: want the job queued for another worker", s)
	}
}
