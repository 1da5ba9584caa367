package broker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

func readyWith(service string, m protocol.Meta) [][]byte {
	return protocol.EncodeWorker(protocol.Message{Form: v2, Cmd: protocol.CmdReady, Service: service,
		Body: [][]byte{protocol.EncodeMeta(m)}})
}

func ask(t *testing.T, b *broker.Broker, service, id string) (protocol.Meta, protocol.JobInfo) {
	t.Helper()
	out := b.HandleClient(t0, "q", "", request(v2, service, meta, []byte(id)))
	_, md, payload := clientReply(t, one(t, out, protocol.ToClient, "q"))
	var ji protocol.JobInfo
	if md.Status == protocol.StatusComplete {
		if err := json.Unmarshal(payload[0], &ji); err != nil {
			t.Fatal(err)
		}
	}
	return md, ji
}

func TestBroker_TimeToRunStopsAndRequeues(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, MaxAttempts: 2})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("S"))
	out := b.HandleClient(t0, "c", "", request(v2, "S", protocol.EncodeMeta(protocol.Meta{TTRMillis: 1000})))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	if d := b.Deadline(); !d.Equal(at(time.Second)) {
		t.Fatalf("deadline %v, want the time-to-run at +1s", d.Sub(t0))
	}
	out = b.Tick(at(time.Second))
	if d := commands(out, protocol.CmdDisconnect); len(d) != 1 || d[0].To != "w1" {
		t.Fatalf("overrunning worker not stopped: %+v", out)
	}
	r := requests(out)
	if len(r) != 1 || r[0].To != "w2" {
		t.Fatalf("job not requeued to w2: %+v", out)
	}
	if got, m, _ := dispatched(t, r[0]); got != id || m.Attempt != 2 {
		t.Fatalf("re-dispatch %s attempt %d", got, m.Attempt)
	}
	// The second attempt overruns too: attempts spent, it fails as a timeout.
	b.Tick(at(2 * time.Second))
	info, _ := b.Job(id)
	if info.State != protocol.JobFailed || info.Code != protocol.CodeTimeout || !strings.Contains(info.Error, "time-to-run of 1s") {
		t.Fatalf("after two overruns: %+v", info)
	}
}

func TestBroker_ServiceDefaultsFromReady(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, RetryBackoff: time.Second})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{TTRMillis: 500, Retries: 2}))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	if d := b.Deadline(); !d.Equal(at(500 * time.Millisecond)) {
		t.Fatalf("deadline %v, want the service's time-to-run", d.Sub(t0))
	}
	// FAIL, retried after 1s, 2s; the third FAIL is final.
	fail := final(id, protocol.Meta{Status: protocol.StatusFailed, Error: "boom"})
	now := at(100 * time.Millisecond)
	for i, backoff := range []time.Duration{time.Second, 2 * time.Second} {
		if out := b.HandleWorker(now, "w1", "", fail); len(requests(out)) != 0 {
			t.Fatalf("retry %d dispatched before its backoff", i+1)
		}
		if info, _ := b.Job(id); info.State != protocol.JobQueued {
			t.Fatalf("retrying job is %s", info.State)
		}
		if d := b.Deadline(); d.After(now.Add(backoff)) {
			t.Fatalf("retry %d: deadline %v is after its backoff %v", i+1, d.Sub(now), backoff)
		}
		if r := requests(b.Tick(now.Add(backoff - time.Millisecond))); len(r) != 0 {
			t.Fatalf("retry %d dispatched before its backoff of %v", i+1, backoff)
		}
		now = now.Add(backoff)
		r := requests(b.Tick(now))
		if len(r) != 1 {
			t.Fatalf("retry %d not dispatched", i+1)
		}
		if _, m, _ := dispatched(t, r[0]); m.Attempt != i+2 {
			t.Fatalf("retry attempt %d", m.Attempt)
		}
	}
	b.HandleWorker(now, "w1", "", fail)
	if info, _ := b.Job(id); info.State != protocol.JobFailed || info.Attempts != 3 || info.Error != "boom" {
		t.Fatalf("final: %+v", info)
	}
}

func TestBroker_CancelQueuedRunningAndFinished(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	running, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	_, queued, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToClient, "c"))

	md, ji := ask(t, b, "SERVER-CANCEL", queued.Job)
	if md.Status != protocol.StatusComplete || ji.State != protocol.JobFailed || ji.Code != protocol.CodeCancelled {
		t.Fatalf("cancel queued: %+v %+v", md, ji)
	}
	if q := b.Queue(); q[0].Queued != 0 {
		t.Fatal("cancelled job still queued")
	}
	out := b.HandleClient(t0, "q", "", request(v2, "SERVER-CANCEL", meta, []byte(running)))
	if d := commands(out, protocol.CmdDisconnect); len(d) != 1 || d[0].To != "w1" {
		t.Fatalf("running job's worker not stopped: %+v", out)
	}
	if info, _ := b.Job(running); info.Code != protocol.CodeCancelled {
		t.Fatalf("cancel running: %+v", info)
	}
	if len(b.Workers()) != 0 {
		t.Fatal("stopped worker still listed")
	}
	if md, _ := ask(t, b, "SERVER-CANCEL", running); md.Code != protocol.CodeConflict {
		t.Fatalf("cancel finished: %+v", md)
	}
	if md, _ := ask(t, b, "SERVER-CANCEL", "01NOPE"); md.Code != protocol.CodeNotFound {
		t.Fatalf("cancel unknown: %+v", md)
	}
}

func TestBroker_RetryFailedJobByHand(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", map[string]string{"p": "1"}, "input")), protocol.ToWorker, "w1"))
	if md, _ := ask(t, b, "SERVER-RETRY", id); md.Code != protocol.CodeConflict {
		t.Fatalf("retry of a running job: %+v", md)
	}
	code := 2
	b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusFailed, Error: "bad", ExitCode: &code}))
	out := b.HandleClient(t0, "q", "", request(v2, "SERVER-RETRY", meta, []byte(id)))
	r := requests(out)
	if len(r) != 1 {
		t.Fatalf("retried job not dispatched: %+v", out)
	}
	got, m, body := dispatched(t, r[0])
	if got != id || m.Attempt != 1 || m.Params["p"] != "1" || string(body[0]) != "input" {
		t.Fatalf("retry dispatch %s %+v %q: want the same job, params and input", got, m, body)
	}
	b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "ok"))
	if info, _ := b.Job(id); info.State != protocol.JobComplete || string(info.Output) != "ok" || info.ExitCode != nil {
		t.Fatalf("after retry: %+v", info)
	}
	if md, _ := ask(t, b, "SERVER-RETRY", id); md.Code != protocol.CodeConflict {
		t.Fatalf("retry of a completed job: %+v", md)
	}
}

func TestBroker_SyncJobNotRerunAfterStreaming(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("SYNC-S", nil)), protocol.ToWorker, "w1"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdPartial, id, []byte("half")))
	out := b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	if len(requests(out)) != 0 {
		t.Fatal("a sync job whose output had begun streaming was run again")
	}
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c"))
	if md.Status != protocol.StatusFailed || md.Code != protocol.CodeWorkerLost || !strings.Contains(md.Error, "began streaming") {
		t.Fatalf("final: %+v", md)
	}
}
