package broker_test

import (
	"strings"
	"testing"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

func TestBroker_ClientOversize(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	o := broker.Oversize{Head: zreq("S", nil), Frames: 2000, Bytes: 1 << 30}
	_, md, _ := clientReply(t, one(t, b.ClientOversize(t0, "c", "", o), protocol.ToClient, "c"))
	if md.Status != protocol.StatusRefused || md.Code != protocol.CodeBadRequest || !strings.Contains(md.Error, "2000 frames") {
		t.Fatalf("zmws client: %+v", md)
	}
	// A stock client is answered in its own form.
	o.Head = request(v1, "S")
	r, err := protocol.DecodeReply(one(t, b.ClientOversize(t0, "c", "", o), protocol.ToClient, "c").Frames)
	if err != nil || len(r.Body) != 3 || string(r.Body[0]) != protocol.FailFrame || string(r.Body[1]) != protocol.CodeBadRequest {
		t.Fatalf("stock client: %q %v", r.Body, err)
	}
	// Without a header and a service there is no one to answer.
	for _, head := range [][][]byte{nil, {[]byte("MDPC02")}, {[]byte("GET / HTTP/1.1")}} {
		o.Head = head
		if out := b.ClientOversize(t0, "c", "", o); len(out) != 0 {
			t.Fatalf("%q answered: %+v", head, out)
		}
	}
	if len(b.Jobs())+len(b.Active()) != 0 || b.Queue()[0].Queued != 0 {
		t.Fatal("an oversize request became a job")
	}
}

func TestBroker_WorkerOversize(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))

	// The first frames of a FINAL too large to take: w1 is dropped and its
	// job waits for another worker.
	o := broker.Oversize{Head: final(id, protocol.Meta{Status: protocol.StatusComplete})[:3], Frames: 2000, Bytes: 1 << 30}
	out := b.WorkerOversize(t0, "w1", "", o)
	if d := commands(out, protocol.CmdDisconnect); len(d) != 1 || d[0].To != "w1" {
		t.Fatalf("want DISCONNECT to w1, got %+v", out)
	}
	if len(b.Workers()) != 0 {
		t.Fatalf("w1 still known: %+v", b.Workers())
	}
	got, _, _ := dispatched(t, one(t, b.HandleWorker(t0, "w2", "", readyZ("S")), protocol.ToWorker, "w2"))
	if got != id {
		t.Fatalf("w2 got %s, want the job w1 held (%s)", got, id)
	}
	// A header that is not a worker's: dropped, unanswered.
	o.Head = [][]byte{[]byte("GET / HTTP/1.1")}
	if out := b.WorkerOversize(t0, "w3", "", o); len(out) != 0 {
		t.Fatalf("answered: %+v", out)
	}
}
