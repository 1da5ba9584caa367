// Package mdptest runs a Majordomo broker written from the specs alone,
// 7/MDP (rfc.zeromq.org/spec:7) or 18/MDP (spec:18), with 8/MMI's
// mmi.service, for tests that zmws's worker and client libraries work
// with a broker that knows nothing of zmws: no meta frame, no job IDs,
// no SYNC- names, no second version.
//
// It is deliberately independent of package protocol: its frames are
// spelled out here from the specs, so a mistake in zmws's codec shows.
// Like the Guide's mdbroker it has one ROUTER for clients and workers, it
// takes the first frame after the routing id for the empty delimiter
// without looking, and it logs and drops a message whose header is not its
// version's: a zmws worker speaking 18/MDP to the 7/MDP broker hears
// nothing back, as from the Guide's.
package mdptest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/zmqtest"
)

// Version says which spec a Broker follows.
type Version int

// Versions.
const (
	MDP1 Version = 1 // 7/MDP: MDPC01, MDPW01
	MDP2 Version = 2 // 18/MDP: MDPC02, MDPW02, PARTIAL and FINAL
)

// Command bytes, from the specs.
const (
	w1Ready, w1Request, w1Reply, w1Heartbeat, w1Disconnect            = 0x01, 0x02, 0x03, 0x04, 0x05
	w2Ready, w2Request, w2Partial, w2Final, w2Heartbeat, w2Disconnect = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
	c2Request, c2Partial, c2Final                                     = 0x01, 0x02, 0x03
)

// Broker is a running spec broker. Its state belongs to its loop
// goroutine; the counters are safe to read from tests.
type Broker struct {
	// Endpoint is where clients and workers connect.
	Endpoint string

	v         Version
	t         testing.TB
	heartbeat time.Duration
	liveness  int

	mu      sync.Mutex
	ready   int // READYs accepted
	dropped int // messages with a header not of this version, dropped
	served  int // replies sent to clients

	// Loop only.
	workers map[string]*worker
	idle    []*worker
	queue   map[string][][][]byte // per service: requests [client, body...]
}

type worker struct {
	id      string
	service string
	expires time.Time
	busy    bool
}

// Start runs a broker of version v on a random loopback port until the
// test ends. It heartbeats every worker every heartbeat and forgets one
// silent for 3 heartbeats, as the specs ask.
func Start(t testing.TB, v Version, heartbeat time.Duration) *Broker {
	t.Helper()
	sock, ep := zmqtest.Bind(t, zmq.ROUTER)
	b := &Broker{Endpoint: ep, v: v, t: t, heartbeat: heartbeat, liveness: 3,
		workers: map[string]*worker{}, queue: map[string][][][]byte{}}
	zmqtest.Go(t, fmt.Sprintf("%d/MDP broker", map[Version]int{MDP1: 7, MDP2: 18}[v]), func(ctx context.Context) error {
		return b.run(ctx, sock)
	})
	return b
}

// Ready returns how many READYs the broker accepted.
func (b *Broker) Ready() int { b.mu.Lock(); defer b.mu.Unlock(); return b.ready }

// Dropped returns how many messages it dropped for a foreign header.
func (b *Broker) Dropped() int { b.mu.Lock(); defer b.mu.Unlock(); return b.dropped }

// Served returns how many replies it sent to clients.
func (b *Broker) Served() int { b.mu.Lock(); defer b.mu.Unlock(); return b.served }

func (b *Broker) count(n *int) { b.mu.Lock(); *n++; b.mu.Unlock() }

func (b *Broker) clientHeader() string {
	return map[Version]string{MDP1: "MDPC01", MDP2: "MDPC02"}[b.v]
}
func (b *Broker) workerHeader() string {
	return map[Version]string{MDP1: "MDPW01", MDP2: "MDPW02"}[b.v]
}

func (b *Broker) run(ctx context.Context, sock *zmq.Socket) error {
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	nextBeat := time.Now().Add(b.heartbeat)
	for ctx.Err() == nil {
		polled, err := poller.Poll(max(0, min(time.Until(nextBeat), 50*time.Millisecond))) // negative: for ever
		if err != nil {
			if zmq.AsErrno(err) == zmq.ETERM {
				return nil
			}
			continue
		}
		if len(polled) > 0 {
			for range 100 { // bounded drain
				msg, err := sock.RecvMessageBytes(zmq.DONTWAIT)
				if err != nil {
					break
				}
				b.handle(sock, msg)
			}
		}
		if now := time.Now(); !now.Before(nextBeat) {
			b.beat(sock, now)
			nextBeat = now.Add(b.heartbeat)
		}
	}
	return nil
}

// handle takes one message: [sender, empty, header, ...].
func (b *Broker) handle(sock *zmq.Socket, msg [][]byte) {
	if len(msg) < 3 {
		b.t.Logf("mdptest: short message dropped: %q", msg)
		return
	}
	sender, header, rest := string(msg[0]), string(msg[2]), msg[3:] // msg[1]: the empty frame, unchecked
	switch header {
	case b.clientHeader():
		b.fromClient(sock, sender, rest)
	case b.workerHeader():
		b.fromWorker(sock, sender, rest)
	default:
		b.t.Logf("mdptest: invalid message (header %q) dropped", header)
		b.count(&b.dropped)
	}
}

func (b *Broker) fromClient(sock *zmq.Socket, client string, f [][]byte) {
	if b.v == MDP2 {
		if len(f) < 1 || !bytes.Equal(f[0], []byte{c2Request}) {
			b.t.Logf("mdptest: client command %q dropped", f)
			return
		}
		f = f[1:]
	}
	if len(f) < 1 {
		b.t.Logf("mdptest: client request without service dropped")
		return
	}
	service, body := string(f[0]), f[1:]
	if service == "mmi.service" {
		code := "501"
		if len(body) > 0 {
			code = "404"
			for _, w := range b.workers {
				if w.service == string(body[0]) {
					code = "200"
				}
			}
		}
		b.toClient(sock, client, c2Final, service, [][]byte{[]byte(code)})
		return
	}
	b.queue[service] = append(b.queue[service], append([][]byte{[]byte(client)}, body...))
	b.dispatch(sock, service)
}

func (b *Broker) toClient(sock *zmq.Socket, client string, cmd byte, service string, body [][]byte) {
	out := [][]byte{[]byte(client), {}, []byte(b.clientHeader())}
	if b.v == MDP2 {
		out = append(out, []byte{cmd})
	}
	out = append(out, []byte(service))
	b.send(sock, append(out, body...))
	if cmd == c2Final {
		b.count(&b.served)
	}
}

func (b *Broker) toWorker(sock *zmq.Socket, id string, cmd byte, rest ...[]byte) {
	b.send(sock, append([][]byte{[]byte(id), {}, []byte(b.workerHeader()), {cmd}}, rest...))
}

func (b *Broker) send(sock *zmq.Socket, frames [][]byte) {
	parts := make([]any, len(frames))
	for i, f := range frames {
		parts[i] = f
	}
	if _, err := sock.SendMessageDontwait(parts...); err != nil {
		b.t.Logf("mdptest: send: %v", err)
	}
}

func (b *Broker) fromWorker(sock *zmq.Socket, id string, f [][]byte) {
	if len(f) < 1 || len(f[0]) != 1 {
		b.t.Logf("mdptest: worker command %q dropped", f)
		return
	}
	cmd, f := f[0][0], f[1:]
	ready, reply, partial, heartbeat, disconnect := byte(w1Ready), byte(w1Reply), byte(0xff), byte(w1Heartbeat), byte(w1Disconnect)
	if b.v == MDP2 {
		ready, reply, partial, heartbeat, disconnect = w2Ready, w2Final, w2Partial, w2Heartbeat, w2Disconnect
	}
	w := b.workers[id]
	if w != nil {
		w.expires = time.Now().Add(time.Duration(b.liveness) * b.heartbeat)
	}
	switch {
	case cmd == ready && w == nil && len(f) >= 1:
		// Frames after the service name are not in the spec; like the
		// Guide's mdbroker, ignore them.
		w = &worker{id: id, service: string(f[0]), expires: time.Now().Add(time.Duration(b.liveness) * b.heartbeat)}
		b.workers[id] = w
		b.idle = append(b.idle, w)
		b.count(&b.ready)
		b.dispatch(sock, w.service)
	case w == nil:
		// Not READY from an unknown worker, or READY twice: a protocol
		// error, answered with DISCONNECT.
		b.t.Logf("mdptest: worker %x: command 0x%02x out of turn, disconnecting", id, cmd)
		b.toWorker(sock, id, disconnect)
	case cmd == ready:
		b.t.Logf("mdptest: worker %x: READY twice, disconnecting", id)
		b.toWorker(sock, id, disconnect)
		b.forget(id)
	case (cmd == reply || cmd == partial) && w.busy && len(f) >= 2 && len(f[1]) == 0:
		client, body := string(f[0]), f[2:]
		if cmd == partial {
			b.toClient(sock, client, c2Partial, w.service, body)
			return
		}
		b.toClient(sock, client, c2Final, w.service, body)
		w.busy = false
		b.idle = append(b.idle, w)
		b.dispatch(sock, w.service)
	case cmd == heartbeat:
	case cmd == disconnect:
		b.forget(id)
	default:
		b.t.Logf("mdptest: worker %x: invalid command 0x%02x, disconnecting", id, cmd)
		b.toWorker(sock, id, disconnect)
		b.forget(id)
	}
}

// dispatch sends service's queued requests to its idle workers.
func (b *Broker) dispatch(sock *zmq.Socket, service string) {
	for len(b.queue[service]) > 0 {
		i := -1
		for j, w := range b.idle {
			if w.service == service {
				i = j
				break
			}
		}
		if i < 0 {
			return
		}
		w := b.idle[i]
		b.idle = append(b.idle[:i], b.idle[i+1:]...)
		req := b.queue[service][0]
		b.queue[service] = b.queue[service][1:]
		w.busy = true
		b.toWorker(sock, w.id, w2Request, append([][]byte{req[0], {}}, req[1:]...)...) // REQUEST is 0x02 in both
	}
}

func (b *Broker) forget(id string) {
	delete(b.workers, id)
	for i, w := range b.idle {
		if w.id == id {
			b.idle = append(b.idle[:i], b.idle[i+1:]...)
			break
		}
	}
}

// beat heartbeats every worker and forgets the silent ones (a request a
// lost worker held is lost with it, as in the Guide's broker).
func (b *Broker) beat(sock *zmq.Socket, now time.Time) {
	hb := byte(w1Heartbeat)
	if b.v == MDP2 {
		hb = w2Heartbeat
	}
	for id, w := range b.workers {
		if now.After(w.expires) {
			b.t.Logf("mdptest: worker %x expired", id)
			b.forget(id)
			continue
		}
		b.toWorker(sock, id, hb)
	}
}
