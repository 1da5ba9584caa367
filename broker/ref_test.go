package broker_test

import (
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// refReq is a zmws request with a reference, as client.Client sends.
func refReq(service, ref string, input ...[]byte) [][]byte {
	body := append([][]byte{protocol.EncodeMeta(protocol.Meta{Ref: ref})}, input...)
	return request(v2, service, body...)
}

// replyRef decodes a reply's meta frame, PARTIALs too, and returns it with
// the frames after it.
func replyRef(t *testing.T, e protocol.Envelope) (protocol.Command, protocol.Meta, [][]byte) {
	t.Helper()
	m, err := protocol.DecodeReply(e.Frames)
	if err != nil {
		t.Fatalf("decode reply: %v", err)
	}
	md, rest, ok, err := protocol.SplitMeta(m.Body)
	if err != nil || !ok {
		t.Fatalf("%v reply without meta: %q (%v)", m.Cmd, m.Body, err)
	}
	return m.Cmd, md, rest
}

// TestBroker_AddressedReplies: a client that sends a ref gets it back in
// every reply (queries, refusals, mmi, PARTIALs with the job's ID, the
// final).
func TestBroker_AddressedReplies(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("TAIL"))

	for _, q := range []string{protocol.ServerWorkers, protocol.ServerHealth, protocol.ServerServices, protocol.ServerJobs, protocol.MMIService, "nosuch"} {
		out := b.HandleClient(t0, "c1", "", refReq(q, "q-"+q, []byte("TAIL")))
		if _, md, _ := replyRef(t, one(t, out, protocol.ToClient, "c1")); md.Ref != "q-"+q {
			t.Errorf("%s: reply ref %q, want q-%s", q, md.Ref, q)
		}
	}

	out := b.HandleClient(t0, "c1", "", refReq("SYNC-TAIL", "s1", []byte("in")))
	none(t, out, protocol.ToClient) // dispatched at once: nothing until it runs a while
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	out = b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdPartial, id, []byte("one\n")))
	cmd, md, rest := replyRef(t, one(t, out, protocol.ToClient, "c1"))
	if cmd != protocol.CmdPartial || md.Ref != "s1" || md.Job != id || len(rest) != 1 || string(rest[0]) != "one\n" {
		t.Fatalf("partial: %v %+v %q; want ref s1 and job %s, then the output", cmd, md, rest, id)
	}
	out = b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "two\n"))
	cmd, md, rest = replyRef(t, one(t, out, protocol.ToClient, "c1"))
	if cmd != protocol.CmdReply || md.Ref != "s1" || md.Status != protocol.StatusComplete || string(rest[0]) != "two\n" {
		t.Fatalf("final: %v %+v %q", cmd, md, rest)
	}

	// Without a ref, the partial is the output alone, as before.
	out = b.HandleClient(t0, "c2", "", zreq("SYNC-TAIL", nil))
	none(t, out, protocol.ToClient)
	id, _, _ = dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	out = b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdPartial, id, []byte("raw")))
	if m, _, payload := clientReply(t, one(t, out, protocol.ToClient, "c2")); m.Cmd != protocol.CmdPartial || len(payload) != 1 || string(payload[0]) != "raw" {
		t.Fatalf("partial without ref: %q", payload)
	}
}

// TestBroker_AcceptedSaysNoWorker: a job for a known service with no worker
// connected is accepted with code no_worker, async and sync alike.
func TestBroker_AcceptedSaysNoWorker(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("SLEEP"))
	out := b.HandleClient(t0, "c1", "", refReq("SLEEP", "a"))
	if _, md, _ := replyRef(t, one(t, out, protocol.ToClient, "c1")); md.Code != "" {
		t.Errorf("accepted with a worker connected: code %q, want none", md.Code)
	}
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	for _, svc := range []string{"SLEEP", "SYNC-SLEEP"} {
		out := b.HandleClient(t0, "c1", "", refReq(svc, "b"))
		_, md, _ := replyRef(t, one(t, out, protocol.ToClient, "c1"))
		if md.Status != protocol.StatusAccepted || md.Code != protocol.CodeNoWorker || md.Error == "" {
			t.Errorf("%s with no worker connected: %+v; want accepted, code no_worker and a notice", svc, md)
		}
	}
}

// TestBroker_SyncAcceptedWhenItWaitsOrRuns: an addressed sync client is told
// "accepted" with the job's ID at once when its job waits in the queue, and
// at the first scan (every 250 ms) after it has run 100 ms without a word;
// a job that ends or speaks sooner costs no such message.
func TestBroker_SyncAcceptedWhenItWaitsOrRuns(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.Tick(t0)
	b.HandleWorker(t0, "w1", "", readyZ("S"))

	// Dispatched at once and quiet: told at +100 ms, once.
	out := b.HandleClient(t0, "c1", "", refReq("SYNC-S", "a"))
	none(t, out, protocol.ToClient)
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	if d := b.Deadline(); d.After(at(250 * time.Millisecond)) {
		t.Fatalf("deadline %v, want the acceptance scan due at +250ms", d.Sub(t0))
	}
	none(t, b.Tick(at(249*time.Millisecond)), protocol.ToClient)
	cmd, md, rest := replyRef(t, one(t, b.Tick(at(250*time.Millisecond)), protocol.ToClient, "c1"))
	if cmd != protocol.CmdPartial || md.Status != protocol.StatusAccepted || md.Job != id || md.Ref != "a" || len(rest) != 0 {
		t.Fatalf("due acceptance: %v %+v %q", cmd, md, rest)
	}
	none(t, b.Tick(at(500*time.Millisecond)), protocol.ToClient)

	// Queued behind it: told at once.
	out = b.HandleClient(at(time.Second), "c2", "", refReq("SYNC-S", "b"))
	if _, md, _ := replyRef(t, one(t, out, protocol.ToClient, "c2")); md.Status != protocol.StatusAccepted || md.Code != "" {
		t.Fatalf("queued sync job: %+v, want accepted at once", md)
	}

	// Ended before the delay: only its final reply.
	out = b.HandleWorker(at(time.Second), "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "x"))
	id2, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1")) // c2's job starts
	out = b.HandleWorker(at(time.Second+10*time.Millisecond), "w1", "", final(id2, protocol.Meta{Status: protocol.StatusComplete}))
	one(t, out, protocol.ToClient, "c2")
	out = b.HandleClient(at(2*time.Second), "c3", "", refReq("SYNC-S", "c"))
	id3, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	out = b.HandleWorker(at(2*time.Second+time.Millisecond), "w1", "", final(id3, protocol.Meta{Status: protocol.StatusComplete}))
	if _, md, _ := replyRef(t, one(t, out, protocol.ToClient, "c3")); md.Status != protocol.StatusComplete {
		t.Fatalf("final: %+v", md)
	}
	none(t, b.Tick(at(3*time.Second)), protocol.ToClient)
}
