// Package zmqfd waits for a ZeroMQ socket in the Go netpoller instead of in
// zmq_poll: a goroutine that waits parks like one reading a net.Conn, and
// holds no OS thread in a cgo call.
//
// A socket's ZMQ_FD becomes readable when libzmq has commands for the
// socket, which it processes on any call on the socket (ZMQ_EVENTS
// included), after which the fd is quiet again even though messages may be
// waiting. So readiness is ZMQ_EVENTS, read after the fd's wait has begun;
// the fd only says when to read it again.
package zmqfd

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// ErrInterrupted is Wait's error after Interrupt or when its deadline
// passes.
var ErrInterrupted = errors.New("zmqfd: wait interrupted")

// Waiter waits for one socket's events. Wait, SetDeadline and Close belong
// to the goroutine that owns the socket; Interrupt is safe from any
// goroutine while the Waiter is open.
type Waiter struct {
	sock *zmq.Socket
	f    *os.File // a non-blocking dup of the socket's ZMQ_FD
	rc   syscall.RawConn
}

// New returns a Waiter for sock (on sock's goroutine). Close it before
// closing sock.
func New(sock *zmq.Socket) (*Waiter, error) {
	fd, err := sock.GetFd()
	if err != nil {
		return nil, fmt.Errorf("zmqfd: ZMQ_FD: %w", err)
	}
	// A dup, so that closing the File leaves libzmq's fd alone. The file
	// description is shared: it is libzmq's signaler, non-blocking already.
	dup, err := dupCloexec(fd)
	if err != nil {
		return nil, fmt.Errorf("zmqfd: dup ZMQ_FD: %w", err)
	}
	if err := syscall.SetNonblock(dup, true); err != nil {
		syscall.Close(dup)
		return nil, fmt.Errorf("zmqfd: ZMQ_FD non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(dup), "zmq-fd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("zmqfd: %w", err)
	}
	w := &Waiter{sock: sock, f: f, rc: rc}
	// A File that is not in the netpoller would make Wait return at once
	// with an error; say so now. The deadline must be accepted for the
	// fd to be pollable.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("zmqfd: ZMQ_FD is not pollable: %w", err)
	}
	return w, nil
}

func dupCloexec(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// Wait blocks until the socket's ZMQ_EVENTS has one of want (zmq.POLLIN,
// zmq.POLLOUT), the deadline passes or Interrupt is called (ErrInterrupted),
// or reading the events fails. It returns the events it saw.
//
// Wait reads ZMQ_EVENTS before it parks, so it never sleeps while a
// message waits; a wake-up of the fd with nothing of want is waited out.
func (w *Waiter) Wait(want zmq.State) (zmq.State, error) {
	var ev zmq.State
	var everr error
	err := w.rc.Read(func(uintptr) bool {
		// The poll descriptor was reset before this first call: a signal
		// of the fd from now on wakes the wait, so nothing between this
		// read of the events and the park is lost.
		ev, everr = w.sock.GetEvents()
		return everr != nil || ev&want != 0
	})
	switch {
	case everr != nil:
		return ev, fmt.Errorf("zmqfd: ZMQ_EVENTS: %w", everr)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ev, ErrInterrupted
	case err != nil:
		return ev, fmt.Errorf("zmqfd: wait: %w", err)
	}
	return ev, nil
}

// SetDeadline bounds the waits from now on (zero: none). It also clears an
// Interrupt not yet seen by a Wait.
func (w *Waiter) SetDeadline(t time.Time) error {
	return w.f.SetReadDeadline(t)
}

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

// Interrupt ends the current Wait, or the next one if none is waiting,
// with ErrInterrupted, until SetDeadline is called again.
func (w *Waiter) Interrupt() {
	w.f.SetReadDeadline(longAgo)
}

// Close releases the dup of the fd (owner only, before the socket closes).
func (w *Waiter) Close() error {
	return w.f.Close()
}
