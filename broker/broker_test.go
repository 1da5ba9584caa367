package broker_test

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

var (
	t0   = time.Unix(1000, 0)
	v2   = protocol.Form{Version: protocol.V2}
	v1   = protocol.Form{Version: protocol.V1, Delimiter: true}
	meta = protocol.EncodeMeta(protocol.Meta{})
)

func newBroker(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t))
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Second
	}
	return broker.New(cfg)
}

func at(d time.Duration) time.Time { return t0.Add(d) }

// ready frames for a zmws worker (V2, meta) or a stock one (V1).
func readyZ(service string) [][]byte {
	return protocol.EncodeWorker(protocol.Message{Form: v2, Cmd: protocol.CmdReady, Service: service,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Worker: &protocol.WorkerDetails{Host: "h", PID: 1}})}})
}

func readyStock(service string) [][]byte {
	return protocol.EncodeWorker(protocol.Message{Form: v1, Cmd: protocol.CmdReady, Service: service})
}

func workerMsg(form protocol.Form, cmd protocol.Command, job string, body ...[]byte) [][]byte {
	return protocol.EncodeWorker(protocol.Message{Form: form, Cmd: cmd, Address: []byte(job), Body: body})
}

func final(job string, m protocol.Meta, out ...string) [][]byte {
	body := [][]byte{protocol.EncodeMeta(m)}
	for _, o := range out {
		body = append(body, []byte(o))
	}
	return workerMsg(v2, protocol.CmdReply, job, body...)
}

func request(form protocol.Form, service string, body ...[]byte) [][]byte {
	return protocol.EncodeClient(protocol.Message{Form: form, Cmd: protocol.CmdRequest, Service: service, Body: body})
}

func zreq(service string, params map[string]string, input ...string) [][]byte {
	body := [][]byte{protocol.EncodeMeta(protocol.Meta{Params: params})}
	for _, in := range input {
		body = append(body, []byte(in))
	}
	return request(v2, service, body...)
}

// only returns the envelopes for one peer.
func only(envs []protocol.Envelope, peer protocol.Peer) []protocol.Envelope {
	var out []protocol.Envelope
	for _, e := range envs {
		if e.Peer == peer {
			out = append(out, e)
		}
	}
	return out
}

func one(t *testing.T, envs []protocol.Envelope, peer protocol.Peer, to string) protocol.Envelope {
	t.Helper()
	got := only(envs, peer)
	if len(got) != 1 || got[0].To != to {
		t.Fatalf("want one message to %q on peer %d, got %d: %+v", to, peer, len(got), got)
	}
	return got[0]
}

func none(t *testing.T, envs []protocol.Envelope, peer protocol.Peer) {
	t.Helper()
	if got := only(envs, peer); len(got) != 0 {
		t.Fatalf("want no message on peer %d, got %+v", peer, got)
	}
}

// clientReply decodes a reply to a zmws client: meta and payload frames.
func clientReply(t *testing.T, e protocol.Envelope) (protocol.Message, protocol.Meta, [][]byte) {
	t.Helper()
	m, err := protocol.DecodeReply(e.Frames)
	if err != nil {
		t.Fatalf("decode reply: %v", err)
	}
	if m.Cmd == protocol.CmdPartial {
		return m, protocol.Meta{}, m.Body
	}
	md, rest, ok, err := protocol.SplitMeta(m.Body)
	if err != nil || !ok {
		t.Fatalf("reply without meta: %q (%v)", m.Body, err)
	}
	return m, md, rest
}

// dispatched decodes a REQUEST to a worker: job ID, meta (zmws) and body.
func dispatched(t *testing.T, e protocol.Envelope) (string, protocol.Meta, [][]byte) {
	t.Helper()
	m, err := protocol.DecodeWorker(e.Frames)
	if err != nil || m.Cmd != protocol.CmdRequest {
		t.Fatalf("want REQUEST, got %v %v", m.Cmd, err)
	}
	md, rest, _, err := protocol.SplitMeta(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(m.Address), md, rest
}

func TestBroker_AsyncJobGetsIDAtOnceAndRuns(t *testing.T) {
	b := newBroker(t, broker.Config{})
	none(t, b.HandleWorker(t0, "w1", "", readyZ("STR-REV")), protocol.ToWorker)

	out := b.HandleClient(at(time.Second), "c1", "", zreq("STR-REV", map[string]string{"str": "abc"}))
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c1"))
	if md.Status != protocol.StatusAccepted || len(md.Job) != 26 {
		t.Fatalf("want accepted with a ULID, got %+v", md)
	}
	id, wm, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	if id != md.Job || wm.Attempt != 1 || wm.Params["str"] != "abc" || wm.Service != "STR-REV" {
		t.Fatalf("dispatch: id %s meta %+v", id, wm)
	}
	out = b.HandleWorker(at(2*time.Second), "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "cba"))
	none(t, out, protocol.ToClient) // async: the client already has its answer
	info, ok := b.Job(id)
	if !ok || info.State != "complete" || string(info.Output) != "cba" || info.Attempts != 1 {
		t.Fatalf("job after completion: %+v", info)
	}
}

// A job ID names its job only as the broker wrote it: not in lower case,
// not in part.
func TestBroker_JobIDExactText(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	for _, other := range []string{strings.ToLower(id), id[:25], id + "0", ""} {
		if _, ok := b.Job(other); ok {
			t.Errorf("Job(%q) found job %s", other, id)
		}
		if out := b.HandleWorker(t0, "w1", "", final(other, protocol.Meta{Status: protocol.StatusComplete})); len(out) != 0 {
			t.Errorf("a FINAL for %q was taken for job %s: %d envelopes", other, id, len(out))
		}
	}
	if info, ok := b.Job(id); !ok || info.State != protocol.JobActive {
		t.Fatalf("Job(%s): %+v %v", id, info, ok)
	}
}

// zeroEntropy gives every job ID the same 80 random bits: IDs differ only
// in their millisecond.
type zeroEntropy struct{}

func (zeroEntropy) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Jobs whose IDs share their random bits are told apart all the same, as
// they are queued, run, cancelled, retried and forgotten.
func TestBroker_JobIDsWithTheSameRandomBits(t *testing.T) {
	b := newBroker(t, broker.Config{Entropy: zeroEntropy{}, History: 2})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	var ids []string
	for i := range 4 {
		out := b.HandleClient(at(time.Duration(i)*time.Millisecond), "c", "", zreq("S", nil))
		_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c"))
		if i > 0 && md.Job[10:] != ids[0][10:] {
			t.Fatalf("IDs %s and %s differ in more than their time", ids[0], md.Job)
		}
		ids = append(ids, md.Job)
	}
	states := func() string {
		var s []string
		for _, id := range ids {
			info, ok := b.Job(id)
			switch {
			case !ok:
				s = append(s, "-")
			case info.ID != id:
				t.Fatalf("Job(%s) gave job %s", id, info.ID)
			default:
				s = append(s, info.State)
			}
		}
		return strings.Join(s, " ")
	}
	finish := func(i int) {
		t.Helper()
		if out := b.HandleWorker(t0, "w1", "", final(ids[i], protocol.Meta{Status: protocol.StatusComplete})); len(requests(out)) > 1 {
			t.Fatalf("FINAL for job %d: %d requests", i, len(requests(out)))
		}
	}
	steps := []struct {
		do   func()
		want string
	}{
		{func() {}, "active queued queued queued"},
		{func() { b.HandleClient(t0, "c", "", zreq(protocol.ServerCancel, nil, ids[1])) }, "active failed queued queued"},
		{func() { b.HandleClient(t0, "c", "", zreq(protocol.ServerRetry, nil, ids[1])) }, "active queued queued queued"},
		{func() { finish(0) }, "complete queued active queued"},
		{func() { finish(2) }, "complete queued complete active"}, // the failed run of 1 leaves the history
		{func() { finish(3) }, "- active complete complete"},
		{func() { finish(1) }, "- complete - complete"},
	}
	for i, st := range steps {
		st.do()
		if got := states(); got != st.want {
			t.Fatalf("step %d: states %q, want %q", i, got, st.want)
		}
	}
}

func TestBroker_UnknownServiceRefusedAtOnce(t *testing.T) {
	b := newBroker(t, broker.Config{})
	out := b.HandleClient(t0, "c1", "", zreq("NOPE", nil))
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c1"))
	if md.Status != protocol.StatusRefused || md.Code != protocol.CodeUnknownService ||
		md.Error != "no worker has ever provided service NOPE" {
		t.Fatalf("got %+v", md)
	}
	// A stock 7/MDP client gets FAIL, code, message.
	out = b.HandleClient(t0, "c2", "", request(v1, "SYNC-NOPE", []byte("x")))
	m, _ := protocol.DecodeReply(one(t, out, protocol.ToClient, "c2").Frames)
	if m.Service != "SYNC-NOPE" || len(m.Body) != 3 || string(m.Body[0]) != "FAIL" || string(m.Body[1]) != protocol.CodeUnknownService {
		t.Fatalf("stock refusal: %q", m.Body)
	}
	if !m.Form.Delimiter || m.Form.Version != protocol.V1 {
		t.Fatalf("reply form %+v, want the client's", m.Form)
	}
}

func TestBroker_KnownServiceWithoutWorkersQueues(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("SLEEP"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	out := b.HandleClient(at(time.Second), "c1", "", zreq("SLEEP", nil))
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c1"))
	if md.Status != protocol.StatusAccepted {
		t.Fatalf("want accepted for a known service without workers, got %+v", md)
	}
	if q := b.Queue(); len(q) != 1 || q[0].Queued != 1 || q[0].Oldest != md.Job {
		t.Fatalf("queue: %+v", q)
	}
	// A worker arriving later takes it.
	out = b.HandleWorker(at(2*time.Second), "w2", "", readyZ("SLEEP"))
	if id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w2")); id != md.Job {
		t.Fatalf("dispatched %s, want %s", id, md.Job)
	}
}

func TestBroker_SyncStreamsPartialsThenFinal(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("TAIL"))
	for _, svc := range []string{"SYNC-TAIL", "SYNC:TAIL"} {
		out := b.HandleClient(t0, "c1", "", zreq(svc, nil, "in"))
		none(t, out, protocol.ToClient) // nothing until the worker speaks
		id, _, body := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
		if len(body) != 1 || string(body[0]) != "in" {
			t.Fatalf("worker input %q", body)
		}
		for _, chunk := range []string{"one\n", "two\n"} {
			out = b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdPartial, id, []byte(chunk)))
			m, _, payload := clientReply(t, one(t, out, protocol.ToClient, "c1"))
			if m.Cmd != protocol.CmdPartial || m.Service != svc || string(payload[0]) != chunk {
				t.Fatalf("partial: %v %q %q", m.Cmd, m.Service, payload)
			}
		}
		code := 3
		out = b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusFailed, Error: "boom", ExitCode: &code}, "tail"))
		m, md, payload := clientReply(t, one(t, out, protocol.ToClient, "c1"))
		if m.Cmd != protocol.CmdReply || md.Status != protocol.StatusFailed || md.Error != "boom" ||
			md.ExitCode == nil || *md.ExitCode != 3 || md.Job != id || string(payload[0]) != "tail" {
			t.Fatalf("final: %v %+v %q", m.Cmd, md, payload)
		}
		info, _ := b.Job(id)
		if string(info.Output) != "one\ntwo\ntail" || info.State != "failed" || info.Code != protocol.CodeJobFailed {
			t.Fatalf("retained: %+v", info)
		}
	}
}

func TestBroker_V1ClientGetsWholeOutputAtOnce(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("TAIL"))
	out := b.HandleClient(t0, "c1", "", request(v1, "SYNC-TAIL", []byte("x")))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	none(t, b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdPartial, id, []byte("ab"))), protocol.ToClient)
	out = b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "cd"))
	m, _ := protocol.DecodeReply(one(t, out, protocol.ToClient, "c1").Frames)
	if got := strings.Join(framesStr(m.Body), "|"); got != "ab|cd" {
		t.Fatalf("stock V1 client got %q, want the service's whole answer", got)
	}
}

func framesStr(f [][]byte) []string {
	s := make([]string, len(f))
	for i := range f {
		s[i] = string(f[i])
	}
	return s
}

func TestBroker_StockWorkerAndStockClient(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyStock("ECHO"))
	out := b.HandleClient(t0, "c1", "", request(v1, "SYNC-ECHO", []byte("a"), []byte("b")))
	e := one(t, out, protocol.ToWorker, "w1")
	m, err := protocol.DecodeWorker(e.Frames)
	if err != nil || m.Form != v1 || strings.Join(framesStr(m.Body), "|") != "a|b" {
		t.Fatalf("stock worker got %+v %v: want the client's frames, no meta", m, err)
	}
	out = b.HandleWorker(t0, "w1", "", workerMsg(v1, protocol.CmdReply, string(m.Address), []byte("A"), []byte("B")))
	r, _ := protocol.DecodeReply(one(t, out, protocol.ToClient, "c1").Frames)
	if strings.Join(framesStr(r.Body), "|") != "A|B" {
		t.Fatalf("stock client got %q", r.Body)
	}
	// Async from a stock client: the body is the job ID.
	out = b.HandleClient(t0, "c1", "", request(v1, "ECHO"))
	r, _ = protocol.DecodeReply(one(t, out, protocol.ToClient, "c1").Frames)
	if len(r.Body) != 1 || len(r.Body[0]) != 26 {
		t.Fatalf("async stock reply %q", r.Body)
	}
	// Params with no input reach a stock worker as a query string.
	b.HandleWorker(t0, "w1", "", workerMsg(v1, protocol.CmdReply, string(r.Body[0])))
	out = b.HandleClient(t0, "c1", "", zreq("ECHO", map[string]string{"b": "2 3", "a": "1"}))
	m, _ = protocol.DecodeWorker(one(t, out, protocol.ToWorker, "w1").Frames)
	if len(m.Body) != 1 || string(m.Body[0]) != "a=1&b=2+3" {
		t.Fatalf("stock worker params body %q", m.Body)
	}
}

func TestBroker_FIFOQueueAndLeastRecentlyUsedWorker(t *testing.T) {
	b := newBroker(t, broker.Config{})
	var ids []string
	b.HandleWorker(t0, "w0", "", readyZ("S"))
	b.HandleWorker(t0, "w0", "", workerMsg(v2, protocol.CmdDisconnect, "")) // S is known, no workers
	for i := 0; i < 3; i++ {
		_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToClient, "c"))
		ids = append(ids, md.Job)
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatalf("job IDs not sortable by creation: %v", ids)
	}
	got, _, _ := dispatched(t, one(t, b.HandleWorker(at(time.Second), "wA", "", readyZ("S")), protocol.ToWorker, "wA"))
	got2, _, _ := dispatched(t, one(t, b.HandleWorker(at(time.Second), "wB", "", readyZ("S")), protocol.ToWorker, "wB"))
	if got != ids[0] || got2 != ids[1] {
		t.Fatalf("dispatch order %s %s, want %s %s", got, got2, ids[0], ids[1])
	}
	// wB finishes first and takes job 3; then wA finishes and is idle
	// longer than wB, so the next job goes to wA.
	got3, _, _ := dispatched(t, one(t, b.HandleWorker(at(2*time.Second), "wB", "", final(got2, protocol.Meta{Status: protocol.StatusComplete})), protocol.ToWorker, "wB"))
	if got3 != ids[2] {
		t.Fatalf("third job %s, want %s", got3, ids[2])
	}
	none(t, b.HandleWorker(at(3*time.Second), "wA", "", final(got, protocol.Meta{Status: protocol.StatusComplete})), protocol.ToWorker)
	none(t, b.HandleWorker(at(4*time.Second), "wB", "", final(got3, protocol.Meta{Status: protocol.StatusComplete})), protocol.ToWorker)
	one(t, b.HandleClient(at(5*time.Second), "c", "", zreq("S", nil)), protocol.ToWorker, "wA")
}

func TestBroker_ExpiresSilentBusyWorkerAndRequeuesAtHead(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Second, Liveness: 3})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	out := b.HandleClient(t0, "c", "", zreq("SYNC-S", nil))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c2", "", zreq("S", nil)), protocol.ToClient, "c2"))
	b.HandleWorker(at(time.Second), "w2", "", readyZ("S"))           // takes the second job
	b.HandleWorker(at(1500*time.Millisecond), "w3", "", readyZ("S")) // idle

	// w2 keeps heartbeating while busy; w1 goes silent.
	for s := 2; s <= 4; s++ {
		b.HandleWorker(at(time.Duration(s)*time.Second), "w2", "", workerMsg(v2, protocol.CmdHeartbeat, ""))
		b.HandleWorker(at(time.Duration(s)*time.Second), "w3", "", workerMsg(v2, protocol.CmdHeartbeat, ""))
	}
	if d := b.Deadline(); d.After(at(3*time.Second + 10*time.Millisecond)) {
		t.Fatalf("deadline %v is later than w1's expiry", d.Sub(t0))
	}
	out = b.Tick(at(3*time.Second + 2*time.Millisecond))
	reqs := requests(out)
	if len(reqs) != 1 || reqs[0].To != "w3" {
		t.Fatalf("want the lost job re-dispatched to w3, got %+v", reqs)
	}
	got, wm, _ := dispatched(t, reqs[0])
	if got != id || wm.Attempt != 2 {
		t.Fatalf("re-dispatched %s attempt %d, want %s attempt 2", got, wm.Attempt, id)
	}
	if hb := commands(out, protocol.CmdHeartbeat); len(hb) != 2 {
		t.Fatalf("want heartbeats to the 2 live workers, got %d", len(hb))
	}
	ws := b.Workers()
	if len(ws) != 2 || ws[0].Identity != "w2" || ws[0].State != "busy" || ws[0].Job != md.Job || ws[1].Job != id {
		t.Fatalf("workers after expiry: %+v", ws)
	}
	// A late reply from the dead worker is refused: it is unknown now.
	out = b.HandleWorker(at(4*time.Second), "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}))
	if d := commands(out, protocol.CmdDisconnect); len(d) != 1 || d[0].To != "w1" {
		t.Fatalf("want DISCONNECT to the expired worker, got %+v", out)
	}
	none(t, out, protocol.ToClient)
}

// commands returns the worker envelopes carrying cmd.
func commands(envs []protocol.Envelope, cmd protocol.Command) []protocol.Envelope {
	var out []protocol.Envelope
	for _, e := range only(envs, protocol.ToWorker) {
		if m, err := protocol.DecodeWorker(e.Frames); err == nil && m.Cmd == cmd {
			out = append(out, e)
		}
	}
	return out
}

func requests(envs []protocol.Envelope) []protocol.Envelope {
	return commands(envs, protocol.CmdRequest)
}

func TestBroker_HeartbeatsAndDeadline(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Second, Liveness: 3})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if d := b.Deadline(); !d.Equal(at(time.Second)) {
		t.Fatalf("deadline %v, want the first heartbeat at +1s", d.Sub(t0))
	}
	if out := b.Tick(at(500 * time.Millisecond)); len(out) != 0 {
		t.Fatalf("early tick sent %+v", out)
	}
	out := b.Tick(at(time.Second))
	if hb := commands(out, protocol.CmdHeartbeat); len(hb) != 1 || hb[0].To != "w1" {
		t.Fatalf("heartbeat: %+v", out)
	}
	// A worker that keeps heartbeating never expires.
	for s := 1; s <= 10; s++ {
		now := at(time.Duration(s) * time.Second)
		b.HandleWorker(now, "w1", "", workerMsg(v2, protocol.CmdHeartbeat, ""))
		b.Tick(now.Add(time.Millisecond))
	}
	if len(b.Workers()) != 1 {
		t.Fatal("heartbeating worker was dropped")
	}
}

func TestBroker_MaxAttemptsFailsJobWithReason(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Second, Liveness: 2, MaxAttempts: 2})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("SYNC-S", nil)), protocol.ToWorker, "w1"))
	b.Tick(at(3 * time.Second)) // w1 expires; job queued again (attempt 1 of 2 spent)
	out := b.HandleWorker(at(3*time.Second), "w2", "", readyZ("S"))
	if got, wm, _ := dispatched(t, one(t, out, protocol.ToWorker, "w2")); got != id || wm.Attempt != 2 {
		t.Fatalf("second dispatch %s attempt %d", got, wm.Attempt)
	}
	// w2 leaves mid-job: attempts are spent, the job fails and the sync
	// client is told why.
	out = b.HandleWorker(at(4*time.Second), "w2", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c"))
	if md.Status != protocol.StatusFailed || md.Code != protocol.CodeWorkerLost ||
		!strings.Contains(md.Error, "disconnected during attempt 2 of 2") {
		t.Fatalf("final: %+v", md)
	}
	info, _ := b.Job(id)
	if info.State != "failed" || info.Attempts != 2 {
		t.Fatalf("job: %+v", info)
	}
}

func TestBroker_UnreachableWorkerRequeuesAtOnce(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	out := b.Unreachable(t0, "w1")
	if got, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w2")); got != id {
		t.Fatalf("requeued job went to %s", got)
	}
}

func TestBroker_MisbehavingWorkers(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))

	// A reply for a job it does not hold: dropped, worker and job untouched.
	out := b.HandleWorker(t0, "w1", "", final("01FORGED", protocol.Meta{Status: protocol.StatusComplete}))
	if len(out) != 0 {
		t.Fatalf("forged reply answered: %+v", out)
	}
	if info, _ := b.Job(id); info.State != "active" {
		t.Fatalf("forged reply changed the job: %+v", info)
	}

	cases := []struct {
		name       string
		frames     [][]byte
		disconnect bool
	}{
		{"too few frames", [][]byte{[]byte(protocol.HeaderWorkerV2)}, true},
		{"unknown command", [][]byte{[]byte(protocol.HeaderWorkerV2), {0x09}}, true},
		{"long command frame", [][]byte{[]byte(protocol.HeaderWorkerV2), []byte("READY")}, true},
		{"REPLY without delimiter", [][]byte{[]byte(protocol.HeaderWorkerV2), {0x04}, []byte(id), []byte("x")}, true},
		{"wrong header", [][]byte{[]byte("HTTP/1.1"), {0x01}, []byte("S")}, false},
		{"empty", nil, false},
		{"second READY", readyZ("S"), true},
		{"REQUEST from a worker", workerMsg(v2, protocol.CmdRequest, "x"), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBroker(t, broker.Config{})
			b.HandleWorker(t0, "w1", "", readyZ("S"))
			id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
			b.HandleWorker(t0, "w2", "", readyZ("S"))
			out := b.HandleWorker(t0, "w1", "", c.frames)
			d := commands(out, protocol.CmdDisconnect)
			if c.disconnect {
				if len(d) != 1 || d[0].To != "w1" {
					t.Fatalf("want DISCONNECT to w1, got %+v", out)
				}
				// The job it held goes to w2.
				if r := requests(out); len(r) != 1 || r[0].To != "w2" {
					t.Fatalf("job not requeued to w2: %+v", out)
				} else if got, _, _ := dispatched(t, r[0]); got != id {
					t.Fatalf("job not requeued to w2")
				}
			} else if len(out) != 0 {
				t.Fatalf("want the message dropped, got %+v", out)
			}
			// The broker keeps serving.
			_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToClient, "c"))
			if md.Status != protocol.StatusAccepted {
				t.Fatalf("next request: %+v", md)
			}
		})
	}
}

func TestBroker_UnknownWorkerAndReservedNames(t *testing.T) {
	b := newBroker(t, broker.Config{})
	for _, msg := range [][][]byte{
		workerMsg(v2, protocol.CmdHeartbeat, ""),
		final("x", protocol.Meta{}),
		readyZ("SYNC-S"), readyZ("SERVER-WORKERS"), readyZ("mmi.service"), readyZ("bad name"),
	} {
		out := b.HandleWorker(t0, "wx", "", msg)
		if d := commands(out, protocol.CmdDisconnect); len(d) != 1 {
			t.Fatalf("%q: want DISCONNECT, got %+v", msg, out)
		}
	}
	if len(b.Services()) != 0 {
		t.Fatalf("services registered from refused READYs: %+v", b.Services())
	}
	// DISCONNECT from a stranger needs no answer.
	if out := b.HandleWorker(t0, "wx", "", workerMsg(v2, protocol.CmdDisconnect, "")); len(out) != 0 {
		t.Fatalf("answered a stranger's DISCONNECT: %+v", out)
	}
}

func TestBroker_MalformedClientMessages(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	for _, frames := range [][][]byte{
		nil,
		{[]byte("MDPC01")},
		{[]byte("GET / HTTP/1.1")},
		{[]byte("MDPC02"), {0x03}, []byte("S")}, // FINAL from a client
		{[]byte("MDPC02"), {0x07}, []byte("S")},
	} {
		if out := b.HandleClient(t0, "c", "", frames); len(out) != 0 {
			t.Fatalf("%q answered: %+v", frames, out)
		}
	}
	// Malformed meta and an empty service get a clear refusal.
	out := b.HandleClient(t0, "c", "", request(v2, "S", []byte(protocol.MetaPrefix+"{not json")))
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c"))
	if md.Status != protocol.StatusRefused || md.Code != protocol.CodeBadRequest {
		t.Fatalf("bad meta: %+v", md)
	}
	out = b.HandleClient(t0, "c", "", request(v1, ""))
	r, _ := protocol.DecodeReply(one(t, out, protocol.ToClient, "c").Frames)
	if string(r.Body[0]) != "FAIL" || string(r.Body[1]) != protocol.CodeBadRequest {
		t.Fatalf("empty service: %q", r.Body)
	}
	// Still serving.
	one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1")
}

func TestBroker_QueueBound(t *testing.T) {
	b := newBroker(t, broker.Config{MaxQueue: 2})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	for i := 0; i < 2; i++ {
		b.HandleClient(t0, "c", "", zreq("S", nil))
	}
	_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToClient, "c"))
	if md.Status != protocol.StatusRefused || md.Code != protocol.CodeQueueFull {
		t.Fatalf("third job: %+v", md)
	}
	if q := b.Queue(); q[0].Queued != 2 {
		t.Fatalf("queue holds %d", q[0].Queued)
	}
}

func TestBroker_HistoryAndIntrospection(t *testing.T) {
	b := newBroker(t, broker.Config{History: 3})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	var ids []string
	for i := 0; i < 5; i++ {
		now := at(time.Duration(i) * time.Second)
		out := b.HandleClient(now, "c", "", zreq("S", nil))
		id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
		b.HandleWorker(now, "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "out"))
		ids = append(ids, id)
	}
	query := func(service string, body ...[]byte) protocol.Meta {
		t.Helper()
		out := b.HandleClient(t0, "c", "", request(v2, service, append([][]byte{meta}, body...)...))
		_, md, payload := clientReply(t, one(t, out, protocol.ToClient, "c"))
		if md.Status == protocol.StatusComplete {
			if len(payload) != 1 || !json.Valid(payload[0]) {
				t.Fatalf("%s: payload %q", service, payload)
			}
		}
		return md
	}
	jobs := b.Jobs()
	if len(jobs) != 3 || jobs[0].ID != ids[4] || jobs[2].ID != ids[2] {
		t.Fatalf("SERVER-JOBS want the last 3 newest first, got %+v", jobs)
	}
	if _, ok := b.Job(ids[0]); ok {
		t.Fatal("job beyond history still retained")
	}
	for _, s := range []string{"SERVER-WORKERS", "SERVER-JOBS", "SERVER-ACTIVE", "SERVER-QUEUE", "SERVER-SERVICES"} {
		if md := query(s); md.Status != protocol.StatusComplete {
			t.Fatalf("%s: %+v", s, md)
		}
	}
	if md := query("SERVER-JOB", []byte(ids[4])); md.Status != protocol.StatusComplete {
		t.Fatalf("SERVER-JOB: %+v", md)
	}
	if md := query("SERVER-JOB", []byte(ids[0])); md.Code != protocol.CodeNotFound {
		t.Fatalf("SERVER-JOB of a pruned job: %+v", md)
	}
	if md := query("SERVER-NOPE"); md.Code != protocol.CodeUnknownService {
		t.Fatalf("SERVER-NOPE: %+v", md)
	}
	svc := b.Services()
	if len(svc) != 1 || svc[0].Completed != 5 || svc[0].WorkersIdle != 1 {
		t.Fatalf("services: %+v", svc)
	}
	w := b.Workers()
	if len(w) != 1 || w[0].JobsDone != 5 || w[0].State != "idle" || w[0].Protocol != "MDPW02" || !w[0].Zmws || w[0].Details.Host != "h" {
		t.Fatalf("workers: %+v", w)
	}
	// A stock client gets the bare JSON.
	r, _ := protocol.DecodeReply(one(t, b.HandleClient(t0, "c", "", request(v1, "SERVER-WORKERS")), protocol.ToClient, "c").Frames)
	var ws []protocol.WorkerInfo
	if err := json.Unmarshal(r.Body[0], &ws); err != nil || len(ws) != 1 {
		t.Fatalf("stock SERVER-WORKERS: %q %v", r.Body, err)
	}
}

func TestBroker_MMI(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyStock("ECHO"))
	for _, c := range []struct{ service, body, want string }{
		{"mmi.service", "ECHO", "200"},
		{"mmi.service", "SYNC-ECHO", "200"},
		{"mmi.service", "NOPE", "404"},
		{"mmi.nothing", "ECHO", "501"},
	} {
		out := b.HandleClient(t0, "c", "", request(v1, c.service, []byte(c.body)))
		r, _ := protocol.DecodeReply(one(t, out, protocol.ToClient, "c").Frames)
		if len(r.Body) != 1 || string(r.Body[0]) != c.want || r.Service != c.service {
			t.Fatalf("%s %s: %q, want %s", c.service, c.body, r.Body, c.want)
		}
	}
}

func TestBroker_EventsAndShutdown(t *testing.T) {
	b := newBroker(t, broker.Config{Events: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	out := b.HandleClient(t0, "c", "", zreq("SYNC-S", nil))
	var topics []string
	for _, e := range only(out, protocol.ToEvents) {
		var ev protocol.Event
		if err := json.Unmarshal(e.Frames[0], &ev); err != nil || ev.Event != e.To || ev.Service != "S" {
			t.Fatalf("event %q: %v", e.Frames, err)
		}
		topics = append(topics, e.To)
	}
	if strings.Join(topics, ",") != "queued,started" {
		t.Fatalf("events %v", topics)
	}
	out = b.Shutdown(at(time.Second))
	if d := commands(out, protocol.CmdDisconnect); len(d) != 1 {
		t.Fatalf("shutdown: %+v", out)
	}
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c"))
	if md.Code != protocol.CodeShutdown {
		t.Fatalf("waiting sync client got %+v", md)
	}
}

// With Config.Subscribed the broker builds only the events someone wants:
// none when nobody subscribes, only completed for a completed subscriber.
func TestBroker_EventsOnlyForSubscribedTopics(t *testing.T) {
	for _, c := range []struct {
		name string
		want func(string) bool
		sent string
	}{
		{"nobody", func(string) bool { return false }, ""},
		{"completed", func(topic string) bool { return topic == protocol.EventCompleted }, "completed"},
		{"all", nil, "queued,started,completed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var asked []string
			subscribed := c.want
			if subscribed != nil {
				subscribed = func(topic string) bool { asked = append(asked, topic); return c.want(topic) }
			}
			b := newBroker(t, broker.Config{Events: true, Subscribed: subscribed})
			b.HandleWorker(t0, "w1", "", readyZ("S"))
			out := append([]protocol.Envelope{}, b.HandleClient(t0, "c", "", zreq("SYNC-S", nil))...)
			job, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
			out = append(out, b.HandleWorker(at(time.Millisecond), "w1", "", final(job, protocol.Meta{Status: protocol.StatusComplete}, "ok"))...)
			var sent []string
			for _, e := range only(out, protocol.ToEvents) {
				sent = append(sent, e.To)
			}
			if got := strings.Join(sent, ","); got != c.sent {
				t.Fatalf("events %q, want %q", got, c.sent)
			}
			if c.want != nil && strings.Join(asked, ",") != "queued,started,completed" {
				t.Fatalf("asked about %v, want each topic once", asked)
			}
		})
	}
}

// A job whose REQUEST could not be sent never reached its worker: given to
// one dead registration after another (a killed zmws-run's slots, before
// the next heartbeat finds them gone), it is not counted as an attempt at
// any of them, stays queued, and runs as attempt 1 on a live worker later.
// A dispatch that was sent counts, even if the worker then proves gone.
func TestBroker_UndeliveredDispatchIsNoAttempt(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Second, MaxAttempts: 3})
	var id string // the job, once submitted
	steps := []struct {
		name string
		at   time.Duration
		do   func(now time.Time) []protocol.Envelope
		to   string // the worker the job goes to next, "" for none
		want int    // its attempt there, or its count of attempts when queued
	}{
		{"w1..w4 ready", 0, func(now time.Time) []protocol.Envelope {
			for _, w := range []string{"w1", "w2", "w3", "w4"} {
				b.HandleWorker(now, w, "", readyZ("S"))
			}
			return nil
		}, "", 0},
		{"submitted", time.Millisecond, func(now time.Time) []protocol.Envelope {
			out := b.HandleClient(now, "c", "", zreq("S", nil))
			_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c"))
			id = md.Job
			return out
		}, "w1", 1},
		{"REQUEST to w1 not sent", time.Millisecond, func(now time.Time) []protocol.Envelope {
			return b.Unreachable(now, "w1", id)
		}, "w2", 1},
		{"REQUEST to w2 not sent", time.Millisecond, func(now time.Time) []protocol.Envelope {
			return b.Unreachable(now, "w2", id)
		}, "w3", 1},
		{"REQUEST to w3 not sent", time.Millisecond, func(now time.Time) []protocol.Envelope {
			return b.Unreachable(now, "w3", id)
		}, "w4", 1},
		{"REQUEST to w4 not sent", time.Millisecond, func(now time.Time) []protocol.Envelope {
			return b.Unreachable(now, "w4", id)
		}, "", 0},
		{"w5 ready", 2 * time.Second, func(now time.Time) []protocol.Envelope {
			return b.HandleWorker(now, "w5", "", readyZ("S"))
		}, "w5", 1},
		// w5 got it; a later heartbeat to it fails: that attempt counts.
		{"heartbeat to w5 not sent", 3 * time.Second, func(now time.Time) []protocol.Envelope {
			return b.Unreachable(now, "w5")
		}, "", 1},
		{"w6 ready", 4 * time.Second, func(now time.Time) []protocol.Envelope {
			return b.HandleWorker(now, "w6", "", readyZ("S"))
		}, "w6", 2},
	}
	for _, st := range steps {
		now := at(st.at)
		reqs := requests(st.do(now))
		if st.to == "" {
			if len(reqs) != 0 {
				t.Fatalf("%s: dispatched %+v, want the job queued", st.name, reqs)
			}
			if info, _ := b.Job(id); id != "" && (info.State != protocol.JobQueued || info.Attempts != st.want) {
				t.Fatalf("%s: job %s with %d attempts, want queued with %d", st.name, info.State, info.Attempts, st.want)
			}
			continue
		}
		if len(reqs) != 1 || reqs[0].To != st.to || reqs[0].Job != id {
			t.Fatalf("%s: dispatched %+v, want job %s to %s", st.name, reqs, id, st.to)
		}
		if got, md, _ := dispatched(t, reqs[0]); got != id || md.Attempt != st.want {
			t.Fatalf("%s: job %s attempt %d at %s, want attempt %d", st.name, got, md.Attempt, st.to, st.want)
		}
	}
	out := b.HandleWorker(at(5*time.Second), "w6", "", final(id, protocol.Meta{Status: protocol.StatusComplete}))
	none(t, out, protocol.ToWorker)
	if info, _ := b.Job(id); info.State != protocol.JobComplete || info.Attempts != 2 {
		t.Fatalf("job %+v, want complete after 2 attempts", info)
	}
}

// Of the jobs a prefetching worker holds, those whose REQUESTs were not
// sent go back uncounted and in order; the one it received is lost there.
func TestBroker_UndeliveredPrefetchedJobs(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyWith("S", protocol.Meta{Prefetch: 2}))
	_, ids := to(t, submitN(t, b, "S", 3))
	// The first REQUEST was sent; the other two were not.
	b.Unreachable(t0, "w1", ids[1], ids[2])
	for i, want := range []int{1, 0, 0} {
		if info, _ := b.Job(ids[i]); info.State != protocol.JobQueued || info.Attempts != want {
			t.Errorf("job %d: %s with %d attempts, want queued with %d", i, info.State, info.Attempts, want)
		}
	}
	reqs := requests(b.HandleWorker(at(time.Second), "w2", "", readyWith("S", protocol.Meta{Prefetch: 2})))
	for i, want := range []int{2, 1, 1} {
		if i >= len(reqs) {
			t.Fatalf("w2 got %d jobs, want 3", len(reqs))
		}
		if got, md, _ := dispatched(t, reqs[i]); got != ids[i] || md.Attempt != want {
			t.Errorf("w2's job %d: %s attempt %d, want %s attempt %d", i, got, md.Attempt, ids[i], want)
		}
	}
}

// The shutdown log counts as dropped only the jobs that are: sync ones
// (their callers are told), and async ones held only in memory. A durable
// broker's async jobs are kept by the store, and counted apart.
func TestBroker_ShutdownCountsOnlyDroppedJobs(t *testing.T) {
	for _, c := range []struct {
		durable       bool
		dropped, kept string // the jobs field of each log line, "" for none
	}{
		{false, `"jobs":3`, ""},
		{true, `"jobs":1`, `"jobs":2`},
	} {
		var logs bytes.Buffer
		b := broker.New(broker.Config{Heartbeat: time.Second, Durable: c.durable, Logger: zerolog.New(&logs)})
		b.HandleWorker(t0, "w1", "", readyZ("S"))
		b.HandleClient(t0, "c", "", zreq("SYNC-S", nil)) // active at w1
		b.HandleClient(t0, "c", "", zreq("S", nil))      // queued
		b.HandleClient(t0, "c", "", zreq("S", nil))      // queued
		b.Shutdown(at(time.Second))
		line := func(msg string) string {
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, msg) {
					return l
				}
			}
			return ""
		}
		dropped, kept := line("dropped at shutdown"), line("kept in the job store")
		if (c.dropped == "") != (dropped == "") || !strings.Contains(dropped, c.dropped) {
			t.Errorf("durable %v: dropped log %q, want %s", c.durable, dropped, c.dropped)
		}
		if (c.kept == "") != (kept == "") || !strings.Contains(kept, c.kept) {
			t.Errorf("durable %v: kept log %q, want %s", c.durable, kept, c.kept)
		}
	}
}

// A worker that cut a job's output says so in its FINAL: the job's record
// says its output is truncated, though the broker kept all it was sent.
func TestBroker_OutputTruncatedByWorker(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	b.HandleWorker(at(time.Second), "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete, OutputTruncated: true}, "the first part"))
	info, _ := b.Job(id)
	if info.State != protocol.JobComplete || !info.OutputTruncated || string(info.Output) != "the first part" {
		t.Fatalf("job %+v, want complete with its output marked truncated", info)
	}
	id2, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	b.HandleWorker(at(time.Second), "w1", "", final(id2, protocol.Meta{Status: protocol.StatusComplete}, "all"))
	if info, _ := b.Job(id2); info.OutputTruncated {
		t.Fatalf("job %+v marked truncated", info)
	}
}
