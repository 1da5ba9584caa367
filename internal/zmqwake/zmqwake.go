// Package zmqwake wakes a goroutine blocked in zmq_poll from another
// goroutine: a pair of inproc PAIR sockets, the reading end polled with the
// goroutine's other sockets. The worker's slots use it; the work itself
// travels over Go channels and queues. (The client's loop waits in the Go
// netpoller instead, and is woken through it: internal/zmqfd.)
package zmqwake

import (
	"crypto/rand"
	"fmt"
	"sync"

	zmq "github.com/pebbe/zmq4"
)

// maxDrain bounds the wake-ups read per Drain: one pending is as good as
// many, and the rest are read next time.
const maxDrain = 64

// Waker is an inproc PAIR pair. Wake is safe for concurrent use; Socket and
// Drain belong to the goroutine that polls.
type Waker struct {
	rx *zmq.Socket // polled and drained by the owner

	mu     sync.Mutex
	tx     *zmq.Socket
	closed bool
}

// New binds a PAIR at a fresh inproc endpoint named after prefix and
// connects a second one to it.
func New(prefix string) (*Waker, error) {
	endpoint := "inproc://" + prefix + "-wake-" + rand.Text()
	rx, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		return nil, fmt.Errorf("wake socket: %w", err)
	}
	tx, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		rx.Close()
		return nil, fmt.Errorf("wake socket: %w", err)
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
		return nil, fmt.Errorf("wake socket %s: %w", endpoint, err)
	}
	return &Waker{rx: rx, tx: tx}, nil
}

// Socket is the end to poll for zmq.POLLIN.
func (k *Waker) Socket() *zmq.Socket { return k.rx }

// Wake nudges the owner without waiting: one pending wake is as good as
// many (a full pipe drops the nudge, and one is already pending).
func (k *Waker) Wake() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.tx.SendBytes([]byte{'w'}, zmq.DONTWAIT)
	}
}

// Drain reads the pending wake-ups (owner only).
func (k *Waker) Drain() {
	for range maxDrain {
		if _, err := k.rx.RecvBytes(zmq.DONTWAIT); err != nil {
			return
		}
	}
}

// Close closes both ends; later wakes do nothing. Call it from the owner,
// once it no longer polls.
func (k *Waker) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.closed = true
		k.tx.Close()
		k.rx.Close()
	}
}
