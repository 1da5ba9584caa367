package worker

import (
	"encoding/binary"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// Message kinds on a slot's inproc PAIR, in the first frame.
var (
	kindPartial = []byte{'p'} // token, chunk
	kindFinal   = []byte{'f'} // token, status, frames of the FINAL body
	kindWake    = []byte{'w'} // nothing: look at ctx again
)

// outboxRetry bounds how long a blocked send holds the outbox lock, so that
// close is never stuck behind a Write waiting for room.
const outboxRetry = 100 * time.Millisecond

// outbox is the sending end of a slot's inproc PAIR: the path from handler
// goroutines (partials, results) and the shutdown hook to the goroutine that
// owns the slot's DEALER socket. The PAIR wakes that goroutine's poll at once,
// so a partial reaches the wire without polling latency, and ZeroMQ copies
// the bytes, so a Write caller may reuse its buffer. The socket is used only
// under mu, which makes it safe to share between goroutines.
type outbox struct {
	mu     sync.Mutex
	sock   *zmq.Socket
	closed bool
}

// newPair binds a PAIR at a fresh inproc endpoint and connects a second one
// to it: the slot reads rx, the outbox writes tx.
func newPair(endpoint string) (rx *zmq.Socket, ob *outbox, err error) {
	rx, err = zmq.NewSocket(zmq.PAIR)
	if err != nil {
		return nil, nil, err
	}
	tx, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		rx.Close()
		return nil, nil, err
	}
	for _, s := range []*zmq.Socket{rx, tx} {
		s.SetLinger(0)
	}
	tx.SetSndtimeo(outboxRetry)
	if err = rx.Bind(endpoint); err == nil {
		err = tx.Connect(endpoint)
	}
	if err != nil {
		rx.Close()
		tx.Close()
		return nil, nil, err
	}
	return rx, &outbox{sock: tx}, nil
}

// send sends frames as one message, waiting while the PAIR is full. It
// returns ErrJobDone once the outbox is closed.
func (o *outbox) send(frames ...[]byte) error {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrJobDone
		}
		_, err := o.sock.SendMessage(frames)
		o.mu.Unlock()
		if err == nil {
			return nil
		}
		if e := zmq.AsErrno(err); e != zmq.Errno(syscall.EAGAIN) && e != zmq.Errno(syscall.EINTR) {
			return err
		}
	}
}

// wake nudges the slot goroutine without waiting for room: one pending wake
// is as good as many.
func (o *outbox) wake() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.sock.SendBytes(kindWake[0:1:1], zmq.DONTWAIT)
	}
}

// close closes the sending socket; later sends return ErrJobDone.
func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		o.sock.Close()
	}
}

func tokenFrame(t uint64) []byte { return binary.BigEndian.AppendUint64(nil, t) }

func frameToken(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}
