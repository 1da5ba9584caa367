package server_test

// These tests speak to a real zmwsd loop over real sockets with peers written
// straight from the specs: raw zmq sockets and hand-built frames, not this
// project's codec or libraries, so a codec bug cannot hide itself.

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
)

const wait = 5 * time.Second

func start(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.ClientBind == "" {
		cfg.ClientBind = "tcp://127.0.0.1:*"
	}
	if cfg.WorkerBind == "" {
		cfg.WorkerBind = "tcp://127.0.0.1:*"
	}
	if cfg.Broker.Heartbeat == 0 {
		cfg.Broker.Heartbeat = 100 * time.Millisecond
	}
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "server", srv.Run)
	return srv
}

func b(s string) []byte { return []byte(s) }

// frames is what a test expects, as strings; "*" matches any frame.
func expect(t *testing.T, got [][]byte, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames [%s], want %d %q", len(got), zmqtest.Join(got), len(want), want)
	}
	for i := range want {
		if want[i] != "*" && string(got[i]) != want[i] {
			t.Fatalf("frame %d = %q, want %q (all: %s)", i, got[i], want[i], zmqtest.Join(got))
		}
	}
}

// v1Worker connects a DEALER that speaks 7/MDP (with the empty delimiter,
// as a DEALER must to look like the spec's REQ-less worker) and sends READY.
func v1Worker(t *testing.T, ep, service string) *zmq.Socket {
	w := zmqtest.Connect(t, zmq.DEALER, ep)
	zmqtest.Send(t, w, b(""), b("MDPW01"), []byte{0x01}, b(service))
	return w
}

// v2Worker connects a DEALER that speaks 18/MDP (no delimiter) and sends READY.
func v2Worker(t *testing.T, ep, service string) *zmq.Socket {
	w := zmqtest.Connect(t, zmq.DEALER, ep)
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x01}, b(service))
	return w
}

// recvSkipHeartbeats returns the next worker message that is not a HEARTBEAT.
func recvSkipHeartbeats(t *testing.T, w *zmq.Socket, hb byte) [][]byte {
	t.Helper()
	var msg [][]byte
	zmqtest.Eventually(t, "a worker message other than HEARTBEAT", wait, func() bool {
		m, ok := zmqtest.TryRecv(w, 50*time.Millisecond)
		if !ok {
			return false
		}
		cmd := m[1]
		if len(m[0]) == 0 {
			cmd = m[2]
		}
		if len(cmd) == 1 && cmd[0] == hb {
			return false
		}
		msg = m
		return true
	})
	return msg
}

func TestServer_StockMDP01WorkerAndClient(t *testing.T) {
	srv := start(t, server.Config{})
	w := v1Worker(t, srv.WorkerEndpoint(), "ECHO")
	c := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())

	// Wait until the worker is known (READY may still be in flight).
	waitService(t, srv.ClientEndpoint(), "ECHO")

	// Sync: the stock client gets the service's answer itself.
	zmqtest.Send(t, c, b("MDPC01"), b("SYNC-ECHO"), b("hello"))
	req := recvSkipHeartbeats(t, w, 0x04)
	expect(t, req, "", "MDPW01", "\x02", "*", "", "hello")
	job := req[3]
	zmqtest.Send(t, w, b(""), b("MDPW01"), []byte{0x03}, job, b(""), b("HELLO"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC01", "SYNC-ECHO", "HELLO")

	// Async: the reply is the job ID at once; the worker gets the job.
	zmqtest.Send(t, c, b("MDPC01"), b("ECHO"), b("later"))
	reply := zmqtest.Recv(t, c, wait)
	expect(t, reply, "MDPC01", "ECHO", "*")
	if len(reply[2]) != 26 {
		t.Fatalf("job ID %q is not a ULID", reply[2])
	}
	req = recvSkipHeartbeats(t, w, 0x04)
	expect(t, req, "", "MDPW01", "\x02", string(reply[2]), "", "later")
	zmqtest.Send(t, w, b(""), b("MDPW01"), []byte{0x03}, req[3], b(""), b("done"))

	// Unknown service: refused at once, never queued.
	zmqtest.Send(t, c, b("MDPC01"), b("NOPE"), b("x"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC01", "NOPE", "FAIL", "unknown_service", "no worker has ever provided service NOPE")
	zmqtest.Send(t, c, b("MDPC01"), b("SYNC:NOPE"), b("x"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC01", "SYNC:NOPE", "FAIL", "unknown_service", "no worker has ever provided service NOPE")

	// The async job shows up as finished in SERVER-JOBS.
	zmqtest.Eventually(t, "SERVER-JOBS showing the async job complete", wait, func() bool {
		zmqtest.Send(t, c, b("MDPC01"), b("SERVER-JOBS"))
		r := zmqtest.Recv(t, c, wait)
		var jobs []struct{ ID, State string }
		if err := json.Unmarshal(r[2], &jobs); err != nil {
			t.Fatalf("SERVER-JOBS: %v: %q", err, r[2])
		}
		return len(jobs) == 2 && jobs[0].ID == string(reply[2]) && jobs[0].State == "complete"
	})
}

// waitService polls mmi.service until name answers 200.
func waitService(t *testing.T, ep, name string) {
	t.Helper()
	c := zmqtest.Connect(t, zmq.DEALER, ep)
	zmqtest.Eventually(t, "service "+name+" known to mmi.service", wait, func() bool {
		zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("mmi.service"), b(name))
		return string(zmqtest.Recv(t, c, wait)[3]) == "200"
	})
}

func TestServer_MDP02PartialsInOrderBeforeFinal(t *testing.T) {
	srv := start(t, server.Config{})
	w := v2Worker(t, srv.WorkerEndpoint(), "TAIL")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	waitService(t, srv.ClientEndpoint(), "TAIL")

	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SYNC-TAIL"), b("go"))
	req := recvSkipHeartbeats(t, w, 0x05)
	expect(t, req, "MDPW02", "\x02", "*", "", "go")
	const n = 20
	for i := 0; i < n; i++ {
		zmqtest.Send(t, w, b("MDPW02"), []byte{0x03}, req[2], b(""), []byte{byte('a' + i)})
	}
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x04}, req[2], b(""), b("end"))
	for i := 0; i < n; i++ {
		expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x02", "SYNC-TAIL", string(rune('a'+i)))
	}
	expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", "SYNC-TAIL", "end")

	// mmi.service per 8/MMI.
	for _, tc := range []struct{ service, name, want string }{
		{"mmi.service", "TAIL", "200"}, {"mmi.service", "NOPE", "404"}, {"mmi.other", "TAIL", "501"},
	} {
		zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b(tc.service), b(tc.name))
		expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", tc.service, tc.want)
	}
}

func TestServer_WorkerKilledMidJobIsReplaced(t *testing.T) {
	const hb, liveness = 100 * time.Millisecond, 3
	srv := start(t, server.Config{Broker: broker.Config{Heartbeat: hb, Liveness: liveness, MaxAttempts: 2}})
	ep := srv.WorkerEndpoint()

	victim := v2Worker(t, ep, "WORK")
	waitService(t, srv.ClientEndpoint(), "WORK")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SYNC-WORK"), b("x"))
	job := recvSkipHeartbeats(t, victim, 0x05)[2]

	// Kill the victim: its socket closes without DISCONNECT.
	victim.SetLinger(0)
	victim.Close()
	killed := time.Now()

	// A second worker that heartbeats gets the same job.
	w2 := v2Worker(t, ep, "WORK")
	got := heartbeatUntilRequest(t, w2, hb)
	elapsed := time.Since(killed)
	if !bytes.Equal(got[2], job) {
		t.Fatalf("worker 2 got job %q, want %q", got[2], job)
	}
	if elapsed > hb*liveness {
		t.Errorf("re-dispatch took %v, want within heartbeat × liveness = %v", elapsed, hb*liveness)
	}
	t.Logf("job re-dispatched %v after the worker died", elapsed)

	// Worker 2 dies too: attempts (2) are spent, the sync client hears why.
	w2.SetLinger(0)
	w2.Close()
	r := zmqtest.Recv(t, c, wait)
	expect(t, r, "MDPC02", "\x03", "SYNC-WORK", "FAIL", "worker_lost", "*")
	if !strings.Contains(string(r[5]), "attempt 2 of 2") {
		t.Fatalf("reason %q", r[5])
	}
}

// heartbeatUntilRequest keeps w alive with heartbeats until a REQUEST comes.
// Each poll waits up to hb/2 for a message, which for hb of 100 ms is
// Eventually's whole interval: the REQUEST is read the moment it comes
// (tests time its arrival).
func heartbeatUntilRequest(t *testing.T, w *zmq.Socket, hb time.Duration) [][]byte {
	t.Helper()
	var msg [][]byte
	next := time.Now()
	zmqtest.Eventually(t, "a REQUEST", wait, func() bool {
		if time.Now().After(next) {
			zmqtest.Send(t, w, b("MDPW02"), []byte{0x05})
			next = time.Now().Add(hb / 2)
		}
		m, ok := zmqtest.TryRecv(w, hb/2)
		if ok && len(m) > 2 && m[1][0] == 0x02 {
			msg = m
			return true
		}
		return false
	})
	return msg
}

func TestServer_MalformedInputLeavesBrokerServing(t *testing.T) {
	srv := start(t, server.Config{MaxMsgSize: 1 << 20})
	big := bytes.Repeat([]byte("x"), 2<<20)

	// Worker socket: garbage, then a huge frame.
	for _, msg := range [][][]byte{
		{b("MDPW02")},
		{b("NOTMDP"), []byte{0x01}, b("S")},
		{b("MDPW02"), []byte{0x42}},
		{b("MDPW02"), []byte{0x01}},
		{b("MDPW02"), []byte{0x04}, b("forged-job"), b(""), b("x")},
		{b("MDPW02"), []byte{0x01}, b("S"), big},
	} {
		bad := zmqtest.Connect(t, zmq.DEALER, srv.WorkerEndpoint())
		zmqtest.Send(t, bad, msg...)
	}
	// Client socket: garbage, then a huge frame.
	for _, msg := range [][][]byte{
		{b("MDPC02")},
		{b("GET / HTTP/1.1")},
		{b("MDPC02"), []byte{0x09}, b("S")},
		{b("MDPC02"), []byte{0x01}, b("S"), big},
	} {
		bad := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
		zmqtest.Send(t, bad, msg...)
	}

	// The next valid worker and client are served.
	w := v2Worker(t, srv.WorkerEndpoint(), "OK")
	waitService(t, srv.ClientEndpoint(), "OK")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SYNC-OK"), b("ping"))
	req := recvSkipHeartbeats(t, w, 0x05)
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x04}, req[2], b(""), b("pong"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", "SYNC-OK", "pong")

	// The huge READY never registered service S.
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("mmi.service"), b("S"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", "mmi.service", "404")
}

func TestServer_EventsAndShutdown(t *testing.T) {
	srv, err := server.New(server.Config{
		ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", EventsBind: "tcp://127.0.0.1:*",
		Broker: broker.Config{Heartbeat: 100 * time.Millisecond},
		Logger: zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer cancel()

	sub := zmqtest.Connect(t, zmq.SUB, srv.EventsEndpoint())
	sub.SetSubscribe("")
	w := v2Worker(t, srv.WorkerEndpoint(), "EV")
	waitService(t, srv.ClientEndpoint(), "EV")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	// PUB/SUB joins are asynchronous: submit until the first event arrives.
	var first [][]byte
	zmqtest.Eventually(t, "an event of a job submitted", wait, func() bool {
		zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("EV"))
		zmqtest.Recv(t, c, wait)
		first, _ = zmqtest.TryRecv(sub, 20*time.Millisecond)
		return first != nil
	})
	if string(first[0]) != "queued" {
		t.Fatalf("first event %s", zmqtest.Join(first))
	}
	var ev struct{ Event, Job, Service string }
	if err := json.Unmarshal(first[1], &ev); err != nil || ev.Event != "queued" || ev.Service != "EV" || ev.Job == "" {
		t.Fatalf("event body %s: %v", first[1], err)
	}
	// Finish the jobs the worker got and see started/completed for that job.
	seen := map[string]bool{}
	zmqtest.Eventually(t, "started and completed events of job "+ev.Job, wait, func() bool {
		if msg, ok := zmqtest.TryRecv(w, 10*time.Millisecond); ok && msg[1][0] == 0x02 {
			zmqtest.Send(t, w, b("MDPW02"), []byte{0x04}, msg[2], b(""), b("ok"))
		}
		if msg, ok := zmqtest.TryRecv(sub, 10*time.Millisecond); ok {
			var e struct{ Job string }
			json.Unmarshal(msg[1], &e)
			if e.Job == ev.Job {
				seen[string(msg[0])] = true
			}
		}
		return seen["started"] && seen["completed"]
	})

	// Shutdown: the worker is told DISCONNECT, Run returns nil.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
	if msg := recvSkipHeartbeats(t, w, 0x05); msg[1][0] != 0x06 {
		t.Fatalf("want DISCONNECT, got %s", zmqtest.Join(msg))
	}
}

func TestServer_BindErrorIsClear(t *testing.T) {
	srv := start(t, server.Config{})
	_, err := server.New(server.Config{ClientBind: srv.ClientEndpoint(), WorkerBind: "tcp://127.0.0.1:*"})
	if err == nil || !strings.Contains(err.Error(), srv.ClientEndpoint()) {
		t.Fatalf("binding a used endpoint: %v", err)
	}
}

func TestServer_SilentWorkerExpiresAndJobMoves(t *testing.T) {
	const hb, liveness = 100 * time.Millisecond, 3
	srv := start(t, server.Config{Broker: broker.Config{Heartbeat: hb, Liveness: liveness}})
	ep := srv.WorkerEndpoint()

	// A hung worker: connected, but says nothing after READY.
	hung := v2Worker(t, ep, "WORK")
	lastWord := time.Now()
	waitService(t, srv.ClientEndpoint(), "WORK")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("WORK"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", "WORK", "*")
	job := recvSkipHeartbeats(t, hung, 0x05)[2]

	w2 := v2Worker(t, ep, "WORK")
	got := heartbeatUntilRequest(t, w2, hb)
	silent := time.Since(lastWord)
	if !bytes.Equal(got[2], job) {
		t.Fatalf("worker 2 got %q, want %q", got[2], job)
	}
	// Expiry is due hb×liveness after the last word; allow one heartbeat
	// of scheduling noise on a shared machine.
	if silent < hb*liveness || silent > hb*(liveness+1) {
		t.Errorf("job moved after %v of silence, want about %v", silent, hb*liveness)
	}
	t.Logf("job moved after %v of silence (heartbeat × liveness = %v)", silent, hb*liveness)

	// The hung worker, waking up, is told to go away.
	zmqtest.Send(t, hung, b("MDPW02"), []byte{0x04}, job, b(""), b("late"))
	if msg := recvSkipHeartbeats(t, hung, 0x05); msg[1][0] != 0x06 {
		t.Fatalf("want DISCONNECT for the expired worker, got %s", zmqtest.Join(msg))
	}
}

func TestServer_InprocClientAndEvents(t *testing.T) {
	srv := start(t, server.Config{ClientInproc: "inproc://test-clients", EventsInproc: "inproc://test-events"})
	if srv.EventsEndpoint() != "" {
		t.Fatalf("events endpoint %q, want none on the network", srv.EventsEndpoint())
	}
	sub := zmqtest.Connect(t, zmq.SUB, "inproc://test-events")
	sub.SetSubscribe("")
	w := v2Worker(t, srv.WorkerEndpoint(), "IN")
	waitService(t, srv.ClientEndpoint(), "IN")
	c := zmqtest.Connect(t, zmq.DEALER, "inproc://test-clients")
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SYNC-IN"), b("x"))
	req := recvSkipHeartbeats(t, w, 0x05)
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x04}, req[2], b(""), b("y"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", "SYNC-IN", "y")
	if ev := zmqtest.Recv(t, sub, wait); string(ev[0]) != "queued" {
		t.Fatalf("first inproc event %s", zmqtest.Join(ev))
	}
}

// Alive comes from the loop while it serves, idle or not, and stops with Run.
func TestServer_AliveWhileServing(t *testing.T) {
	alive := make(chan time.Time, 100)
	srv, err := server.New(server.Config{
		ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*",
		Broker: broker.Config{Heartbeat: time.Hour}, // nothing else wakes the loop
		Logger: zerolog.New(zerolog.NewTestWriter(t)),
		Alive: func() {
			select {
			case alive <- time.Now():
			default:
			}
		},
		AliveEvery: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var first, last time.Time
	for i := range 5 {
		select {
		case at := <-alive:
			if i == 0 {
				first = at
			}
			last = at
		case <-time.After(wait):
			t.Fatalf("Alive called %d times, want 5", i)
		}
	}
	if d := last.Sub(first); d < 4*20*time.Millisecond {
		t.Errorf("5 calls in %v: more often than AliveEvery", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for len(alive) > 0 {
		<-alive
	}
	select {
	case <-alive:
		t.Error("Alive called after Run returned")
	case <-time.After(100 * time.Millisecond):
	}
}
