package worker

import (
	"sync"

	zmq "github.com/pebbe/zmq4"
)

// waker is a slot's inproc PAIR: the way to wake a slot blocked in zmq_poll
// from another goroutine (the one that sees ctx end). Job output does not
// use it: that goes over Go channels to a slot waiting on them.
type waker struct {
	rx *zmq.Socket // polled and drained by the slot

	mu     sync.Mutex
	tx     *zmq.Socket
	closed bool
}

// newWaker binds a PAIR at a fresh inproc endpoint and connects a second one
// to it.
func newWaker(endpoint string) (*waker, error) {
	rx, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		return nil, err
	}
	tx, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		rx.Close()
		return nil, err
	}
	for _, s := range []*zmq.Socket{rx, tx} {
		s.SetLinger(0)
	}
	if err = rx.Bind(endpoint); err == nil {
		err = tx.Connect(endpoint)
	}
	if err != nil {
		rx.Close()
		tx.Close()
		return nil, err
	}
	return &waker{rx: rx, tx: tx}, nil
}

// wake nudges the slot without waiting: one pending wake is as good as many.
func (k *waker) wake() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.tx.SendBytes([]byte{'w'}, zmq.DONTWAIT)
	}
}

// drain reads the pending wake-ups (slot goroutine only).
func (k *waker) drain() {
	for range maxDrain {
		if _, err := k.rx.RecvBytes(zmq.DONTWAIT); err != nil {
			return
		}
	}
}

// close closes both ends; later wakes do nothing.
func (k *waker) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.closed = true
		k.tx.Close()
		k.rx.Close()
	}
}
