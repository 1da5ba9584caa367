package broker_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// tsp decodes a Titanic reply to a stock client: the service it echoes and
// its body (status first). A Titanic reply never carries a meta frame.
func tsp(t *testing.T, e protocol.Envelope) (string, []string) {
	t.Helper()
	m, err := protocol.DecodeReply(e.Frames)
	if err != nil {
		t.Fatalf("decode reply: %v", err)
	}
	if len(m.Body) > 0 && protocol.IsMeta(m.Body[0]) {
		t.Fatalf("Titanic reply with a meta frame: %q", m.Body)
	}
	return m.Service, framesStr(m.Body)
}

// wantTSP checks the one reply to c is on service with a body starting
// with want.
func wantTSP(t *testing.T, out []protocol.Envelope, c, service string, want ...string) []string {
	t.Helper()
	svc, body := tsp(t, one(t, out, protocol.ToClient, c))
	if svc != service || len(body) < len(want) || !slices.Equal(body[:len(want)], want) {
		t.Fatalf("reply %s %q, want %s %q...", svc, body, service, want)
	}
	return body
}

// ti is a Titanic request from a 7/MDP client on a REQ socket (the Guide's
// mdcliapi, which ticlient uses).
func ti(service string, body ...string) [][]byte {
	frames := make([][]byte, len(body))
	for i, s := range body {
		frames[i] = []byte(s)
	}
	return request(v1, service, frames...)
}

// The Guide's ticlient's round: request (the ID after the commit), reply
// "300" while the job waits and runs, "200" and the output once it
// completed, close (after its delete is committed), then "400".
func TestBroker_TitanicRequestReplyClose(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyStock("echo"))
	b.HandleWorker(t0, "w1", "", workerMsg(v1, protocol.CmdDisconnect, ""))
	b.Flush()
	b.Committed()

	out := b.HandleClient(t0, "c", "", ti(protocol.TitanicRequest, "echo", "Hello world"))
	none(t, out, protocol.ToClient) // the ID waits for the commit
	batch := b.Flush()
	if len(batch.Jobs) != 1 || batch.Jobs[0].Service != "echo" || batch.Jobs[0].Sync || string(batch.Jobs[0].Input[0]) != "Hello world" {
		t.Fatalf("batch %+v: want the async job of echo", batch.Jobs)
	}
	body := wantTSP(t, b.Committed(), "c", protocol.TitanicRequest, protocol.TSPOK)
	if len(body) != 2 || body[1] != batch.Jobs[0].ID {
		t.Fatalf("titanic.request answered %q, want 200 and job %s", body, batch.Jobs[0].ID)
	}
	id := body[1]

	// Queued (no worker), then running: pending.
	wantTSP(t, b.HandleClient(at(time.Second), "c", "", ti(protocol.TitanicReply, id)), "c", protocol.TitanicReply, protocol.TSPPending)
	out = b.HandleWorker(at(2*time.Second), "w2", "", readyStock("echo"))
	if job, _, in := dispatched(t, one(t, out, protocol.ToWorker, "w2")); job != id || len(in) != 1 || string(in[0]) != "Hello world" {
		t.Fatalf("dispatched %s %q", job, in)
	}
	wantTSP(t, b.HandleClient(at(3*time.Second), "c", "", ti(protocol.TitanicReply, id)), "c", protocol.TitanicReply, protocol.TSPPending)

	b.HandleWorker(at(4*time.Second), "w2", "", workerMsg(v1, protocol.CmdReply, id, []byte("Hello world")))
	for range 2 { // idempotent
		body = wantTSP(t, b.HandleClient(at(5*time.Second), "c", "", ti(protocol.TitanicReply, id)), "c", protocol.TitanicReply, protocol.TSPOK)
		if len(body) != 2 || body[1] != "Hello world" {
			t.Fatalf("titanic.reply of the completed job: %q", body)
		}
	}
	b.Flush()
	b.Committed()

	none(t, b.HandleClient(at(6*time.Second), "c", "", ti(protocol.TitanicClose, id)), protocol.ToClient)
	batch = b.Flush()
	if !slices.Equal(batch.Deletes, []string{id}) {
		t.Fatalf("close deletes %q, want the job", batch.Deletes)
	}
	wantTSP(t, b.Committed(), "c", protocol.TitanicClose, protocol.TSPOK)
	body = wantTSP(t, b.HandleClient(at(7*time.Second), "c", "", ti(protocol.TitanicReply, id)), "c", protocol.TitanicReply, protocol.TSPUnknown, protocol.CodeNotFound)
	if len(body) != 3 || !strings.Contains(body[2], id) {
		t.Fatalf("titanic.reply of a closed job: %q", body)
	}
	if _, ok := b.Job(id); ok {
		t.Fatal("a closed job is still held")
	}
	// Close is idempotent: an unknown or closed ID is closed.
	b.HandleClient(at(8*time.Second), "c", "", ti(protocol.TitanicClose, id))
	b.Flush()
	wantTSP(t, b.Committed(), "c", protocol.TitanicClose, protocol.TSPOK)
	wantTSP(t, b.HandleClient(at(8*time.Second), "c", "", ti(protocol.TitanicClose, "nonsense")), "c", protocol.TitanicClose, protocol.TSPOK)
}

// An 18/MDP client is answered in 18/MDP, and without a journal nothing
// waits for a commit.
func TestBroker_TitanicOver18MDP(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("echo"))
	out := b.HandleClient(t0, "c", "", request(v2, protocol.TitanicRequest, []byte("echo"), []byte("a"), []byte("b")))
	e := one(t, out, protocol.ToClient, "c")
	m, err := protocol.DecodeReply(e.Frames)
	if err != nil || m.Form != v2 || m.Cmd != protocol.CmdReply || m.Service != protocol.TitanicRequest || len(m.Body) != 2 || string(m.Body[0]) != protocol.TSPOK {
		t.Fatalf("reply %+v %v", m, err)
	}
	id := string(m.Body[1])
	job, _, in := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	if job != id || len(in) != 2 || string(in[0]) != "a" || string(in[1]) != "b" {
		t.Fatalf("dispatched %s %q, want the request's frames", job, in)
	}
	b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "x", "y"))
	e = one(t, b.HandleClient(t0, "c", "", request(v2, protocol.TitanicReply, []byte(id))), protocol.ToClient, "c")
	if m, err = protocol.DecodeReply(e.Frames); err != nil || m.Form != v2 || len(m.Body) != 2 || string(m.Body[0]) != protocol.TSPOK || string(m.Body[1]) != "xy" {
		t.Fatalf("reply %+v %v: want 200 and the output", m, err)
	}
	wantTSP(t, b.HandleClient(t0, "c", "", request(v2, protocol.TitanicClose, []byte(id))), "c", protocol.TitanicClose, protocol.TSPOK)
	wantTSP(t, b.HandleClient(t0, "c", "", request(v2, protocol.TitanicReply, []byte(id))), "c", protocol.TitanicReply, protocol.TSPUnknown)
}

// A job that failed for good is no answer of its service: "500", its code
// and error. One with a retry ahead is pending.
func TestBroker_TitanicFailedJob(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	body := wantTSP(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicRequest, "S", "in")), "c", protocol.TitanicRequest, protocol.TSPOK)
	id := body[1]
	b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusFailed, Error: "exit status 2"}, "partial"))
	body = wantTSP(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicReply, id)), "c", protocol.TitanicReply, protocol.TSPError, protocol.CodeJobFailed)
	if len(body) != 3 || !strings.Contains(body[2], "exit status 2") {
		t.Fatalf("titanic.reply of a failed job: %q", body)
	}

	// Retried by hand: pending again.
	b.HandleClient(t0, "admin", "", zreq(protocol.ServerRetry, nil, id))
	wantTSP(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicReply, id)), "c", protocol.TitanicReply, protocol.TSPPending)
}

// Bad input gets a status and a reason at once, never silence.
func TestBroker_TitanicBadInput(t *testing.T) {
	b := newBroker(t, broker.Config{MaxQueue: 1})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v1, protocol.CmdDisconnect, ""))
	for _, tc := range []struct {
		msg     [][]byte
		service string
		status  string
		code    string
	}{
		{ti(protocol.TitanicRequest), protocol.TitanicRequest, protocol.TSPUnknown, protocol.CodeBadRequest},
		{ti(protocol.TitanicRequest, ""), protocol.TitanicRequest, protocol.TSPUnknown, protocol.CodeBadRequest},
		{ti(protocol.TitanicRequest, "SYNC-S", "in"), protocol.TitanicRequest, protocol.TSPUnknown, protocol.CodeBadRequest},
		{ti(protocol.TitanicRequest, "titanic.request", "S"), protocol.TitanicRequest, protocol.TSPUnknown, protocol.CodeBadRequest},
		{ti(protocol.TitanicRequest, "NOPE", "in"), protocol.TitanicRequest, protocol.TSPUnknown, protocol.CodeUnknownService},
		{ti(protocol.TitanicReply), protocol.TitanicReply, protocol.TSPUnknown, protocol.CodeBadRequest},
		{ti(protocol.TitanicReply, ""), protocol.TitanicReply, protocol.TSPUnknown, protocol.CodeBadRequest},
		{ti(protocol.TitanicReply, "nonsense"), protocol.TitanicReply, protocol.TSPUnknown, protocol.CodeNotFound},
		{ti(protocol.TitanicClose), protocol.TitanicClose, protocol.TSPUnknown, protocol.CodeBadRequest},
		{ti("titanic.nope", "x"), "titanic.nope", protocol.TSPNotImplemented, protocol.CodeUnknownService},
		{request(v2, protocol.TitanicRequest, meta, []byte("S")), protocol.TitanicRequest, protocol.TSPUnknown, protocol.CodeBadRequest},
		{ti(protocol.TitanicRequest, "S", "1"), protocol.TitanicRequest, protocol.TSPOK, ""},
		{ti(protocol.TitanicRequest, "S", "2"), protocol.TitanicRequest, protocol.TSPError, protocol.CodeQueueFull},
	} {
		body := wantTSP(t, b.HandleClient(t0, "c", "", tc.msg), "c", tc.service, tc.status)
		switch {
		case tc.code == "" && len(body) != 2:
			t.Errorf("%q: %q, want the status and a job ID", framesStr(tc.msg), body)
		case tc.code != "" && (len(body) != 3 || body[1] != tc.code || body[2] == ""):
			t.Errorf("%q: %q, want %s %s and a reason", framesStr(tc.msg), body, tc.status, tc.code)
		}
	}
}

// Closing a job that has not finished cancels it: a queued one never runs,
// a running one's worker is stopped.
func TestBroker_TitanicCloseCancelsUnfinishedJobs(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	b.HandleClient(t0, "c", "", ti(protocol.TitanicRequest, "S", "runs"))
	b.HandleClient(t0, "c", "", ti(protocol.TitanicRequest, "S", "waits"))
	b.Flush()
	out := b.Committed()
	if len(out) != 2 {
		t.Fatalf("acceptances %+v", out)
	}
	_, running := tsp(t, out[0])
	_, waiting := tsp(t, out[1])

	none(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicClose, waiting[1])), protocol.ToClient)
	batch := b.Flush()
	if !slices.Equal(batch.Deletes, []string{waiting[1]}) {
		t.Fatalf("deletes %q", batch.Deletes)
	}
	wantTSP(t, b.Committed(), "c", protocol.TitanicClose, protocol.TSPOK)
	if q := b.Queue(); q[0].Queued != 0 {
		t.Fatalf("the closed job is still queued: %+v", q)
	}

	out = b.HandleClient(t0, "c", "", ti(protocol.TitanicClose, running[1]))
	if d := commands(out, protocol.CmdDisconnect); len(d) != 1 || d[0].To != "w1" {
		t.Fatalf("closing a running job: %+v, want its worker stopped", out)
	}
	b.Flush()
	wantTSP(t, b.Committed(), "c", protocol.TitanicClose, protocol.TSPOK)
	// The worker's late reply finds no job.
	none(t, b.HandleWorker(t0, "w1", "", workerMsg(v1, protocol.CmdReply, running[1], []byte("late"))), protocol.ToClient)
	wantTSP(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicReply, running[1])), "c", protocol.TitanicReply, protocol.TSPUnknown)
}

// A journal that fails the commit refuses the request with "500": the
// client tries again later.
func TestBroker_TitanicRejectedCommit(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	b.Flush()
	b.Committed()
	b.HandleClient(t0, "c", "", ti(protocol.TitanicRequest, "S", "in"))
	b.Flush()
	wantTSP(t, b.Rejected(t0, errors.New("disk full")), "c", protocol.TitanicRequest, protocol.TSPError, protocol.CodeStoreUnavailable)
}

// Jobs the broker no longer holds are answered from the journal, through a
// Lookup; a close of one is a delete.
func TestBroker_TitanicArchivedJobs(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Archived: true})
	done := broker.JobRecord{ID: testID("01DEAD"), Service: "S", State: protocol.JobComplete, Created: t0, Output: []byte("out"), Retries: -1}
	a := newArchive(oldJob, done)

	none(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicReply, done.ID)), protocol.ToClient)
	body := wantTSP(t, answerLookups(t, b, a), "c", protocol.TitanicReply, protocol.TSPOK)
	if len(body) != 2 || body[1] != "out" {
		t.Fatalf("archived complete job: %q", body)
	}
	none(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicReply, oldJob.ID)), protocol.ToClient)
	wantTSP(t, answerLookups(t, b, a), "c", protocol.TitanicReply, protocol.TSPError, protocol.CodeJobFailed)
	none(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicReply, testID("01NNE"))), protocol.ToClient)
	wantTSP(t, answerLookups(t, b, a), "c", protocol.TitanicReply, protocol.TSPUnknown, protocol.CodeNotFound)
	// A failing journal is no "unknown": the client asks again later.
	a.err = errors.New("disk on fire")
	none(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicReply, done.ID)), protocol.ToClient)
	wantTSP(t, answerLookups(t, b, a), "c", protocol.TitanicReply, protocol.TSPError, protocol.CodeStoreUnavailable)
	a.err = nil

	// A trusted client's close needs no lookup: the delete is the close.
	none(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicClose, done.ID)), protocol.ToClient)
	if ls := b.Lookups(); len(ls) != 0 {
		t.Fatalf("lookups %+v", ls)
	}
	batch := b.Flush()
	if !slices.Equal(batch.Deletes, []string{done.ID}) {
		t.Fatalf("deletes %q", batch.Deletes)
	}
	wantTSP(t, b.Committed(), "c", protocol.TitanicClose, protocol.TSPOK)
}

// With keys, a Titanic request is a submission under the key's rights, and
// only the key that submitted a job (or an admin) reads or closes it.
func TestBroker_TitanicKeyRights(t *testing.T) {
	acc := newAccess()
	acc.clients["eve"] = "A*"
	b := newBroker(t, broker.Config{Access: acc, Durable: true, Archived: true})
	b.HandleWorker(t0, "w1", "wall", readyStock("A1"))
	b.HandleWorker(t0, "w2", "wall", readyStock("B1"))
	b.Flush()
	b.Committed()
	wantTSP(t, b.HandleClient(t0, "c", "bob", ti(protocol.TitanicRequest, "B1", "x")), "c", protocol.TitanicRequest, protocol.TSPUnknown, protocol.CodeForbidden)

	b.HandleClient(t0, "c", "bob", ti(protocol.TitanicRequest, "A1", "x"))
	b.Flush()
	id := wantTSP(t, b.Committed(), "c", protocol.TitanicRequest, protocol.TSPOK)[1]
	wantTSP(t, b.HandleClient(t0, "e", "eve", ti(protocol.TitanicReply, id)), "e", protocol.TitanicReply, protocol.TSPUnknown, protocol.CodeForbidden)
	wantTSP(t, b.HandleClient(t0, "e", "eve", ti(protocol.TitanicClose, id)), "e", protocol.TitanicClose, protocol.TSPUnknown, protocol.CodeForbidden)
	wantTSP(t, b.HandleClient(t0, "c", "bob", ti(protocol.TitanicReply, id)), "c", protocol.TitanicReply, protocol.TSPPending)
	wantTSP(t, b.HandleClient(t0, "a", "alice", ti(protocol.TitanicReply, id)), "a", protocol.TitanicReply, protocol.TSPPending)

	// A job only the journal holds: whose it is takes a lookup.
	rec := broker.JobRecord{ID: testID("01BBS"), Service: "A1", State: protocol.JobComplete, Owner: "bob", Created: t0, Retries: -1}
	a := newArchive(rec)
	none(t, b.HandleClient(t0, "e", "eve", ti(protocol.TitanicClose, rec.ID)), protocol.ToClient)
	wantTSP(t, answerLookups(t, b, a), "e", protocol.TitanicClose, protocol.TSPUnknown, protocol.CodeForbidden)
	none(t, b.HandleClient(t0, "c", "bob", ti(protocol.TitanicClose, rec.ID)), protocol.ToClient)
	none(t, answerLookups(t, b, a), protocol.ToClient)
	if batch := b.Flush(); !slices.Equal(batch.Deletes, []string{rec.ID}) {
		t.Fatalf("deletes %q", batch.Deletes)
	}
	wantTSP(t, b.Committed(), "c", protocol.TitanicClose, protocol.TSPOK)
}
