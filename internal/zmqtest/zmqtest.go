// Package zmqtest gives tests ZeroMQ sockets on random loopback endpoints
// that are closed (linger 0) when the test ends.
package zmqtest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// Bind returns a socket of type typ bound to tcp://127.0.0.1:* and the
// endpoint it got. The socket is closed with linger 0 at cleanup.
func Bind(t testing.TB, typ zmq.Type) (*zmq.Socket, string) {
	t.Helper()
	s := Socket(t, typ)
	if err := s.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatalf("bind: %v", err)
	}
	ep, err := s.GetLastEndpoint()
	if err != nil {
		t.Fatalf("last endpoint: %v", err)
	}
	return s, ep
}

// Connect returns a socket of type typ connected to endpoint, closed at cleanup.
func Connect(t testing.TB, typ zmq.Type, endpoint string) *zmq.Socket {
	t.Helper()
	s := Socket(t, typ)
	if err := s.Connect(endpoint); err != nil {
		t.Fatalf("connect %s: %v", endpoint, err)
	}
	return s
}

// Socket returns a new socket of type typ with linger 0, closed at cleanup.
func Socket(t testing.TB, typ zmq.Type) *zmq.Socket {
	t.Helper()
	s, err := zmq.NewSocket(typ)
	if err != nil {
		t.Fatalf("new socket: %v", err)
	}
	if err := s.SetLinger(0); err != nil {
		t.Fatalf("linger: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// FreeEndpoint returns a tcp://127.0.0.1:PORT endpoint that was free a moment
// ago: for tests that must bind the same endpoint twice (a broker restart).
func FreeEndpoint(t testing.TB) string {
	t.Helper()
	s, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatalf("new socket: %v", err)
	}
	defer s.Close()
	s.SetLinger(0)
	if err := s.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatalf("bind: %v", err)
	}
	ep, _ := s.GetLastEndpoint()
	if err := s.Unbind(ep); err != nil {
		t.Fatalf("unbind: %v", err)
	}
	return ep
}

// Recv receives one multipart message from s within timeout, or fails the test.
func Recv(t testing.TB, s *zmq.Socket, timeout time.Duration) [][]byte {
	t.Helper()
	msg, ok := TryRecv(s, timeout)
	if !ok {
		t.Fatalf("no message within %v", timeout)
	}
	return msg
}

// TryRecv receives one multipart message within timeout; ok is false if none came.
func TryRecv(s *zmq.Socket, timeout time.Duration) ([][]byte, bool) {
	p := zmq.NewPoller()
	p.Add(s, zmq.POLLIN)
	polled, err := p.Poll(timeout)
	if err != nil || len(polled) == 0 {
		return nil, false
	}
	msg, err := s.RecvMessageBytes(0)
	if err != nil {
		return nil, false
	}
	return msg, true
}

// Send sends frames as one multipart message or fails the test.
func Send(t testing.TB, s *zmq.Socket, frames ...[]byte) {
	t.Helper()
	parts := make([]interface{}, len(frames))
	for i, f := range frames {
		parts[i] = f
	}
	if _, err := s.SendMessage(parts...); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// Strings turns frames into strings for readable comparisons.
func Strings(frames [][]byte) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = string(f)
	}
	return out
}

// Join renders frames on one line for failure messages.
func Join(frames [][]byte) string { return strings.Join(Strings(frames), " | ") }

// Go runs run(ctx) on its own goroutine until the test ends or stop is
// called: then ctx is cancelled and run must return within 10 s, with a
// nil error. stop waits for it, and is safe to call again (cleanup calls
// it too). It is how tests run servers and workers, and stop them in the
// middle of a test (a restart).
func Go(t testing.TB, name string, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s did not stop", name)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Eventually polls cond until it returns true, and fails the test (naming
// what it waited for) when timeout passes first. It is the one way tests
// wait for a condition that no channel announces: the first poll is
// immediate, then the interval grows from 1 ms to 50 ms, so a quick
// condition is seen at once and a slow one costs little. A cond that
// blocks (a receive with a timeout) spends the interval itself: Eventually
// sleeps only what is left of it, so a cond that waits 50 ms or more is
// called again at once and reads a message as soon as it comes. cond runs
// on the test's goroutine; Eventually must be called from it too (it calls
// t.Fatalf). It works for tests and benchmarks alike.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := time.Millisecond
	for {
		polled := time.Now()
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		if rest := interval - time.Since(polled); rest > 0 {
			time.Sleep(rest) // the poll interval, not synchronisation
		}
		interval = min(2*interval, 50*time.Millisecond)
	}
}
