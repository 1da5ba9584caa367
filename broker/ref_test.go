package broker_test

import (
	"testing"

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
// every reply (queries, refusals, mmi, PARTIALs, the final), and a sync
// job's first reply is a PARTIAL saying it was accepted, with its job ID.
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
	cmd, md, rest := replyRef(t, one(t, out, protocol.ToClient, "c1"))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	if cmd != protocol.CmdPartial || md.Status != protocol.StatusAccepted || md.Job != id || md.Ref != "s1" || md.Code != "" || len(rest) != 0 {
		t.Fatalf("first reply to a sync request: %v %+v %q; want PARTIAL accepted, job %s, ref s1, no code", cmd, md, rest, id)
	}
	out = b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdPartial, id, []byte("one\n")))
	cmd, md, rest = replyRef(t, one(t, out, protocol.ToClient, "c1"))
	if cmd != protocol.CmdPartial || md.Ref != "s1" || len(rest) != 1 || string(rest[0]) != "one\n" {
		t.Fatalf("partial: %v %+v %q; want ref s1 then the output", cmd, md, rest)
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
