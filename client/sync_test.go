package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// accept sends r the PARTIAL a zmws broker sends when it queues a sync job.
func (f *fakeBroker) accept(r received, job string, noWorker bool) {
	f.t.Helper()
	m := protocol.Meta{Status: protocol.StatusAccepted, Job: job, Ref: r.meta.Ref}
	if noWorker {
		m.Code, m.Error = protocol.CodeNoWorker, "no worker is connected"
	}
	f.send(r.id, protocol.CmdPartial, r.msg.Service, protocol.EncodeMeta(m))
}

// answerJob answers a SERVER-JOB query with info.
func (f *fakeBroker) answerJob(q received, info protocol.JobInfo) {
	f.t.Helper()
	body, err := json.Marshal(info)
	if err != nil {
		f.t.Fatal(err)
	}
	f.final(q, protocol.Meta{Status: protocol.StatusComplete}, body)
}

// recvFor waits for the next request, which must be for service.
func (f *fakeBroker) recvFor(service string) received {
	f.t.Helper()
	r := f.recv()
	if r.msg.Service != service {
		f.t.Fatalf("request for %s, want %s", r.msg.Service, service)
	}
	return r
}

func TestCall_OnAcceptedSaysNoWorker(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	got := make(chan client.Accepted, 1)
	ch := async(func() (*client.Result, error) {
		return c.CallWith(context.Background(), "rev", client.Request{}, client.CallHooks{OnAccepted: func(a client.Accepted) { got <- a }})
	})
	r := fb.recvFor("SYNC-rev")
	fb.accept(r, "J1", true)
	select {
	case a := <-got:
		if a.JobID != "J1" || !a.NoWorker || a.Notice == "" {
			t.Errorf("accepted %+v, want J1 with NoWorker and a notice", a)
		}
	case <-time.After(waitLong):
		t.Fatal("OnAccepted not called")
	}
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete, Job: "J1"}, []byte("ok"))
	if res, err := await(t, ch); err != nil || string(res.Output) != "ok" {
		t.Fatalf("Call = %+v, %v", res, err)
	}
}

// TestCall_QuietJobIsAskedAbout: after Liveness of silence the client asks
// SERVER-JOB; a running job is waited on, and its final reply ends the call.
func TestCall_QuietJobIsAskedAbout(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Liveness: 100 * time.Millisecond})
	ch := async(func() (*client.Result, error) { return c.Call(context.Background(), "rev", client.Request{}, nil) })
	r := fb.recvFor("SYNC-rev")
	fb.accept(r, "J1", false)
	for range 2 {
		q := fb.recvFor(protocol.ServerJob)
		if len(q.in) != 1 || string(q.in[0]) != "J1" {
			t.Fatalf("SERVER-JOB body %q, want J1", q.in)
		}
		fb.answerJob(q, protocol.JobInfo{ID: "J1", State: "active"})
	}
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete, Job: "J1"}, []byte("done"))
	if res, err := await(t, ch); err != nil || string(res.Output) != "done" {
		t.Fatalf("Call = %+v, %v", res, err)
	}
}

func TestCall_JobLostByTheBroker(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Liveness: 50 * time.Millisecond})
	ch := async(func() (*client.Result, error) { return c.Call(context.Background(), "rev", client.Request{}, nil) })
	fb.accept(fb.recvFor("SYNC-rev"), "J1", false)
	q := fb.recvFor(protocol.ServerJob)
	fb.final(q, protocol.Meta{Status: protocol.StatusRefused, Code: protocol.CodeNotFound, Error: "no job J1"})
	if res, err := await(t, ch); res != nil || !errors.Is(err, client.ErrLost) {
		t.Fatalf("Call = %+v, %v; want ErrLost", res, err)
	}
}

func TestCall_BrokerGoneIsATimeout(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Liveness: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Retries: 1})
	ch := async(func() (*client.Result, error) { return c.Call(context.Background(), "rev", client.Request{}, nil) })
	fb.accept(fb.recvFor("SYNC-rev"), "J1", false)
	fb.recvFor(protocol.ServerJob)
	fb.recvFor(protocol.ServerJob) // the retry
	res, err := await(t, ch)
	if res != nil || !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("Call = %+v, %v; want ErrTimeout", res, err)
	}
	t.Log(err)
}

// TestCall_FinalLostOutcomeFromRecord: a job that ended without its final
// reply reaching the client gets its result from SERVER-JOB, with the
// output not yet streamed.
func TestCall_FinalLostOutcomeFromRecord(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Liveness: 50 * time.Millisecond})
	var streamed []byte
	ch := async(func() (*client.Result, error) {
		return c.Call(context.Background(), "rev", client.Request{}, func(b []byte) error { streamed = append(streamed, b...); return nil })
	})
	r := fb.recvFor("SYNC-rev")
	fb.accept(r, "J1", false)
	fb.partial(r, []byte("abc"))
	q := fb.recvFor(protocol.ServerJob)
	fb.answerJob(q, protocol.JobInfo{ID: "J1", State: "failed", Code: protocol.CodeJobFailed, Error: "exit 2", ExitCode: intp(2),
		Attempts: 1, Output: []byte("abcdef")})
	res, err := await(t, ch)
	if err != nil || res.OK() || res.Code != protocol.CodeJobFailed || string(res.Output) != "def" || string(streamed) != "abc" {
		t.Fatalf("Call = %+v (streamed %q), %v; want failed with the rest of the output, def", res, streamed, err)
	}
}

// TestCall_RequestLostBeforeAccepted: a zmws broker that answers but never
// said it accepted the request has lost it (it restarted).
func TestCall_RequestLostBeforeAccepted(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Liveness: 50 * time.Millisecond})
	ch := async(func() (*client.Result, error) { return c.Call(context.Background(), "rev", client.Request{}, nil) })
	fb.recvFor("SYNC-rev") // dropped, as by a broker that died
	for range 2 {
		q := fb.recvFor(protocol.ServerHealth)
		fb.final(q, protocol.Meta{Status: protocol.StatusComplete}, []byte(`{"store":"none"}`))
	}
	if res, err := await(t, ch); res != nil || !errors.Is(err, client.ErrLost) {
		t.Fatalf("Call = %+v, %v; want ErrLost", res, err)
	}
}

// TestClient_StockBrokerWithoutReferences: replies that carry no reference
// go to the oldest request in flight for their service.
func TestClient_StockBrokerWithoutReferences(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Liveness: -1})
	ch := async(func() (*client.Result, error) { return c.Call(context.Background(), "rev", client.Request{}, nil) })
	r := fb.recvFor("SYNC-rev")
	chW := async(func() ([]protocol.WorkerInfo, error) { return c.Workers(context.Background()) })
	q := fb.recvFor(protocol.ServerWorkers)
	fb.stockFinal(q, protocol.Meta{Status: protocol.StatusComplete}, []byte(`[]`))
	if _, err := await(t, chW); err != nil {
		t.Fatal(err)
	}
	fb.stockPartial(r, []byte("cba"))
	fb.stockFinal(r, protocol.Meta{Status: protocol.StatusComplete, Job: "J"})
	if res, err := await(t, ch); err != nil || string(res.Output) != "cba" {
		t.Fatalf("Call = %+v, %v", res, err)
	}
}

// TestCall_JobIDFromOutput: a job that speaks before it is announced gives
// its ID with its first output, and OnAccepted is called before that output.
func TestCall_JobIDFromOutput(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	var order []string
	ch := async(func() (*client.Result, error) {
		return c.CallWith(context.Background(), "rev", client.Request{}, client.CallHooks{
			OnAccepted: func(a client.Accepted) { order = append(order, "accepted "+a.JobID) },
			OnPartial:  func(b []byte) error { order = append(order, "out "+string(b)); return nil },
		})
	})
	r := fb.recvFor("SYNC-rev")
	meta := protocol.EncodeMeta(protocol.Meta{Ref: r.meta.Ref, Job: "J9"})
	fb.send(r.id, protocol.CmdPartial, r.msg.Service, meta, []byte("x"))
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete, Job: "J9"})
	if _, err := await(t, ch); err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || order[0] != "accepted J9" || order[1] != "out x" {
		t.Fatalf("hooks called %q, want accepted J9 then out x", order)
	}
}
