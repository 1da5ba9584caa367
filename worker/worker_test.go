package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
)

// echo returns "service/attempt/params/input" and fails on request:
// params mode=fail|exit|panic.
var echo = HandlerFunc(func(ctx context.Context, j *Job) ([]byte, error) {
	switch j.Params["mode"] {
	case "fail":
		return []byte("partial result"), errors.New("it broke")
	case "exit":
		return nil, fmt.Errorf("run tool: %w", &ExitError{Code: 3, Err: errors.New("bad input")})
	case "panic":
		panic("boom")
	case "cut":
		j.SetOutputTruncated()
		return []byte("the first part"), nil
	}
	return fmt.Appendf(nil, "%s/%d/%s/%s", j.Service, j.Attempt, j.Params["k"], bytes.Join(j.Input, []byte("+"))), nil
})

func TestNew_Validates(t *testing.T) {
	ok := Config{Brokers: []string{"tcp://127.0.0.1:5556"}, Service: "ECHO", Handler: echo}
	for name, mod := range map[string]func(*Config){
		"no service":       func(c *Config) { c.Service = "" },
		"reserved service": func(c *Config) { c.Service = "SYNC-ECHO" },
		"space in service": func(c *Config) { c.Service = "A B" },
		"no handler":       func(c *Config) { c.Handler = nil },
		"no broker":        func(c *Config) { c.Brokers = nil },
		"bad endpoint":     func(c *Config) { c.Brokers = []string{"127.0.0.1:5556"} },
		"neg concurrency":  func(c *Config) { c.Concurrency = -1 },
		"neg heartbeat":    func(c *Config) { c.Heartbeat = -time.Second },
		"min above max":    func(c *Config) { c.ReconnectMin, c.ReconnectMax = time.Second, time.Millisecond },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	w, err := New(ok)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := w.cfg
	if c.Concurrency != 1 || c.Heartbeat != DefaultHeartbeat || c.Liveness != DefaultLiveness ||
		c.ReconnectMin != DefaultReconnectMin || c.ReconnectMax != DefaultReconnectMax || c.Grace != DefaultGrace {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.Details.PID != os.Getpid() || c.Details.Name != DefaultName {
		t.Errorf("details = %+v", *c.Details)
	}
}

func TestWorker_SendsReady(t *testing.T) {
	b := newFakeBroker(t)
	cfg := testConfig(t, echo, b.ep)
	cfg.Details = &protocol.WorkerDetails{Name: "test/1"}
	start(t, cfg)

	g := b.expect(t, protocol.CmdReady)
	if len(g.raw) != 4 || string(g.raw[0]) != protocol.HeaderWorkerV2 || !bytes.Equal(g.raw[1], []byte{0x01}) ||
		string(g.raw[2]) != "ECHO" {
		t.Fatalf("READY frames = %q, want MDPW02, 0x01, ECHO, meta (no delimiter)", g.raw)
	}
	meta, err := protocol.DecodeMeta(g.raw[3])
	if err != nil {
		t.Fatalf("READY meta: %v", err)
	}
	host, _ := os.Hostname()
	want := protocol.WorkerDetails{Host: host, PID: os.Getpid(), Name: "test/1"}
	if meta.Worker == nil || *meta.Worker != want {
		t.Errorf("READY details = %+v, want %+v", meta.Worker, want)
	}
	// Heartbeats follow, without a delimiter either.
	for g := range b.in {
		if g.msg.Cmd == protocol.CmdHeartbeat {
			if len(g.raw) != 2 {
				t.Errorf("HEARTBEAT frames = %q", g.raw)
			}
			break
		}
	}
}

func TestWorker_Outcomes(t *testing.T) {
	b := newFakeBroker(t)
	start(t, testConfig(t, echo, b.ep))
	id := b.expect(t, protocol.CmdReady).id

	exit3 := 3
	for _, tc := range []struct {
		name     string
		meta     protocol.Meta
		input    [][]byte
		want     protocol.Meta
		wantBody []string
	}{
		{"complete", protocol.Meta{Service: "SYNC-ECHO", Attempt: 2, Params: map[string]string{"k": "v"}},
			[][]byte{[]byte("in1"), []byte("in2")},
			protocol.Meta{Status: protocol.StatusComplete}, []string{"SYNC-ECHO/2/v/in1+in2"}},
		{"defaults", protocol.Meta{}, nil,
			protocol.Meta{Status: protocol.StatusComplete}, []string{"ECHO/1//"}},
		{"error", protocol.Meta{Params: map[string]string{"mode": "fail"}}, nil,
			protocol.Meta{Status: protocol.StatusFailed, Error: "it broke"}, []string{"partial result"}},
		{"exit error", protocol.Meta{Params: map[string]string{"mode": "exit"}}, nil,
			protocol.Meta{Status: protocol.StatusFailed, Error: "run tool: exit status 3: bad input", ExitCode: &exit3}, []string{}},
		{"panic", protocol.Meta{Params: map[string]string{"mode": "panic"}}, nil,
			protocol.Meta{Status: protocol.StatusFailed, Error: "panic: boom"}, []string{}},
		{"after panic", protocol.Meta{Params: map[string]string{"k": "again"}}, nil,
			protocol.Meta{Status: protocol.StatusComplete}, []string{"ECHO/1/again/"}},
		{"output cut", protocol.Meta{Params: map[string]string{"mode": "cut"}}, nil,
			protocol.Meta{Status: protocol.StatusComplete, OutputTruncated: true}, []string{"the first part"}},
	} {
		job := "job-" + strings.ReplaceAll(tc.name, " ", "-")
		b.request(id, job, tc.meta, tc.input...)
		g := b.next(t)
		if g.id != id {
			t.Fatalf("%s: reply from %s, want %s", tc.name, g.id, id)
		}
		meta, body := final(t, g, job)
		if !reflect.DeepEqual(meta, tc.want) || !reflect.DeepEqual(body, tc.wantBody) {
			t.Errorf("%s: FINAL meta %+v body %q, want %+v %q", tc.name, meta, body, tc.want, tc.wantBody)
		}
	}
}

func TestWorker_PartialsInOrderBeforeFinal(t *testing.T) {
	b := newFakeBroker(t)
	const n = 50
	writeErr := make(chan error, 1)
	var after *Job
	cfg := testConfig(t, HandlerFunc(func(ctx context.Context, j *Job) ([]byte, error) {
		buf := make([]byte, 0, 8)
		for i := range n {
			buf = fmt.Appendf(buf[:0], "p%d", i) // reused: Write must copy
			if _, err := j.Write(buf); err != nil {
				return nil, err
			}
		}
		after = j
		return []byte("end"), nil
	}), b.ep)
	start(t, cfg)
	id := b.expect(t, protocol.CmdReady).id
	b.request(id, "j1", protocol.Meta{})
	for i := range n {
		g := b.expect(t, protocol.CmdPartial)
		if string(g.msg.Address) != "j1" || len(g.msg.Body) != 1 || string(g.msg.Body[0]) != fmt.Sprintf("p%d", i) {
			t.Fatalf("partial %d = %s", i, zmqtest.Join(g.raw))
		}
	}
	meta, body := final(t, b.next(t), "j1")
	if meta.Status != protocol.StatusComplete || !reflect.DeepEqual(body, []string{"end"}) {
		t.Errorf("FINAL %+v %q", meta, body)
	}
	go func() { _, err := after.Write([]byte("late")); writeErr <- err }()
	if err := <-writeErr; !errors.Is(err, ErrJobDone) {
		t.Errorf("Write after return: %v, want ErrJobDone", err)
	}
}

func TestJob_WriteWithoutWorker(t *testing.T) {
	var j Job
	if _, err := j.Write([]byte("x")); !errors.Is(err, ErrNoStream) {
		t.Errorf("Write = %v, want ErrNoStream", err)
	}
}

// When the broker reads slowly, partials queue up and Write blocks: output
// is delayed, never lost or reordered.
func TestWorker_BackPressureKeepsPartials(t *testing.T) {
	b := newFakeBroker(t, func(s *zmq.Socket) { s.SetRcvhwm(2); s.SetRcvbuf(64 << 10) })
	// More than the outbox (1000 messages) and the kernel's socket buffers
	// (tens of MiB on loopback) hold, so the slot queues and Write waits.
	const chunks, size = 4000, 16 << 10
	var written atomic.Int32
	cfg := testConfig(t, HandlerFunc(func(ctx context.Context, j *Job) ([]byte, error) {
		buf := make([]byte, size)
		for i := range chunks {
			buf[0] = byte(i) // Write copies: reusing buf is fine
			if _, err := j.Write(buf); err != nil {
				return nil, err
			}
			written.Add(1)
		}
		return []byte("end"), nil
	}), b.ep)
	cfg.Liveness = 100 // the paused broker sends no heartbeats
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.sndhwm = 2
	run(t, w)
	id := b.expect(t, protocol.CmdReady).id
	b.paused.Store(true)
	b.request(id, "big", protocol.Meta{})
	// Wait until the handler is blocked (its count stops moving) or done.
	last, since := int32(-1), time.Now()
	zmqtest.Eventually(t, "the handler blocked or done", wait, func() bool {
		if n := written.Load(); n != last {
			last, since = n, time.Now()
			return false
		}
		return last == chunks || time.Since(since) > 200*time.Millisecond
	})
	if last == chunks {
		t.Logf("all %d chunks fit in the buffers: Write never blocked", chunks)
	}
	b.paused.Store(false)
	for i := range chunks {
		g := b.next(t)
		if g.msg.Cmd != protocol.CmdPartial || len(g.msg.Body) != 1 || len(g.msg.Body[0]) != size || g.msg.Body[0][0] != byte(i) {
			t.Fatalf("message %d: %v with %d frames, want PARTIAL %d", i, g.msg.Cmd, len(g.msg.Body), i)
		}
	}
	if meta, body := final(t, b.next(t), "big"); meta.Status != protocol.StatusComplete || len(body) != 1 {
		t.Errorf("FINAL %+v %q", meta, body)
	}
}

// A partial must reach the wire at once, not at the next heartbeat or poll
// timeout (here 1s).
func TestWorker_PartialIsPrompt(t *testing.T) {
	b := newFakeBroker(t)
	wrote := make(chan time.Time, 1)
	release := make(chan struct{})
	cfg := testConfig(t, HandlerFunc(func(ctx context.Context, j *Job) ([]byte, error) {
		wrote <- time.Now()
		j.Write([]byte("now"))
		<-release
		return nil, nil
	}), b.ep)
	cfg.Heartbeat = time.Second
	start(t, cfg)
	defer close(release)
	id := b.expect(t, protocol.CmdReady).id
	b.request(id, "j1", protocol.Meta{})
	g := b.expect(t, protocol.CmdPartial)
	if d := g.at.Sub(<-wrote); d > 200*time.Millisecond {
		t.Errorf("partial took %v to arrive", d)
	}
}

func TestWorker_HeartbeatsDuringLongJob(t *testing.T) {
	b := newFakeBroker(t)
	const long = time.Second // > heartbeat*liveness = 300ms
	cfg := testConfig(t, HandlerFunc(func(ctx context.Context, j *Job) ([]byte, error) {
		select {
		case <-time.After(long):
			return []byte("done"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}), b.ep)
	cfg.Liveness = 6
	start(t, cfg)
	id := b.expect(t, protocol.CmdReady).id
	b.request(id, "long", protocol.Meta{})
	heartbeats := 0
	deadline := time.After(wait)
	for {
		select {
		case g := <-b.in:
			if g.id != id {
				t.Fatalf("message from a new identity %s during the job: %s", g.id, zmqtest.Join(g.raw))
			}
			switch g.msg.Cmd {
			case protocol.CmdHeartbeat:
				heartbeats++
				continue
			case protocol.CmdReply:
				meta, body := final(t, g, "long")
				if meta.Status != protocol.StatusComplete || !reflect.DeepEqual(body, []string{"done"}) {
					t.Errorf("FINAL %+v %q", meta, body)
				}
				if heartbeats < 10 {
					t.Errorf("%d heartbeats during a %v job at 50ms intervals", heartbeats, long)
				}
				return
			}
			t.Fatalf("unexpected %v during the job", g.msg.Cmd)
		case <-deadline:
			t.Fatal("no FINAL")
		}
	}
}

func TestWorker_ReconnectsWhenBrokerSilent(t *testing.T) {
	b := newFakeBroker(t)
	b.silent.Store(true)
	cfg := testConfig(t, echo, b.ep)
	cfg.Liveness = 3
	start(t, cfg)
	first := b.expect(t, protocol.CmdReady)
	second := b.expect(t, protocol.CmdReady)
	if second.id == first.id {
		t.Fatalf("reconnected with the same identity %s", first.id)
	}
	// Not before heartbeat*liveness (150ms) plus backoff; the margin allows
	// for the first READY's delivery time.
	if d := second.at.Sub(first.at); d < 100*time.Millisecond {
		t.Errorf("reconnected after %v", d)
	}
	// Once the broker answers, the worker stays and serves.
	// (It may have reconnected again meanwhile: ask the latest identity.)
	b.silent.Store(false)
	for cur := second.id; ; {
		b.request(cur, "j1", protocol.Meta{})
		g := b.next(t)
		if g.msg.Cmd == protocol.CmdReply {
			final(t, g, "j1")
			return
		}
		if g.msg.Cmd != protocol.CmdReady {
			t.Fatalf("got %v", g.msg.Cmd)
		}
		cur = g.id
	}
}

func TestWorker_ReconnectsOnDisconnect(t *testing.T) {
	b := newFakeBroker(t)
	start(t, testConfig(t, echo, b.ep))
	first := b.expect(t, protocol.CmdReady)
	b.send(first.id, protocol.Message{Cmd: protocol.CmdDisconnect})
	second := b.expect(t, protocol.CmdReady)
	if second.id == first.id {
		t.Fatalf("reconnected with the same identity %s", first.id)
	}
	b.request(second.id, "j1", protocol.Meta{})
	if meta, _ := final(t, b.next(t), "j1"); meta.Status != protocol.StatusComplete {
		t.Errorf("FINAL %+v", meta)
	}
}

// After a reconnect, a slot whose handler still runs must not say READY (it
// would get a second job), and the old job's result must not be sent.
func TestWorker_NoReadyUntilHandlerReturns(t *testing.T) {
	b := newFakeBroker(t)
	release := make(chan struct{})
	cancelled := make(chan struct{})
	started := make(chan *Job, 1)
	start(t, testConfig(t, HandlerFunc(func(ctx context.Context, j *Job) ([]byte, error) {
		started <- j
		<-ctx.Done() // the lost connection cancels the job...
		close(cancelled)
		<-release // ...but this handler takes its time
		j.Write([]byte("late partial"))
		return []byte("late result"), nil
	}), b.ep))
	first := b.expect(t, protocol.CmdReady)
	b.request(first.id, "old", protocol.Meta{})
	recvJob(t, started)
	b.send(first.id, protocol.Message{Cmd: protocol.CmdDisconnect})
	select {
	case <-cancelled:
	case <-time.After(wait):
		t.Fatal("handler ctx not cancelled after DISCONNECT")
	}
	b.quiet(t, 300*time.Millisecond) // well past the 10-50ms backoff
	close(release)
	second := b.expect(t, protocol.CmdReady)
	if second.id == first.id {
		t.Fatalf("same identity %s", first.id)
	}
	b.quiet(t, 100*time.Millisecond) // no late partial or result
}

func TestWorker_FailoverFromDeadEndpoint(t *testing.T) {
	dead := zmqtest.FreeEndpoint(t)
	b := newFakeBroker(t)
	cfg := testConfig(t, echo, dead, b.ep)
	cfg.Liveness = 3
	start(t, cfg)
	g := b.expect(t, protocol.CmdReady)
	b.request(g.id, "j1", protocol.Meta{})
	if meta, _ := final(t, b.next(t), "j1"); meta.Status != protocol.StatusComplete {
		t.Errorf("FINAL %+v", meta)
	}
}

func TestWorker_FailoverFromSilentBrokerAndBack(t *testing.T) {
	silent, live := newFakeBroker(t), newFakeBroker(t)
	silent.silent.Store(true)
	cfg := testConfig(t, echo, silent.ep, live.ep)
	cfg.Liveness = 3
	start(t, cfg)
	s := silent.expect(t, protocol.CmdReady)
	l := live.expect(t, protocol.CmdReady)
	if l.at.Sub(s.at) < 100*time.Millisecond {
		t.Errorf("failed over after %v, before heartbeat*liveness", l.at.Sub(s.at))
	}
	// When the second goes silent too, the list wraps around to the first.
	live.silent.Store(true)
	silent.expect(t, protocol.CmdReady)
}

func TestWorker_Concurrency(t *testing.T) {
	b := newFakeBroker(t)
	h := newBlock()
	cfg := testConfig(t, h, b.ep)
	cfg.Concurrency = 3
	start(t, cfg)
	ids := map[string]bool{}
	for range 3 {
		ids[b.expect(t, protocol.CmdReady).id] = true
	}
	if len(ids) != 3 {
		t.Fatalf("READY identities %v, want 3 distinct", ids)
	}
	n := 0
	for id := range ids {
		n++
		b.request(id, fmt.Sprintf("j%d", n), protocol.Meta{})
	}
	for range 3 { // all three run at once: none is released yet
		recvJob(t, h.started)
	}
	close(h.release)
	done := map[string]string{}
	for range 3 {
		g := b.expect(t, protocol.CmdReply)
		done[string(g.msg.Address)] = g.id
	}
	if len(done) != 3 {
		t.Errorf("FINALs %v", done)
	}
}

// Ready comes once per Run, when the last slot has sent its first READY,
// and not again when a slot reconnects.
func TestWorker_ReadyOnceAllSlotsAnnounced(t *testing.T) {
	b := newFakeBroker(t)
	cfg := testConfig(t, echo, b.ep)
	cfg.Concurrency = 3
	var calls atomic.Int32
	ready := make(chan struct{}, 4)
	cfg.Ready = func() {
		calls.Add(1)
		ready <- struct{}{}
	}
	start(t, cfg)
	select {
	case <-ready:
	case <-time.After(wait):
		t.Fatal("Ready not called")
	}
	ids := map[string]bool{}
	for range 3 {
		ids[b.expect(t, protocol.CmdReady).id] = true
	}
	if len(ids) != 3 {
		t.Fatalf("READY identities %v, want 3 distinct", ids)
	}
	for id := range ids {
		b.send(id, protocol.Message{Cmd: protocol.CmdDisconnect})
		b.expect(t, protocol.CmdReady) // the slot is back
		break
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Ready called %d times, want 1", n)
	}
}

func TestWorker_OnIdle(t *testing.T) {
	b := newFakeBroker(t)
	h := newBlock()
	calls := make(chan time.Time, 100)
	var inside, overlap atomic.Int32
	cfg := testConfig(t, h, b.ep)
	cfg.Idle = 50 * time.Millisecond
	cfg.OnIdle = func() {
		if inside.Add(1) > 1 {
			overlap.Add(1)
		}
		calls <- time.Now()
		inside.Add(-1)
	}
	started := time.Now()
	stop := start(t, cfg)
	id := b.expect(t, protocol.CmdReady).id
	first, second := <-calls, <-calls
	if first.Sub(started) < cfg.Idle || second.Sub(first) < cfg.Idle {
		t.Errorf("OnIdle at %v and %v after start, want idle %v apart", first.Sub(started), second.Sub(started), cfg.Idle)
	}

	// Not while a job runs.
	b.request(id, "j1", protocol.Meta{})
	recvJob(t, h.started)
	for len(calls) > 0 { // a call may have raced with the job's start
		<-calls
	}
	b.quiet(t, 4*cfg.Idle)
	if n := len(calls); n > 0 {
		t.Errorf("%d OnIdle calls during a job", n)
	}
	close(h.release)
	end := b.expect(t, protocol.CmdReply).at
	if c := <-calls; c.Sub(end) < cfg.Idle/2 {
		t.Errorf("OnIdle %v after the job ended, want %v", c.Sub(end), cfg.Idle)
	}
	stop()
	if overlap.Load() != 0 {
		t.Error("OnIdle calls overlapped")
	}
}

func TestWorker_StopSendsDisconnect(t *testing.T) {
	b := newFakeBroker(t)
	cfg := testConfig(t, echo, b.ep)
	cfg.Concurrency = 2
	stop := start(t, cfg)
	ids := map[string]bool{b.expect(t, protocol.CmdReady).id: true, b.expect(t, protocol.CmdReady).id: true}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for range 2 {
		g := b.expect(t, protocol.CmdDisconnect)
		if !ids[g.id] {
			t.Errorf("DISCONNECT from unknown %s", g.id)
		}
		delete(ids, g.id)
	}
}

func TestWorker_StopWaitsForRunningJob(t *testing.T) {
	b := newFakeBroker(t)
	h := newBlock()
	stop := start(t, testConfig(t, h, b.ep))
	id := b.expect(t, protocol.CmdReady).id
	b.request(id, "j1", protocol.Meta{})
	recvJob(t, h.started)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	b.quiet(t, 200*time.Millisecond) // still heartbeating, no DISCONNECT yet
	close(h.release)
	meta, body := final(t, b.next(t), "j1")
	if meta.Status != protocol.StatusComplete || !reflect.DeepEqual(body, []string{"released j1"}) {
		t.Errorf("FINAL %+v %q", meta, body)
	}
	b.expect(t, protocol.CmdDisconnect)
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestWorker_StopCancelsJobAfterGrace(t *testing.T) {
	b := newFakeBroker(t)
	h := newBlock()
	cfg := testConfig(t, h, b.ep)
	cfg.Grace = 100 * time.Millisecond
	stop := start(t, cfg)
	id := b.expect(t, protocol.CmdReady).id
	b.request(id, "j1", protocol.Meta{})
	recvJob(t, h.started)
	t0 := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(t0); d < cfg.Grace {
		t.Errorf("Run returned after %v, before the grace period", d)
	}
	// The cancelled job is not reported: DISCONNECT makes the broker requeue it.
	b.expect(t, protocol.CmdDisconnect)
}

func TestWorker_StockRequest(t *testing.T) {
	b := newFakeBroker(t)
	jobs := make(chan *Job, 1)
	start(t, testConfig(t, HandlerFunc(func(ctx context.Context, j *Job) ([]byte, error) {
		jobs <- j
		if string(j.Input[0]) == "fail" {
			return nil, errors.New("no")
		}
		return bytes.ToUpper(j.Input[0]), nil
	}), b.ep))
	id := b.expect(t, protocol.CmdReady).id
	b.send(id, protocol.Message{Cmd: protocol.CmdRequest, Address: []byte("client-7"), Body: [][]byte{[]byte("hello")}})
	g := b.expect(t, protocol.CmdReply)
	if string(g.msg.Address) != "client-7" || !reflect.DeepEqual(zmqtest.Strings(g.msg.Body), []string{"HELLO"}) {
		t.Errorf("stock FINAL %s", zmqtest.Join(g.raw))
	}
	if j := <-jobs; j.ID != "client-7" || j.Service != "ECHO" || j.Attempt != 1 || j.Params == nil || len(j.Params) != 0 {
		t.Errorf("job = %+v", j)
	}
	b.send(id, protocol.Message{Cmd: protocol.CmdRequest, Address: []byte("c8"), Body: [][]byte{[]byte("fail")}})
	<-jobs
	g = b.expect(t, protocol.CmdReply)
	if want := []string{protocol.FailFrame, protocol.CodeJobFailed, "no"}; !reflect.DeepEqual(zmqtest.Strings(g.msg.Body), want) {
		t.Errorf("stock failure body %q, want %q", g.msg.Body, want)
	}
}

func TestWorker_SurvivesMalformedInput(t *testing.T) {
	b := newFakeBroker(t)
	start(t, testConfig(t, echo, b.ep))
	id := b.expect(t, protocol.CmdReady).id
	b.sendRaw(id, []byte("junk"))
	b.sendRaw(id, []byte(protocol.HeaderWorkerV2), []byte{0x7f})
	b.send(id, protocol.Message{Cmd: protocol.CmdReady, Service: "X"})
	b.send(id, protocol.Message{Cmd: protocol.CmdRequest, Address: []byte("bad"),
		Body: [][]byte{[]byte(protocol.MetaPrefix + "{not json")}})
	meta, _ := final(t, b.next(t), "bad")
	if meta.Status != protocol.StatusFailed || meta.Code != protocol.CodeBadRequest {
		t.Errorf("malformed meta: FINAL %+v", meta)
	}
	b.request(id, "good", protocol.Meta{})
	g := b.next(t)
	if g.id != id {
		t.Errorf("reconnected as %s", g.id)
	}
	if meta, _ := final(t, g, "good"); meta.Status != protocol.StatusComplete {
		t.Errorf("FINAL %+v", meta)
	}
}

func TestWorker_RunTwice(t *testing.T) {
	b := newFakeBroker(t)
	cfg := testConfig(t, echo, b.ep)
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	b.expect(t, protocol.CmdReady)
	if err := w.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestBackoff(t *testing.T) {
	w, err := New(Config{Brokers: []string{"tcp://x:1"}, Service: "S", Handler: echo,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := newMachine(&w.cfg, w.ready, w.log)
	for failures, base := range []time.Duration{100, 100, 200, 400, 800, 1000, 1000} {
		s.failures = failures
		base *= time.Millisecond
		if base > time.Second {
			base = time.Second
		}
		for range 20 {
			if d := s.backoff(); d < base || d > base+base/5 {
				t.Errorf("failures %d: backoff %v, want %v..%v", failures, d, base, base+base/5)
			}
		}
	}
}
