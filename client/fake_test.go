package client_test

import (
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
)

// waitLong bounds every wait in these tests; no test should come near it.
const waitLong = 10 * time.Second

// fakeBroker is a raw ROUTER the test goroutine scripts, one message at a time.
type fakeBroker struct {
	t    *testing.T
	sock *zmq.Socket
	ep   string
}

// received is one request the fake broker got.
type received struct {
	id   []byte // the client's socket identity
	msg  protocol.Message
	meta protocol.Meta
	in   [][]byte // body after the meta frame
}

func newFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	s, ep := zmqtest.Bind(t, zmq.ROUTER)
	return &fakeBroker{t: t, sock: s, ep: ep}
}

// recv waits for the next request and checks that a zmws client sent it:
// 18/MDP, no delimiter, meta frame first.
func (f *fakeBroker) recv() received {
	f.t.Helper()
	frames := zmqtest.Recv(f.t, f.sock, waitLong)
	m, err := protocol.DecodeClient(frames[1:])
	if err != nil {
		f.t.Fatalf("decode %s: %v", zmqtest.Join(frames), err)
	}
	if m.Form != (protocol.Form{Version: protocol.V2}) {
		f.t.Fatalf("request form %+v, want MDPC02 without delimiter", m.Form)
	}
	meta, rest, ok, err := protocol.SplitMeta(m.Body)
	if !ok || err != nil {
		f.t.Fatalf("request body %s: no meta frame (ok=%v, err=%v)", zmqtest.Join(m.Body), ok, err)
	}
	return received{id: frames[0], msg: m, meta: meta, in: rest}
}

// expectNone checks that no request arrives within d.
func (f *fakeBroker) expectNone(d time.Duration) {
	f.t.Helper()
	if frames, ok := zmqtest.TryRecv(f.sock, d); ok {
		f.t.Fatalf("unexpected request %s", zmqtest.Join(frames))
	}
}

// send sends a reply of cmd for service to the client with identity id.
func (f *fakeBroker) send(id []byte, cmd protocol.Command, service string, body ...[]byte) {
	f.t.Helper()
	out := protocol.EncodeClient(protocol.Message{Form: protocol.Form{Version: protocol.V2}, Cmd: cmd, Service: service, Body: body})
	zmqtest.Send(f.t, f.sock, append([][]byte{id}, out...)...)
}

// final answers r with a FINAL reply [meta, out...], echoing r's ref as a
// zmws broker does (unless meta has one).
func (f *fakeBroker) final(r received, meta protocol.Meta, out ...[]byte) {
	f.t.Helper()
	if meta.Ref == "" {
		meta.Ref = r.meta.Ref
	}
	f.send(r.id, protocol.CmdReply, r.msg.Service, append([][]byte{protocol.EncodeMeta(meta)}, out...)...)
}

// partial sends r a PARTIAL reply of out.
func (f *fakeBroker) partial(r received, out ...[]byte) {
	f.t.Helper()
	ref := protocol.EncodeMeta(protocol.Meta{Ref: r.meta.Ref})
	f.send(r.id, protocol.CmdPartial, r.msg.Service, append([][]byte{ref}, out...)...)
}

// stockFinal and stockPartial answer r as a stock MDP broker would, with
// no reference: a final reply [meta, out...], a partial of out alone.
func (f *fakeBroker) stockFinal(r received, meta protocol.Meta, out ...[]byte) {
	f.t.Helper()
	f.send(r.id, protocol.CmdReply, r.msg.Service, append([][]byte{protocol.EncodeMeta(meta)}, out...)...)
}

func (f *fakeBroker) stockPartial(r received, out ...[]byte) {
	f.t.Helper()
	f.send(r.id, protocol.CmdPartial, r.msg.Service, out...)
}

// newClient returns a client of the fake broker, closed at cleanup.
func newClient(t *testing.T, ep string, cfg client.Config) *client.Client {
	t.Helper()
	cfg.Broker = ep
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

// outcome is what a client call running on its own goroutine returned.
type outcome[T any] struct {
	v   T
	err error
}

// async runs f on a goroutine; its outcome arrives on the channel.
func async[T any](f func() (T, error)) <-chan outcome[T] {
	ch := make(chan outcome[T], 1)
	go func() {
		v, err := f()
		ch <- outcome[T]{v, err}
	}()
	return ch
}

// await waits for an outcome.
func await[T any](t *testing.T, ch <-chan outcome[T]) (T, error) {
	t.Helper()
	select {
	case o := <-ch:
		return o.v, o.err
	case <-time.After(waitLong):
		t.Fatalf("client call did not return within %v", waitLong)
		panic("unreachable")
	}
}
