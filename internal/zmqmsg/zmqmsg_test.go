package zmqmsg_test

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/zmqmsg"
	"github.com/zmws/zmws/internal/zmqtest"
)

// pair is a ROUTER and a DEALER connected over tcp loopback, the dealer's
// routing id known.
func pair(t *testing.T) (router, dealer *zmq.Socket) {
	t.Helper()
	router, ep := zmqtest.Bind(t, zmq.ROUTER)
	dealer = zmqtest.Socket(t, zmq.DEALER)
	if err := dealer.SetIdentity("d1"); err != nil {
		t.Fatal(err)
	}
	if err := dealer.Connect(ep); err != nil {
		t.Fatal(err)
	}
	return router, dealer
}

// recv waits for one message on sock (bounded), received by r.
func recv(t *testing.T, r *zmqmsg.Reader, sock *zmq.Socket, skip int, b zmqmsg.Bounds) zmqmsg.Message {
	t.Helper()
	p := zmq.NewPoller()
	p.Add(sock, zmq.POLLIN)
	if polled, err := p.Poll(5 * time.Second); err != nil || len(polled) == 0 {
		t.Fatalf("no message within 5 s (%v)", err)
	}
	m, err := r.Recv(sock, zmq.DONTWAIT, skip, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCheck_FindsTheHandle(t *testing.T) {
	for _, typ := range []zmq.Type{zmq.ROUTER, zmq.DEALER, zmq.XPUB} {
		if err := zmqmsg.Check(zmqtest.Socket(t, typ)); err != nil {
			t.Errorf("%v: %v", typ, err)
		}
	}
}

func TestRoundTrip_FramesAsSent(t *testing.T) {
	router, dealer := pair(t)
	r := zmqmsg.NewReader()
	defer r.Close()
	var w zmqmsg.Writer
	big := bytes.Repeat([]byte("x"), 200<<10) // past the scratch buffer: a second copy call
	for _, frames := range [][][]byte{
		{[]byte("MDPC02"), {1}, []byte("echo"), []byte("hello")},
		{{}, []byte("a"), {}, {}},
		{big, []byte("tail")},
		{[]byte("one")},
	} {
		if err := w.Send(dealer, 0, frames); err != nil {
			t.Fatal(err)
		}
		m := recv(t, r, router, 1, zmqmsg.Bounds{})
		if len(m.Frames) != len(frames)+1 || string(m.Frames[0]) != "d1" {
			t.Fatalf("got %d frames (%q...), want the routing id and %d", len(m.Frames), m.Frames[0], len(frames))
		}
		for i, f := range frames {
			if !bytes.Equal(m.Frames[i+1], f) {
				t.Errorf("frame %d: got %d bytes %.20q, want %d bytes %.20q", i, len(m.Frames[i+1]), m.Frames[i+1], len(f), f)
			}
		}
		if m.Over || m.Count != len(frames) {
			t.Errorf("over=%v count=%d, want false, %d", m.Over, m.Count, len(frames))
		}
		// Back through the router, addressed by the routing id.
		if err := w.SendTo(router, zmq.DONTWAIT, string(m.Frames[0]), m.Frames[1:]); err != nil {
			t.Fatal(err)
		}
		back := recv(t, r, dealer, 0, zmqmsg.Bounds{})
		if len(back.Frames) != len(frames) {
			t.Fatalf("back: %d frames, want %d", len(back.Frames), len(frames))
		}
		for i, f := range frames {
			if !bytes.Equal(back.Frames[i], f) {
				t.Errorf("back frame %d differs", i)
			}
		}
	}
}

func TestRecv_AppendDoesNotWriteIntoTheNextFrame(t *testing.T) {
	router, dealer := pair(t)
	r := zmqmsg.NewReader()
	defer r.Close()
	var w zmqmsg.Writer
	if err := w.Send(dealer, 0, [][]byte{[]byte("ab"), []byte("cd")}); err != nil {
		t.Fatal(err)
	}
	m := recv(t, r, router, 1, zmqmsg.Bounds{})
	_ = append(m.Frames[1], 'X')
	if string(m.Frames[2]) != "cd" {
		t.Fatalf("frame 2 is %q after an append to frame 1", m.Frames[2])
	}
}

func TestRecv_Bounds(t *testing.T) {
	router, dealer := pair(t)
	r := zmqmsg.NewReader()
	defer r.Close()
	var w zmqmsg.Writer
	many := make([][]byte, 10)
	for i := range many {
		many[i] = fmt.Appendf(nil, "f%d", i)
	}
	for _, c := range []struct {
		name   string
		b      zmqmsg.Bounds
		frames [][]byte
		kept   int // frames after the routing id
		over   bool
	}{
		{"frames within", zmqmsg.Bounds{Frames: 10}, many, 10, false},
		{"frames past", zmqmsg.Bounds{Frames: 4}, many, 4, true},
		{"bytes within", zmqmsg.Bounds{Bytes: 20}, many, 10, false},
		{"bytes past", zmqmsg.Bounds{Bytes: 7}, many, 3, true},
	} {
		if err := w.Send(dealer, 0, c.frames); err != nil {
			t.Fatal(err)
		}
		m := recv(t, r, router, 1, c.b)
		if got := len(m.Frames) - 1; got != c.kept || m.Over != c.over || m.Count != len(c.frames) || m.Size != 20 {
			t.Errorf("%s: kept %d over=%v count=%d size=%d, want %d %v %d 20", c.name, got, m.Over, m.Count, m.Size, c.kept, c.over, len(c.frames))
		}
		// The whole message was read: the next one starts clean.
		if err := w.Send(dealer, 0, [][]byte{[]byte("next")}); err != nil {
			t.Fatal(err)
		}
		if n := recv(t, r, router, 1, zmqmsg.Bounds{}); len(n.Frames) != 2 || string(n.Frames[1]) != "next" {
			t.Fatalf("%s: the next message is %q", c.name, n.Frames)
		}
	}
}

func TestRecv_EmptyAndClosedSockets(t *testing.T) {
	router, _ := pair(t)
	r := zmqmsg.NewReader()
	defer r.Close()
	if _, err := r.Recv(router, zmq.DONTWAIT, 1, zmqmsg.Bounds{}, 0); zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
		t.Fatalf("empty socket: %v, want EAGAIN", err)
	}
	s := zmqtest.Socket(t, zmq.DEALER)
	s.Close()
	if _, err := r.Recv(s, zmq.DONTWAIT, 0, zmqmsg.Bounds{}, 0); err != zmq.ErrorSocketClosed {
		t.Fatalf("closed socket: %v", err)
	}
	var w zmqmsg.Writer
	if err := w.Send(s, zmq.DONTWAIT, [][]byte{[]byte("x")}); err != zmq.ErrorSocketClosed {
		t.Fatalf("send on a closed socket: %v", err)
	}
}

func TestSend_UnroutableIsAnError(t *testing.T) {
	router, _ := pair(t)
	if err := router.SetRouterMandatory(1); err != nil {
		t.Fatal(err)
	}
	var w zmqmsg.Writer
	err := w.SendTo(router, zmq.DONTWAIT, "nobody", [][]byte{[]byte("x")})
	if zmq.AsErrno(err) != zmq.Errno(syscall.EHOSTUNREACH) {
		t.Fatalf("send to an unknown routing id: %v, want EHOSTUNREACH", err)
	}
}

// TestSignals_AreRetried sends and receives while the process is pelted
// with signals (SIGURG, which the Go runtime uses to preempt goroutines and
// ignores otherwise): libzmq's calls return EINTR when a signal lands in
// one of its system calls, before anything was sent or received, and
// pebbe/zmq4 retries them; so must this package, or a message is lost (a
// reply reported "interrupted system call").
func TestSignals_AreRetried(t *testing.T) {
	router, dealer := pair(t)
	r := zmqmsg.NewReader()
	defer r.Close()
	var w zmqmsg.Writer
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				syscall.Kill(syscall.Getpid(), syscall.SIGURG)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	frames := [][]byte{[]byte("MDPC02"), {1}, []byte("echo"), []byte("hello")}
	for i := range 20000 {
		if err := w.Send(dealer, 0, frames); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		m, err := r.Recv(router, 0, 1, zmqmsg.Bounds{}, 0)
		if err != nil {
			t.Fatalf("receive %d: %v", i, err)
		}
		if len(m.Frames) != 5 {
			t.Fatalf("receive %d: %d frames", i, len(m.Frames))
		}
		if err := w.SendTo(router, 0, string(m.Frames[0]), m.Frames[1:]); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if _, err := r.Recv(dealer, 0, 0, zmqmsg.Bounds{}, 0); err != nil {
			t.Fatalf("receive reply %d: %v", i, err)
		}
	}
}

// PropPeer reads the sender's IP address on TCP, and nothing on inproc.
func TestRecv_PeerAddress(t *testing.T) {
	r := zmqmsg.NewReader()
	defer r.Close()
	var w zmqmsg.Writer
	router, dealer := pair(t) // over tcp://127.0.0.1
	if err := w.Send(dealer, 0, [][]byte{[]byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if m := recvProps(t, r, router, zmqmsg.PropPeer|zmqmsg.PropUser); m.Peer != "127.0.0.1" || m.User != "" {
		t.Fatalf("over TCP: peer %q, user %q; want peer 127.0.0.1, no user", m.Peer, m.User)
	}

	in := zmqtest.Socket(t, zmq.ROUTER)
	ep := "inproc://zmqmsg-peer-" + t.Name()
	if err := in.Bind(ep); err != nil {
		t.Fatal(err)
	}
	d := zmqtest.Socket(t, zmq.DEALER)
	if err := d.Connect(ep); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(d, 0, [][]byte{[]byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if m := recvProps(t, r, in, zmqmsg.PropPeer); m.Peer != "" {
		t.Fatalf("over inproc: peer %q, want none", m.Peer)
	}
}

func recvProps(t *testing.T, r *zmqmsg.Reader, sock *zmq.Socket, props zmqmsg.Props) zmqmsg.Message {
	t.Helper()
	p := zmq.NewPoller()
	p.Add(sock, zmq.POLLIN)
	if polled, err := p.Poll(5 * time.Second); err != nil || len(polled) == 0 {
		t.Fatalf("no message within 5 s (%v)", err)
	}
	m, err := r.Recv(sock, zmq.DONTWAIT, 1, zmqmsg.Bounds{}, props)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
