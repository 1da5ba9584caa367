package zmqfd_test

import (
	"errors"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/zmqfd"
)

// pair returns two connected inproc PAIR sockets.
func pair(t *testing.T) (a, b *zmq.Socket) {
	t.Helper()
	endpoint := "inproc://zmqfd-test-" + t.Name()
	a, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		t.Fatal(err)
	}
	b, err = zmq.NewSocket(zmq.PAIR)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*zmq.Socket{a, b} {
		s.SetLinger(0)
	}
	if err := a.Bind(endpoint); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestWaiter_WakesForMessages(t *testing.T) {
	rx, tx := pair(t)
	w, err := zmqfd.New(rx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sent := make(chan error, 1)
	for i := range 100 {
		// Sometimes before the wait begins, sometimes while it waits.
		go func() {
			if i%2 == 1 {
				time.Sleep(time.Millisecond) // most often lands while Wait blocks: when is what is varied
			}
			_, err := tx.SendBytes([]byte{byte(i)}, 0)
			sent <- err
		}()
		ev, err := w.Wait(zmq.POLLIN)
		if err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
		if ev&zmq.POLLIN == 0 {
			t.Fatalf("wait %d: events %v without POLLIN", i, ev)
		}
		b, err := rx.RecvBytes(zmq.DONTWAIT)
		if err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Fatalf("recv %d: %v %v", i, b, err)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	}
}

func TestWaiter_NeverSleepsOnAPendingMessage(t *testing.T) {
	rx, tx := pair(t)
	w, err := zmqfd.New(rx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Two messages: reading the first consumes the fd's signal, so only
	// ZMQ_EVENTS tells that the second waits.
	for _, m := range []string{"a", "b"} {
		if _, err := tx.Send(m, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "b"} {
		if err := w.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Wait(zmq.POLLIN); err != nil {
			t.Fatalf("wait for %q: %v", want, err)
		}
		if got, err := rx.Recv(zmq.DONTWAIT); err != nil || got != want {
			t.Fatalf("recv: %q, %v; want %q", got, err, want)
		}
	}
}

func TestWaiter_InterruptAndDeadline(t *testing.T) {
	rx, _ := pair(t)
	w, err := zmqfd.New(rx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	go func() {
		time.Sleep(10 * time.Millisecond) // most often while Wait blocks; an interrupt before it sticks too
		w.Interrupt()
	}()
	if _, err := w.Wait(zmq.POLLIN); !errors.Is(err, zmqfd.ErrInterrupted) {
		t.Fatalf("interrupted wait: %v", err)
	}
	// The interrupt sticks until the deadline is set again.
	if _, err := w.Wait(zmq.POLLIN); !errors.Is(err, zmqfd.ErrInterrupted) {
		t.Fatalf("wait after interrupt: %v", err)
	}

	start := time.Now()
	if err := w.SetDeadline(start.Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Wait(zmq.POLLIN); !errors.Is(err, zmqfd.ErrInterrupted) {
		t.Fatalf("wait past deadline: %v", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Fatalf("deadline wait returned after %v", d)
	}

	// POLLOUT is there at once on a connected PAIR.
	if err := w.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ev, err := w.Wait(zmq.POLLOUT); err != nil || ev&zmq.POLLOUT == 0 {
		t.Fatalf("wait for POLLOUT: %v, %v", ev, err)
	}
}
