package server_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
)

// TestServer_OversizeMessages: a message past MaxFrames or MaxBytes is not
// taken: a client's request is refused bad_request, a worker that sends one
// is told DISCONNECT and its job goes to another worker.
func TestServer_OversizeMessages(t *testing.T) {
	srv := start(t, server.Config{MaxFrames: 8, MaxBytes: 1 << 20})
	w1 := v2Worker(t, srv.WorkerEndpoint(), "S")
	waitService(t, srv.ClientEndpoint(), "S")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())

	many := [][]byte{b("MDPC02"), []byte{0x01}, b("SYNC-S")}
	for range 10 {
		many = append(many, b("x"))
	}
	half := bytes.Repeat([]byte("x"), 600<<10)
	for _, msg := range [][][]byte{many, {b("MDPC02"), []byte{0x01}, b("SYNC-S"), half, half}} {
		zmqtest.Send(t, c, msg...)
		r := zmqtest.Recv(t, c, wait)
		expect(t, r, "MDPC02", "\x03", "SYNC-S", "FAIL", "bad_request", "*")
		if !strings.HasPrefix(string(r[5]), "message too large") {
			t.Fatalf("refusal %q", r[5])
		}
	}

	// A job w1 answers with too many frames goes to w2.
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SYNC-S"), b("ping"))
	req := recvSkipHeartbeats(t, w1, 0x05)
	expect(t, req, "MDPW02", "\x02", "*", "", "ping")
	final := [][]byte{b("MDPW02"), []byte{0x04}, req[2], b("")}
	for range 10 {
		final = append(final, b("pong"))
	}
	zmqtest.Send(t, w1, final...)
	expect(t, recvSkipHeartbeats(t, w1, 0x05), "MDPW02", "\x06")
	w2 := v2Worker(t, srv.WorkerEndpoint(), "S")
	req = recvSkipHeartbeats(t, w2, 0x05)
	expect(t, req, "MDPW02", "\x02", "*", "", "ping")
	zmqtest.Send(t, w2, b("MDPW02"), []byte{0x04}, req[2], b(""), b("pong"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", "SYNC-S", "pong")
}

// TestServer_EventsSubscriberFrameBound: a frame bigger than a subscription
// can be, from a peer of the events socket, closes its connection (the
// socket has ZMQ_MAXMSGSIZE too), before the broker holds it.
func TestServer_EventsSubscriberFrameBound(t *testing.T) {
	srv := start(t, server.Config{EventsBind: "tcp://127.0.0.1:*"})
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.EventsEndpoint(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// ZMTP 3.0: a NULL greeting, READY as a SUB, then a frame announced
	// as 1 GiB.
	g := make([]byte, 64)
	g[0], g[9], g[10] = 0xff, 0x7f, 3
	copy(g[12:], "NULL")
	ready := append([]byte{0x04, 0, 5}, "READY"...)
	ready = append(ready, 11)
	ready = append(ready, "Socket-Type"...)
	ready = binary.BigEndian.AppendUint32(ready, 3)
	ready = append(ready, "SUB"...)
	ready[1] = byte(len(ready) - 2)
	frame := binary.BigEndian.AppendUint64([]byte{0x02}, 1<<30)
	for _, b := range [][]byte{g, ready, frame, {1}} {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// The broker's greeting and READY, then the end of the connection.
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the connection was not closed: %v", err)
	}
}
