package broker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// access is a fake broker.Access: per key, the service patterns it may use
// (workers: offer; clients: submit) and whether it may administer.
type access struct {
	workers map[string]string // key → pattern
	clients map[string]string
	admins  map[string]bool
	gen     uint64
}

func (a *access) MayOffer(user, service string) bool { return match(a.workers, user, service) }
func (a *access) MaySubmit(user, service string) bool {
	return match(a.clients, user, service)
}
func (a *access) MayAdmin(user string) bool { return a.admins[user] }
func (a *access) Generation() uint64        { return a.gen }
func (a *access) Name(user string) string   { return user }

func match(m map[string]string, user, service string) bool {
	p, ok := m[user]
	if !ok {
		return false
	}
	ok, _ = path.Match(p, service)
	return ok
}

func newAccess() *access {
	return &access{
		workers: map[string]string{"wa": "A*", "wall": "*"},
		clients: map[string]string{"alice": "*", "bob": "A*"},
		admins:  map[string]bool{"alice": true},
		gen:     1,
	}
}

// refusedWith checks the reply to c is a refusal with code.
func refusedWith(t *testing.T, out []protocol.Envelope, c, code string) protocol.Meta {
	t.Helper()
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, c))
	if md.Status != protocol.StatusRefused || md.Code != code {
		t.Fatalf("reply to %s = %+v, want refused with %s", c, md, code)
	}
	return md
}

// disconnected checks out holds one DISCONNECT to w, with a forbidden
// reason when forbidden is set.
func disconnected(t *testing.T, out []protocol.Envelope, w string, forbidden bool) {
	t.Helper()
	m, err := protocol.DecodeWorker(one(t, out, protocol.ToWorker, w).Frames)
	if err != nil || m.Cmd != protocol.CmdDisconnect {
		t.Fatalf("want DISCONNECT to %s, got %v %v", w, m.Cmd, err)
	}
	if !forbidden {
		return
	}
	md, _, ok, err := protocol.SplitMeta(m.Body)
	if !ok || err != nil || md.Code != protocol.CodeForbidden {
		t.Fatalf("DISCONNECT to %s without a forbidden reason: %q", w, m.Body)
	}
}

func TestBroker_WorkerKeyOffersOnlyItsServices(t *testing.T) {
	b := newBroker(t, broker.Config{Access: newAccess()})
	disconnected(t, b.HandleWorker(t0, "w1", "wa", readyZ("BILLING")), "w1", true)
	disconnected(t, b.HandleWorker(t0, "w2", "", readyZ("A1")), "w2", true)        // no key on the worker socket
	disconnected(t, b.HandleWorker(t0, "w3", "alice", readyZ("A1")), "w3", true)   // a client key
	disconnected(t, b.HandleWorker(t0, "w4", "mallory", readyZ("A1")), "w4", true) // unknown
	if ws := b.Workers(); len(ws) != 0 {
		t.Fatalf("refused workers listed: %+v", ws)
	}
	none(t, b.HandleWorker(t0, "w5", "wa", readyZ("A1")), protocol.ToWorker)
	// BILLING was never offered: submitting to it is unknown, not queued.
	refusedWith(t, b.HandleClient(t0, "c1", "alice", zreq("BILLING", nil)), "c1", protocol.CodeUnknownService)
	out := b.HandleClient(t0, "c1", "alice", zreq("A1", nil))
	dispatched(t, one(t, out, protocol.ToWorker, "w5"))
}

func TestBroker_WorkerIsKnownByItsKey(t *testing.T) {
	b := newBroker(t, broker.Config{Access: newAccess()})
	b.HandleWorker(t0, "w1", "wa", readyZ("A1"))
	out := b.HandleClient(t0, "c1", "alice", zreq("SYNC-A1", nil))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	// Another key speaks under w1's routing id: it may not answer w1's job.
	out = b.HandleWorker(at(time.Millisecond), "w1", "wall", final(id, protocol.Meta{Status: protocol.StatusComplete}, "forged"))
	disconnected(t, out, "w1", false)
	none(t, out, protocol.ToClient)
	if ws := b.Workers(); len(ws) != 0 {
		t.Fatalf("the worker whose connection was taken over is still listed: %+v", ws)
	}
	// The job is queued again for a worker that holds a right key.
	out = b.HandleWorker(at(2*time.Millisecond), "w2", "wa", readyZ("A1"))
	id2, md, _ := dispatched(t, one(t, out, protocol.ToWorker, "w2"))
	if id2 != id || md.Attempt != 2 {
		t.Fatalf("redispatch = %s attempt %d, want %s attempt 2", id2, md.Attempt, id)
	}
}

func TestBroker_WorkerDroppedWhenReloadTakesItsRightAway(t *testing.T) {
	a := newAccess()
	b := newBroker(t, broker.Config{Access: a})
	b.HandleWorker(t0, "w1", "wa", readyZ("A1"))
	none(t, b.HandleWorker(at(time.Millisecond), "w1", "wa", workerMsg(v2, protocol.CmdHeartbeat, "")), protocol.ToWorker)
	a.workers["wa"] = "B*"
	a.gen++
	disconnected(t, b.HandleWorker(at(2*time.Millisecond), "w1", "wa", workerMsg(v2, protocol.CmdHeartbeat, "")), "w1", true)
	if ws := b.Workers(); len(ws) != 0 {
		t.Fatalf("worker kept after its right was removed: %+v", ws)
	}
}

func TestBroker_ClientKeyRights(t *testing.T) {
	b := newBroker(t, broker.Config{Access: newAccess(), History: 10})
	b.HandleWorker(t0, "wA", "wall", readyZ("A1"))
	b.HandleWorker(t0, "wC", "wall", readyZ("C1"))
	_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c1", "bob", zreq("A1", nil)), protocol.ToClient, "c1"))
	if md.Status != protocol.StatusAccepted {
		t.Fatalf("bob submits to A1: %+v", md)
	}
	aJob := md.Job
	for _, svc := range []string{"C1", "SYNC-C1", "SYNC:C1", "NOSUCH"} {
		md := refusedWith(t, b.HandleClient(t0, "c1", "bob", zreq(svc, nil)), "c1", protocol.CodeForbidden)
		if !strings.Contains(md.Error, `"bob"`) {
			t.Errorf("refusal of %s does not name the key: %q", svc, md.Error)
		}
	}
	for _, q := range []string{protocol.ServerJobs, protocol.ServerActive, protocol.ServerQueue, protocol.ServerWorkers, protocol.ServerReload, "SERVER-NOSUCH"} {
		refusedWith(t, b.HandleClient(t0, "c1", "bob", zreq(q, nil)), "c1", protocol.CodeForbidden)
	}
	refusedWith(t, b.HandleClient(t0, "c1", "bob", zreq(protocol.ServerCancel, nil, aJob)), "c1", protocol.CodeForbidden)
	// A key may retry its own jobs (this one is not failed), as in a bulk
	// retry; another's: below.
	refusedWith(t, b.HandleClient(t0, "c1", "bob", zreq(protocol.ServerRetry, nil, aJob)), "c1", protocol.CodeConflict)
	// Open to every key: the list of services, and a job of a service it may use.
	for _, q := range [][][]byte{zreq(protocol.ServerServices, nil), zreq(protocol.ServerJob, nil, aJob)} {
		_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c1", "bob", q), protocol.ToClient, "c1"))
		if md.Status != protocol.StatusComplete {
			t.Errorf("bob's %s: %+v", q, md)
		}
	}
	_, md, _ = clientReply(t, one(t, b.HandleClient(t0, "c2", "alice", zreq("C1", nil)), protocol.ToClient, "c2"))
	refusedWith(t, b.HandleClient(t0, "c1", "bob", zreq(protocol.ServerJob, nil, md.Job)), "c1", protocol.CodeForbidden)
	refusedWith(t, b.HandleClient(t0, "c1", "bob", zreq(protocol.ServerRetry, nil, md.Job)), "c1", protocol.CodeForbidden)
	// The admin may do all of it; no key (inproc: the gateway) too.
	for _, user := range []string{"alice", ""} {
		_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c2", user, zreq(protocol.ServerJobs, nil)), protocol.ToClient, "c2"))
		if md.Status != protocol.StatusComplete {
			t.Errorf("%q SERVER-JOBS: %+v", user, md)
		}
	}
}

func TestBroker_Reload(t *testing.T) {
	var calls int
	fail := false
	b := newBroker(t, broker.Config{Access: newAccess(), Reload: func() error {
		calls++
		if fail {
			return errors.New("keys file x.toml: bad")
		}
		return nil
	}})
	_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c1", "alice", zreq(protocol.ServerReload, nil)), protocol.ToClient, "c1"))
	if md.Status != protocol.StatusComplete || calls != 1 {
		t.Fatalf("reload: %+v after %d calls", md, calls)
	}
	fail = true
	md = refusedWith(t, b.HandleClient(t0, "c1", "alice", zreq(protocol.ServerReload, nil)), "c1", protocol.CodeBadRequest)
	if !strings.Contains(md.Error, "x.toml") {
		t.Errorf("failed reload does not say why: %q", md.Error)
	}
	// Without keys, there is nothing to reload.
	plain := newBroker(t, broker.Config{})
	refusedWith(t, plain.HandleClient(t0, "c1", "", zreq(protocol.ServerReload, nil)), "c1", protocol.CodeBadRequest)
}

// TestBroker_EventsCarryNoJobData: events reach every watcher, so none
// carries a job's parameters, input, output or the worker's failure text
// (a command's stderr may quote them).
func TestBroker_EventsCarryNoJobData(t *testing.T) {
	b := newBroker(t, broker.Config{Events: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	out := b.HandleClient(t0, "c1", "", zreq("S", map[string]string{"p": "CANARY-param"}, "CANARY-input"))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	all := append([]protocol.Envelope{}, only(out, protocol.ToEvents)...)
	code := 3
	out = b.HandleWorker(at(time.Millisecond), "w1", "", final(id, protocol.Meta{Status: protocol.StatusFailed, ExitCode: &code, Error: "CANARY-stderr"}, "CANARY-output"))
	all = append(all, only(out, protocol.ToEvents)...)
	if len(all) < 3 {
		t.Fatalf("want queued, started and failed events, got %d", len(all))
	}
	for _, e := range all {
		for _, f := range e.Frames {
			if strings.Contains(string(f), "CANARY") {
				t.Errorf("event carries job data: %s", f)
			}
		}
	}
}

// TestBroker_IdempotencyKeysAreEachKeysOwn: one client key cannot find
// another's job by its idempotency key, nor take a key first; and a key
// reused for another service is a conflict, not the other job.
func TestBroker_IdempotencyKeysAreEachKeysOwn(t *testing.T) {
	b := newBroker(t, broker.Config{Access: newAccess()})
	b.HandleWorker(t0, "wA", "wall", readyZ("A1"))
	b.HandleWorker(t0, "wC", "wall", readyZ("C1"))
	submit := func(user, service, key string) protocol.Meta {
		t.Helper()
		body := [][]byte{protocol.EncodeMeta(protocol.Meta{Key: key})}
		_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c-"+user, user, request(v2, service, body...)), protocol.ToClient, "c-"+user))
		return md
	}
	bobs := submit("bob", "A1", "payroll-1") // bob takes the key first
	alices := submit("alice", "A1", "payroll-1")
	if bobs.Status != protocol.StatusAccepted || alices.Status != protocol.StatusAccepted || bobs.Job == alices.Job {
		t.Fatalf("bob %+v, alice %+v: want two jobs", bobs, alices)
	}
	if again := submit("alice", "A1", "payroll-1"); again.Job != alices.Job {
		t.Errorf("alice's resend got %s, want her job %s", again.Job, alices.Job)
	}
	if other := submit("alice", "C1", "payroll-1"); other.Status != protocol.StatusRefused || other.Code != protocol.CodeConflict {
		t.Errorf("the key reused for C1: %+v, want a conflict", other)
	}
}

// TestBroker_KeysSeeOnlyTheirServices: mmi.service and SERVER-SERVICES
// tell a key of the services it may use, and of no others.
func TestBroker_KeysSeeOnlyTheirServices(t *testing.T) {
	b := newBroker(t, broker.Config{Access: newAccess()})
	b.HandleWorker(t0, "wA", "wall", readyZ("A1"))
	b.HandleWorker(t0, "wC", "wall", readyZ("C1"))
	mmi := func(user, name string) string {
		_, _, rest := clientReply(t, one(t, b.HandleClient(t0, "c", user, zreq(protocol.MMIService, nil, name)), protocol.ToClient, "c"))
		return string(rest[0])
	}
	if got := mmi("bob", "A1"); got != protocol.MMIFound {
		t.Errorf("bob asks for A1: %s", got)
	}
	if got := mmi("bob", "C1"); got != protocol.MMINotFound {
		t.Errorf("bob asks for C1 (not his): %s, want 404", got)
	}
	if got := mmi("alice", "C1"); got != protocol.MMIFound {
		t.Errorf("alice asks for C1: %s", got)
	}
	names := func(user string) []string {
		_, _, rest := clientReply(t, one(t, b.HandleClient(t0, "c", user, zreq(protocol.ServerServices, nil)), protocol.ToClient, "c"))
		var list []protocol.ServiceInfo
		if err := json.Unmarshal(rest[0], &list); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range list {
			out = append(out, s.Name)
		}
		return out
	}
	if got := strings.Join(names("bob"), ","); got != "A1" {
		t.Errorf("bob's SERVER-SERVICES: %s, want A1 only", got)
	}
	if got := strings.Join(names("alice"), ","); got != "A1,C1" {
		t.Errorf("the admin's SERVER-SERVICES: %s", got)
	}
}

// TestBroker_JobsBelongToTheirSubmitter: a key reads the jobs it
// submitted (an admin any); the owner a trusted peer names is honoured,
// the one another peer names is not.
func TestBroker_JobsBelongToTheirSubmitter(t *testing.T) {
	b := newBroker(t, broker.Config{Access: newAccess()})
	b.HandleWorker(t0, "wA", "wall", readyZ("A1"))
	submit := func(user, owner string) string {
		t.Helper()
		body := [][]byte{protocol.EncodeMeta(protocol.Meta{Owner: owner})}
		_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", user, request(v2, "A1", body...)), protocol.ToClient, "c"))
		return md.Job
	}
	lookup := func(user, id string) (protocol.Meta, protocol.JobInfo) {
		t.Helper()
		_, md, rest := clientReply(t, one(t, b.HandleClient(t0, "c", user, zreq(protocol.ServerJob, nil, id)), protocol.ToClient, "c"))
		var ji protocol.JobInfo
		if md.Status == protocol.StatusComplete {
			json.Unmarshal(rest[0], &ji)
		}
		return md, ji
	}
	bobs := submit("bob", "alice") // bob cannot make alice the owner
	if md, ji := lookup("bob", bobs); md.Status != protocol.StatusComplete || ji.Owner != "bob" {
		t.Fatalf("bob reads his job: %+v %+v", md, ji)
	}
	viaGateway := submit("", "token:ci")
	if md, _ := lookup("bob", viaGateway); md.Code != protocol.CodeForbidden {
		t.Errorf("bob reads the gateway's job: %+v, want forbidden", md)
	}
	if _, ji := lookup("alice", viaGateway); ji.Owner != "token:ci" {
		t.Errorf("the gateway's job is owned by %q, want token:ci", ji.Owner)
	}
	if md, _ := lookup("alice", bobs); md.Status != protocol.StatusComplete {
		t.Errorf("the admin reads bob's job: %+v", md)
	}
}

// TestBroker_BadInputDoesNotFloodTheLog: 200,000 malformed messages in two
// seconds, from one peer and from 200,000 made-up ones, write a handful of
// lines, and the next line let through says how many were held back.
func TestBroker_BadInputDoesNotFloodTheLog(t *testing.T) {
	var lines countingWriter
	b := broker.New(broker.Config{Heartbeat: time.Second, Logger: zerolog.New(&lines)})
	garbage := [][]byte{[]byte("not MDP")}
	for i := range 100_000 {
		b.HandleClient(at(time.Duration(i)*10*time.Microsecond), "c1", "", garbage)
		b.HandleWorker(at(time.Duration(i)*10*time.Microsecond), fmt.Sprint("w", i), "", garbage)
	}
	if lines.n > 25 {
		t.Fatalf("200,000 malformed messages wrote %d log lines, want a few", lines.n)
	}
	lines.last = ""
	b.HandleClient(at(2*time.Minute), "c1", "", garbage)
	if !strings.Contains(lines.last, `"suppressed":99999`) {
		t.Errorf("the line after the flood: %s, want the count held back", lines.last)
	}
}

type countingWriter struct {
	n    int
	last string
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n++
	w.last = string(p)
	return len(p), nil
}

// TestBroker_SilentWorkerLosesItsRightOnReload: a worker whose key a reload
// removed is dropped at the next input of any kind, so the next job does
// not go to it even though it never spoke again.
func TestBroker_SilentWorkerLosesItsRightOnReload(t *testing.T) {
	a := newAccess()
	b := newBroker(t, broker.Config{Access: a})
	b.HandleWorker(t0, "w1", "wa", readyZ("A1"))
	delete(a.workers, "wa")
	a.gen++
	out := b.HandleClient(at(time.Millisecond), "c1", "alice", zreq("A1", map[string]string{"secret": "x"}))
	disconnected(t, out, "w1", true)
	for _, e := range only(out, protocol.ToWorker) {
		if m, _ := protocol.DecodeWorker(e.Frames); m.Cmd == protocol.CmdRequest {
			t.Fatalf("the job went to the worker whose key was removed")
		}
	}
	if ws := b.Workers(); len(ws) != 0 {
		t.Fatalf("workers %+v", ws)
	}
}

// A key retries its own failed job, as an admin may any; not another's.
func TestBroker_OwnerRetriesOwnFailedJob(t *testing.T) {
	b := newBroker(t, broker.Config{Access: newAccess(), History: 10})
	b.HandleWorker(t0, "wA", "wall", readyZ("A1"))
	job := func(user string) string {
		_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", user, zreq("A1", nil)), protocol.ToClient, "c"))
		return md.Job
	}
	fail := func(id string) {
		b.HandleWorker(t0, "wA", "wall", final(id, protocol.Meta{Status: protocol.StatusFailed, Error: "no"}))
	}
	bobs := job("bob")
	alices := job("alice")
	fail(bobs)
	fail(alices)
	_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "bob", zreq(protocol.ServerRetry, nil, bobs)), protocol.ToClient, "c"))
	if md.Status != protocol.StatusComplete {
		t.Fatalf("bob retries his failed job: %+v", md)
	}
	refusedWith(t, b.HandleClient(t0, "c", "bob", zreq(protocol.ServerRetry, nil, alices)), "c", protocol.CodeForbidden)
}
