package server

import (
	"fmt"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/broker"
)

// reader answers the broker's archive lookups (broker.Lookup) off the loop
// goroutine, so a slow read of the journal never holds up heartbeats or
// dispatch: the loop hands each Lookup over with ask, and takes the
// Answers when the wake socket (an inproc PAIR, polled with the others)
// becomes readable. Lookups are answered one at a time, in order.
//
// The channels hold broker.MaxLookups each, the most the broker lets wait
// at once, so neither side ever blocks on them.
type reader struct {
	a    broker.Archive
	req  chan broker.Lookup
	res  chan broker.Answer
	wake *zmq.Socket   // loop side: readable when answers wait
	ping *zmq.Socket   // reader side
	stop chan struct{} // closed at shutdown: lookups still queued are dropped
	done chan struct{} // closed when the reader goroutine has ended
}

var readerSeq atomic.Uint64

func newReader(a broker.Archive) (*reader, error) {
	r := &reader{a: a, req: make(chan broker.Lookup, broker.MaxLookups), res: make(chan broker.Answer, broker.MaxLookups),
		stop: make(chan struct{}), done: make(chan struct{})}
	ep := fmt.Sprintf("inproc://zmwsd-lookup-%d", readerSeq.Add(1))
	var err error
	if r.wake, err = zmq.NewSocket(zmq.PAIR); err != nil {
		return nil, fmt.Errorf("server: lookup socket: %w", err)
	}
	if err = r.wake.Bind(ep); err != nil {
		r.wake.Close()
		return nil, fmt.Errorf("server: lookup socket: %w", err)
	}
	if r.ping, err = zmq.NewSocket(zmq.PAIR); err != nil {
		r.wake.Close()
		return nil, fmt.Errorf("server: lookup socket: %w", err)
	}
	if err = r.ping.Connect(ep); err != nil {
		r.wake.Close()
		r.ping.Close()
		return nil, fmt.Errorf("server: lookup socket: %w", err)
	}
	r.wake.SetLinger(0)
	r.ping.SetLinger(0)
	go r.run()
	return r, nil
}

// run is the reader goroutine: it owns r.ping.
func (r *reader) run() {
	defer close(r.done)
	defer r.ping.Close()
	for {
		var l broker.Lookup
		select {
		case <-r.stop:
			return
		case l = <-r.req:
		}
		r.res <- l.Ask(r.a)
		// A full pipe drops the ping: the loop has pings to read
		// still, and takes every answer waiting when it does.
		r.ping.SendBytes([]byte{1}, zmq.DONTWAIT)
	}
}

// ask hands the broker's new Lookups to the reader (loop goroutine).
func (r *reader) ask(ls []broker.Lookup) {
	for _, l := range ls {
		r.req <- l
	}
}

// answers reads the wake socket empty and returns the answers waiting
// (loop goroutine). Each ping follows its answer, so every answer whose
// ping was read is taken.
func (r *reader) answers(out []broker.Answer) []broker.Answer {
	for {
		if _, err := r.wake.RecvBytes(zmq.DONTWAIT); err != nil {
			break
		}
	}
	for {
		select {
		case a := <-r.res:
			out = append(out, a)
		default:
			return out
		}
	}
}

// close stops the reader: it answers no more lookups, and ends after the
// one it may be reading, waited for at most timeout (an archive read that
// hangs must not hang the shutdown). It reports whether the reader ended.
func (r *reader) close(timeout time.Duration) bool {
	close(r.stop)
	defer r.wake.Close()
	select {
	case <-r.done:
		return true
	case <-time.After(timeout):
		return false
	}
}
