package client

import (
	"sync"

	"github.com/zmws/zmws/protocol"
)

// call is one request in flight: the loop delivers its replies, the
// requesting goroutine takes them.
type call struct {
	ref     string
	service string
	seq     uint64        // order of start, for brokers that echo no reference
	form    protocol.Form // how the request was sent: replies come in its version
	frames  [][]byte      // the request, as sent (and sent again)
	index   int           // SubmitMany's position of the request
	notify  chan struct{}

	mu      sync.Mutex
	replies []reply
	err     error // the connection failed: no more replies
	sent    bool  // the request has been handed to the socket
}

// reply is one reply to a call, decoded by the loop.
type reply struct {
	cmd     protocol.Command
	service string
	meta    protocol.Meta
	hasMeta bool
	metaErr error    // the meta frame did not decode
	rest    [][]byte // the frames after the meta frame (all, without one)
	byRef   bool     // matched by its reference, not by service
}

// deliver queues r for the caller and signals it.
func (cl *call) deliver(r reply) {
	cl.mu.Lock()
	cl.replies = append(cl.replies, r)
	cl.mu.Unlock()
	cl.signal()
}

// fail ends cl with err, unless it has failed already; replies already
// delivered are still taken first.
func (cl *call) fail(err error) {
	cl.mu.Lock()
	if cl.err == nil {
		cl.err = err
	}
	cl.mu.Unlock()
	cl.signal()
}

func (cl *call) signal() {
	select {
	case cl.notify <- struct{}{}:
	default:
	}
}

// take returns the next reply when there is one (ok), or the error that
// ended the call.
func (cl *call) take() (r reply, ok bool, err error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.replies) > 0 {
		r = cl.replies[0]
		cl.replies[0] = reply{}
		cl.replies = cl.replies[1:]
		return r, true, nil
	}
	return r, false, cl.err
}

// pending reports whether a reply waits to be taken.
func (cl *call) pending() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.replies) > 0
}

func (cl *call) markSent() {
	cl.mu.Lock()
	cl.sent = true
	cl.mu.Unlock()
}

func (cl *call) wasSent() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.sent
}
