package worker

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/protocol"
)

// The machine's tests drive it with chosen instants and broker frames and
// compare what it asks of its loop, written as short strings (see
// describe). No sockets, no goroutines, no sleeps.

var t0 = time.Unix(1000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

// newTestMachine returns a machine for cfg's defaults and overrides, with
// no jitter: backoffs are exact.
func newTestMachine(t *testing.T, cfg Config) *machine {
	t.Helper()
	cfg.Service = "ECHO"
	cfg.Handler = echo
	if cfg.Brokers == nil {
		cfg.Brokers = []string{"tcp://a:1", "tcp://b:1"}
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(&w.cfg, w.ready, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel))
	m.jitter = func(time.Duration) time.Duration { return 0 }
	return m
}

// take returns what the machine asks, described, and empties its queue.
func (m *machine) take() []string {
	var out []string
	for a, ok := m.next(); ok; a, ok = m.next() {
		out = append(out, describe(a))
	}
	return out
}

// describe writes an action as "connect 1", "start J1", "send HEARTBEAT",
// "job REPLY J1 complete ok", "job PARTIAL J1 chunk".
func describe(a action) string {
	switch a.kind {
	case actConnect:
		return "connect " + string(rune('0'+a.endpoint))
	case actStart:
		return "start " + a.job.ID
	case actSend, actSendJob:
		parts := []string{"send", a.msg.Cmd.String()}
		if a.kind == actSendJob {
			parts[0] = "job"
		}
		if a.msg.Service != "" {
			parts = append(parts, a.msg.Service)
		}
		if len(a.msg.Address) > 0 {
			parts = append(parts, string(a.msg.Address))
		}
		body := a.msg.Body
		if a.msg.Cmd != protocol.CmdReady && len(body) > 0 && protocol.IsMeta(body[0]) {
			meta, _ := protocol.DecodeMeta(body[0])
			parts = append(parts, string(meta.Status))
			body = body[1:]
		} else if a.msg.Cmd == protocol.CmdReady {
			body = nil
		}
		for _, f := range body {
			parts = append(parts, string(f))
		}
		return strings.Join(parts, " ")
	}
	return a.kind.String()
}

func frames(m protocol.Message) [][]byte {
	m.Form = wireForm
	return protocol.EncodeWorker(m)
}

var (
	heartbeat  = frames(protocol.Message{Cmd: protocol.CmdHeartbeat})
	disconnect = frames(protocol.Message{Cmd: protocol.CmdDisconnect})
)

// request is a zmws REQUEST for job.
func request(job string) [][]byte {
	return frames(protocol.Message{Cmd: protocol.CmdRequest, Address: []byte(job),
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Job: job})}})
}

// stockRequest is a REQUEST from a broker that sends no meta frame.
func stockRequest(job string) [][]byte {
	return frames(protocol.Message{Cmd: protocol.CmdRequest, Address: []byte(job), Body: [][]byte{[]byte("in")}})
}

// step is one input at a chosen instant and what the machine must ask.
type step struct {
	at   time.Duration
	do   func(m *machine, now time.Time)
	want []string
	next time.Duration // Next() after the step, from t0; -1: the zero time
}

func tickM(m *machine, now time.Time) { m.Tick(now) }

func fromBroker(f [][]byte) func(*machine, time.Time) {
	return func(m *machine, now time.Time) { m.FromBroker(now, f) }
}

func connectedAs(id string) func(*machine, time.Time) {
	return func(m *machine, now time.Time) { m.Connected(now, id) }
}

func returns(res string, err error) func(*machine, time.Time) {
	return func(m *machine, now time.Time) { m.JobDone(now, []byte(res), err, false) }
}

func stopM(m *machine, now time.Time) { m.Stop(now) }

func play(t *testing.T, m *machine, steps []step) {
	t.Helper()
	for i, st := range steps {
		now := at(st.at)
		st.do(m, now)
		if got := m.take(); !reflect.DeepEqual(got, st.want) {
			t.Fatalf("step %d at %v: got %q, want %q", i, st.at, got, st.want)
		}
		var want time.Time
		if st.next >= 0 {
			want = at(st.next)
		}
		if got := m.Next(); !got.Equal(want) {
			t.Fatalf("step %d at %v: Next() = %v, want %v", i, st.at, got.Sub(t0), st.next)
		}
	}
}

const (
	ms  = time.Millisecond
	sec = time.Second
)

var ready = "send READY ECHO"

// A slot connects at once, says READY, heartbeats every interval whatever
// it hears, and counts the broker's silence from its last message.
func TestMachine_ReadyAndHeartbeats(t *testing.T) {
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{999 * ms, tickM, nil, 1 * sec},
		{1 * sec, tickM, []string{"send HEARTBEAT"}, 2 * sec},
		{1500 * ms, fromBroker(heartbeat), nil, 2 * sec},
		{2 * sec, tickM, []string{"send HEARTBEAT"}, 3 * sec},
		{3 * sec, tickM, []string{"send HEARTBEAT"}, 4 * sec},
		// Silence is counted from the heartbeat at 1.5s: expiry at 4.5s.
		{4 * sec, tickM, []string{"send HEARTBEAT"}, 4500 * ms},
	})
	if !m.Heard() {
		t.Error("Heard() = false after a heartbeat")
	}
}

// A broker silent for Heartbeat*Liveness is taken for gone: the slot closes
// the connection and, after a backoff, connects to the next endpoint,
// wrapping around, and says READY again. The backoff doubles for every
// connection in a row that heard no broker and resets when one is heard.
func TestMachine_ExpiryReconnectsWithBackoff(t *testing.T) {
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 2, ReconnectMin: 100 * ms, ReconnectMax: 300 * ms})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{500 * ms, fromBroker(heartbeat), nil, 1 * sec},
		{1 * sec, tickM, []string{"send HEARTBEAT"}, 2 * sec},
		{2 * sec, tickM, []string{"send HEARTBEAT"}, 2500 * ms},
		// Silent since 0.5s: gone at 2.5s. It was heard: the minimum backoff.
		{2500 * ms, tickM, []string{"close"}, 2600 * ms},
		{2599 * ms, tickM, nil, 2600 * ms},
		{2600 * ms, tickM, []string{"connect 1"}, -1},
		{2600 * ms, connectedAs("w2"), []string{ready}, 3600 * ms},
		{3600 * ms, tickM, []string{"send HEARTBEAT"}, 4600 * ms},
		// Never heard on this connection: one failure, 100ms.
		{4600 * ms, tickM, []string{"close"}, 4700 * ms},
		{4700 * ms, tickM, []string{"connect 0"}, -1},
		{4700 * ms, connectedAs("w3"), []string{ready}, 5700 * ms},
		{5700 * ms, tickM, []string{"send HEARTBEAT"}, 6700 * ms},
		// Two failures: 200ms.
		{6700 * ms, tickM, []string{"close"}, 6900 * ms},
		{6900 * ms, tickM, []string{"connect 1"}, -1},
		{6900 * ms, connectedAs("w4"), []string{ready}, 7900 * ms},
		{7900 * ms, tickM, []string{"send HEARTBEAT"}, 8900 * ms},
		// Three: 400ms, capped at 300ms.
		{8900 * ms, tickM, []string{"close"}, 9200 * ms},
		{9200 * ms, tickM, []string{"connect 0"}, -1},
		{9200 * ms, connectedAs("w5"), []string{ready}, 10200 * ms},
		// Heard: the next loss backs off the minimum again.
		{9300 * ms, fromBroker(heartbeat), nil, 10200 * ms},
		{9400 * ms, fromBroker(disconnect), []string{"close"}, 9500 * ms},
	})
}

// A DISCONNECT asks the slot to register again with the same broker;
// a DISCONNECT that carries a refusal counts as a failed connection; a
// refused CURVE handshake moves on to the next endpoint; a socket that
// cannot be set up does too.
func TestMachine_DisconnectRefusalAndConnectFailure(t *testing.T) {
	refusal := frames(protocol.Message{Cmd: protocol.CmdDisconnect,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Code: "forbidden", Error: "no"})}})
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3, ReconnectMin: 100 * ms, ReconnectMax: time.Second})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{100 * ms, fromBroker(heartbeat), nil, 1 * sec},
		{200 * ms, fromBroker(disconnect), []string{"close"}, 300 * ms},
		{300 * ms, tickM, []string{"connect 0"}, -1},
		{300 * ms, connectedAs("w2"), []string{ready}, 1300 * ms},
		{400 * ms, fromBroker(refusal), []string{"close"}, 500 * ms},
		{500 * ms, tickM, []string{"connect 0"}, -1},
		{500 * ms, connectedAs("w3"), []string{ready}, 1500 * ms},
		{600 * ms, func(m *machine, now time.Time) { m.Refused(now, errors.New("handshake")) }, []string{"close"}, 800 * ms},
		{800 * ms, tickM, []string{"connect 1"}, -1},
		{800 * ms, func(m *machine, now time.Time) { m.ConnectFailed(now, errors.New("bad endpoint")) }, nil, 1200 * ms},
		{1200 * ms, tickM, []string{"connect 0"}, -1},
	})
}

// With Prefetch, jobs sent ahead wait and run in the order they came, each
// as soon as the FINAL of the one before it is sent; one beyond the
// prefetch is ignored. Partial output becomes PARTIALs before the FINAL.
func TestMachine_Prefetch(t *testing.T) {
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3, Prefetch: 2})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{10 * ms, fromBroker(request("J1")), []string{"start J1"}, 1 * sec},
		{10 * ms, fromBroker(request("J2")), nil, 1 * sec},
		{10 * ms, fromBroker(request("J3")), nil, 1 * sec},
		{10 * ms, fromBroker(request("J4")), nil, 1 * sec}, // beyond the prefetch
		{20 * ms, func(m *machine, _ time.Time) { m.Output([]byte("chunk")) }, []string{"job PARTIAL J1 chunk"}, 1 * sec},
		{30 * ms, returns("r1", nil), []string{"job REPLY J1 complete r1", "start J2"}, 1 * sec},
		{40 * ms, returns("", &ExitError{Code: 3}), []string{"job REPLY J2 failed", "start J3"}, 1 * sec},
		{50 * ms, fromBroker(request("J5")), nil, 1 * sec},
		{60 * ms, returns("r3", nil), []string{"job REPLY J3 complete r3", "start J5"}, 1 * sec},
		{70 * ms, returns("r5", nil), []string{"job REPLY J5 complete r5"}, 1 * sec},
		{1 * sec, tickM, []string{"send HEARTBEAT"}, 2 * sec},
	})
}

// Jobs waiting at a slot whose connection is lost go with it (the broker
// queues them again); the running one is cancelled, its result dropped,
// and the slot does not reconnect until its handler has returned.
func TestMachine_LossDropsWaitingAndWaitsForHandler(t *testing.T) {
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3, Prefetch: 1, ReconnectMin: 100 * ms})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{10 * ms, fromBroker(request("J1")), []string{"start J1"}, 1 * sec},
		{10 * ms, fromBroker(request("J2")), nil, 1 * sec},
		{1 * sec, tickM, []string{"send HEARTBEAT"}, 2 * sec},
		{2 * sec, tickM, []string{"send HEARTBEAT"}, 3 * sec},
		// Silent since 10ms: gone at 3.01s.
		{3010 * ms, tickM, []string{"close", "cancel"}, -1},
		{3500 * ms, tickM, nil, -1},
		{3600 * ms, func(m *machine, _ time.Time) { m.Output([]byte("late")) }, nil, -1},
		{3600 * ms, returns("", context.Canceled), nil, 3110 * ms},
		{3600 * ms, tickM, []string{"connect 1"}, -1},
		{3600 * ms, connectedAs("w2"), []string{ready}, 4600 * ms},
		{4000 * ms, tickM, nil, 4600 * ms}, // J2 is not started
	})
}

// A stopping slot gives back the jobs it has not started at once, last
// first, and any REQUEST that comes while it stops (a stock broker's
// silently: it requeues them at DISCONNECT); the running one finishes and
// its FINAL is sent; then the slot finishes (DISCONNECT).
func TestMachine_GivesBackAtStop(t *testing.T) {
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3, Prefetch: 2, Grace: 10 * sec})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{10 * ms, fromBroker(request("J1")), []string{"start J1"}, 1 * sec},
		{10 * ms, fromBroker(request("J2")), nil, 1 * sec},
		{10 * ms, fromBroker(request("J3")), nil, 1 * sec},
		{500 * ms, stopM, []string{"job REPLY J3 returned", "job REPLY J2 returned"}, 1 * sec},
		{600 * ms, fromBroker(request("J4")), []string{"job REPLY J4 returned"}, 1 * sec},
		{600 * ms, fromBroker(stockRequest("J5")), nil, 1 * sec},
		{1 * sec, tickM, []string{"send HEARTBEAT"}, 2 * sec},
		{1500 * ms, returns("r1", nil), []string{"job REPLY J1 complete r1", "finish"}, -1},
		{2 * sec, tickM, nil, -1},
	})
}

// A free slot finishes at once when it stops.
func TestMachine_StopWhenFree(t *testing.T) {
	m := newTestMachine(t, Config{})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, DefaultHeartbeat},
		{10 * ms, stopM, []string{"finish"}, -1},
	})
}

// A running job gets the grace period; then its context is cancelled, and
// a handler that returns context.Canceled has no FINAL sent (the broker
// requeues the job); one that ignores the cancellation for cancelWait is
// abandoned. Heartbeats go on meanwhile.
func TestMachine_GraceThenCancelThenAbandon(t *testing.T) {
	for _, handlerReturns := range []bool{true, false} {
		m := newTestMachine(t, Config{Heartbeat: 4 * sec, Liveness: 10, Grace: 5 * sec})
		m.Start(t0)
		steps := []step{
			{0, tickM, []string{"connect 0"}, -1},
			{0, connectedAs("w1"), []string{ready}, 4 * sec},
			{1 * sec, fromBroker(request("J1")), []string{"start J1"}, 4 * sec},
			{2 * sec, stopM, nil, 4 * sec},
			{4 * sec, tickM, []string{"send HEARTBEAT"}, 7 * sec},
			{6999 * ms, tickM, nil, 7 * sec},
			{7 * sec, tickM, []string{"cancel"}, 8 * sec},
		}
		if handlerReturns {
			steps = append(steps, step{7500 * ms, returns("", context.Canceled), []string{"finish"}, -1})
		} else {
			steps = append(steps, step{8 * sec, tickM, []string{"finish"}, -1})
		}
		play(t, m, steps)
	}
}

// A handler that returns something else than context.Canceled after the
// grace period still has its result sent.
func TestMachine_ResultAfterGraceIsSent(t *testing.T) {
	m := newTestMachine(t, Config{Heartbeat: 4 * sec, Liveness: 10, Grace: sec})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 4 * sec},
		{0, fromBroker(request("J1")), []string{"start J1"}, 4 * sec},
		{0, stopM, nil, 1 * sec},
		{1 * sec, tickM, []string{"cancel"}, 2 * sec},
		{1500 * ms, returns("partial result", errors.New("interrupted")), []string{"job REPLY J1 failed partial result", "finish"}, -1},
	})
}

// A stock REQUEST (no meta frame) is answered without one; a malformed
// meta frame fails the job at once and the slot stays free; a malformed
// message is ignored but counts as a sign of life.
func TestMachine_StockAndMalformedRequests(t *testing.T) {
	bad := frames(protocol.Message{Cmd: protocol.CmdRequest, Address: []byte("B1"), Body: [][]byte{[]byte(protocol.MetaPrefix + "{not json")}})
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{10 * ms, fromBroker(stockRequest("S1")), []string{"start S1"}, 1 * sec},
		{20 * ms, returns("out", nil), []string{"job REPLY S1 out"}, 1 * sec},
		{30 * ms, fromBroker(bad), []string{"job REPLY B1 failed"}, 1 * sec},
		{1 * sec, tickM, []string{"send HEARTBEAT"}, 2 * sec},
		{2 * sec, tickM, []string{"send HEARTBEAT"}, 3 * sec},
		// Silent since 30ms but for junk at 2.5s: not gone at 3.03s.
		{2500 * ms, fromBroker([][]byte{[]byte("junk")}), nil, 3 * sec},
		{3 * sec, tickM, []string{"send HEARTBEAT"}, 4 * sec},
		{4 * sec, tickM, []string{"send HEARTBEAT"}, 5 * sec},
		{5 * sec, tickM, []string{"send HEARTBEAT"}, 5500 * ms},
		{5500 * ms, tickM, []string{"close"}, 5600 * ms},
	})
}

// handshaken says the connection's peer completed a ZMTP handshake.
func handshaken(m *machine, _ time.Time) { m.Handshaken() }

// In auto mode, a peer that completed the handshake and then left READY
// unanswered for Heartbeat*Liveness gets 7/MDP on the next connection (no
// meta frame), and 18/MDP with it again if that is silent too; a peer that
// never completed a handshake (a broker that is down) changes nothing; a
// broker that answers keeps its protocol. Told a protocol, the machine
// never changes it.
func TestMachine_AutoSwitchesProtocolAfterSilence(t *testing.T) {
	cfg := Config{Heartbeat: sec, Liveness: 1, ReconnectMin: 100 * ms, ReconnectMax: 100 * ms, Brokers: []string{"tcp://a:1"}}
	m := newTestMachine(t, cfg)
	speaks := func(want protocol.Dialect, delim bool) {
		t.Helper()
		if m.speak != want || m.Form().Delimiter != delim || m.Form().Version != want.Version() {
			t.Fatalf("speaks %s in %+v, want %s (delimiter %v)", m.speak, m.Form(), want, delim)
		}
	}
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{1 * sec, tickM, []string{"close"}, 1100 * ms}, // no handshake: down
		{1100 * ms, tickM, []string{"connect 0"}, -1},
		{1100 * ms, connectedAs("w2"), []string{ready}, 2100 * ms},
	})
	speaks(protocol.DialectZMWS, true)
	play(t, m, []step{
		{1200 * ms, handshaken, nil, 2100 * ms},
		{2100 * ms, tickM, []string{"close"}, 2200 * ms},
		{2200 * ms, tickM, []string{"connect 0"}, -1},
		{2200 * ms, connectedAs("w3"), []string{ready}, 3200 * ms},
	})
	speaks(protocol.DialectMDP1, true)
	play(t, m, []step{
		{2300 * ms, handshaken, nil, 3200 * ms},
		{3200 * ms, tickM, []string{"close"}, 3300 * ms},
		{3300 * ms, tickM, []string{"connect 0"}, -1},
		{3300 * ms, connectedAs("w4"), []string{ready}, 4300 * ms},
	})
	speaks(protocol.DialectZMWS, true)
	play(t, m, []step{
		{3400 * ms, handshaken, nil, 4300 * ms},
		{3500 * ms, fromBroker(heartbeat), nil, 4300 * ms},
		{4300 * ms, tickM, []string{"send HEARTBEAT"}, 4500 * ms},
		{4500 * ms, tickM, []string{"close"}, 4600 * ms}, // heard, then silent: same protocol
		{4600 * ms, tickM, []string{"connect 0"}, -1},
		{4600 * ms, connectedAs("w5"), []string{ready}, 5600 * ms},
	})
	speaks(protocol.DialectZMWS, true)

	cfg.Protocol = protocol.DialectZMWS
	m = newTestMachine(t, cfg)
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{100 * ms, handshaken, nil, 1 * sec},
		{1 * sec, tickM, []string{"close"}, 1100 * ms},
		{1100 * ms, tickM, []string{"connect 0"}, -1},
		{1100 * ms, connectedAs("w2"), []string{ready}, 2100 * ms},
	})
	speaks(protocol.DialectZMWS, false)
}

// On 7/MDP, which has no PARTIAL, a job's output goes ahead of its result
// in the one REPLY.
func TestMachine_7MDPHoldsPartialOutput(t *testing.T) {
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3, Protocol: protocol.DialectMDP1})
	m.Start(t0)
	req := frames(protocol.Message{Cmd: protocol.CmdRequest, Address: []byte("c1"), Body: [][]byte{[]byte("in")}})
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{10 * ms, fromBroker(req), []string{"start c1"}, 1 * sec},
		{20 * ms, func(m *machine, _ time.Time) { m.Output([]byte("a")); m.Output([]byte("b")) }, nil, 1 * sec},
		{30 * ms, func(m *machine, now time.Time) { m.JobDone(now, []byte("c"), nil, false) }, []string{"job REPLY c1 abc"}, 1 * sec},
	})
	if f := m.Form(); f.Version != protocol.V1 || !f.Delimiter {
		t.Errorf("form %+v, want 7/MDP with the delimiter", f)
	}
}

// In auto mode the worker sends the empty delimiter, as the specs do,
// until a message from the broker comes without one: zmwsd sends zmws
// workers none, and the worker then drops it too (a frame less each way
// per job). A plain broker always sends it, and keeps getting it. A new
// connection starts again with the delimiter.
func TestMachine_AutoDropsTheDelimiterForAZmwsBroker(t *testing.T) {
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3, Brokers: []string{"tcp://a:1"}})
	delimited := frames(protocol.Message{Cmd: protocol.CmdHeartbeat})
	delimited = append([][]byte{{}}, delimited...)
	if msg, err := protocol.DecodeWorker(delimited); err != nil || !msg.Form.Delimiter {
		t.Fatalf("test frames: %v %+v", err, msg.Form)
	}
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
	})
	if !m.Form().Delimiter {
		t.Fatal("auto, nothing heard: no delimiter")
	}
	m.FromBroker(at(100*ms), delimited)
	if !m.Form().Delimiter {
		t.Fatal("after a heartbeat with the delimiter (a plain broker): dropped it")
	}
	m.FromBroker(at(200*ms), heartbeat)
	if m.Form().Delimiter {
		t.Fatal("after a heartbeat without the delimiter (zmwsd): still sends it")
	}
	m.take()
	m.Tick(at(10 * sec)) // silent: the connection is dropped, and made anew
	m.Tick(at(20 * sec))
	m.take()
	m.Connected(at(20*sec), "w2")
	if !m.Form().Delimiter {
		t.Fatal("a new connection: no delimiter before the broker is heard")
	}
}

// A DISCONNECT saying drained (the broker waited for the slot's job to
// end) stops the slot for good: no reconnection, not even after a backoff.
func TestMachine_DrainedStopsTheSlot(t *testing.T) {
	drained := frames(protocol.Message{Cmd: protocol.CmdDisconnect,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusRefused, Code: protocol.CodeDrained, Error: "drained"})}})
	m := newTestMachine(t, Config{Heartbeat: sec, Liveness: 3, ReconnectMin: 100 * ms})
	m.Start(t0)
	play(t, m, []step{
		{0, tickM, []string{"connect 0"}, -1},
		{0, connectedAs("w1"), []string{ready}, 1 * sec},
		{10 * ms, fromBroker(request("J1")), []string{"start J1"}, 1 * sec},
		{20 * ms, returns("ok", nil), []string{"job REPLY J1 complete ok"}, 1 * sec},
		{30 * ms, fromBroker(drained), []string{"finish"}, -1},
		{10 * sec, tickM, nil, -1},
	})
}
