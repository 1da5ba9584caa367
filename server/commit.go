package server

import (
	"fmt"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmws/zmws/store"
)

// committer makes the broker's records durable off the loop goroutine, so a
// slow disk never holds up heartbeats or dispatch. Group commit: while one
// batch is being written, the loop gathers the next; each batch is one
// Store.Commit (one fsync for bbolt), however many jobs it holds.
//
// The loop hands a batch over with start and learns the outcome when the
// wake socket (an inproc PAIR, polled with the others) becomes readable.
type committer struct {
	st   store.Store
	req  chan *store.Batch
	res  chan error
	wake *zmq.Socket // loop side: readable when a commit has finished
	ping *zmq.Socket // committer side
	busy bool        // a batch is being committed (loop's view)
	// latency, size and errors, set with Config.Metrics (before Run),
	// time and count the commits.
	latency, size prometheus.Histogram
	errors        prometheus.Counter
}

var commitSeq atomic.Uint64

func newCommitter(st store.Store) (*committer, error) {
	c := &committer{st: st, req: make(chan *store.Batch), res: make(chan error, 1)}
	ep := fmt.Sprintf("inproc://zmwsd-commit-%d", commitSeq.Add(1))
	var err error
	if c.wake, err = zmq.NewSocket(zmq.PAIR); err != nil {
		return nil, fmt.Errorf("server: commit socket: %w", err)
	}
	if err = c.wake.Bind(ep); err != nil {
		c.wake.Close()
		return nil, fmt.Errorf("server: commit socket: %w", err)
	}
	if c.ping, err = zmq.NewSocket(zmq.PAIR); err != nil {
		c.wake.Close()
		return nil, fmt.Errorf("server: commit socket: %w", err)
	}
	if err = c.ping.Connect(ep); err != nil {
		c.wake.Close()
		c.ping.Close()
		return nil, fmt.Errorf("server: commit socket: %w", err)
	}
	c.wake.SetLinger(0)
	c.ping.SetLinger(0)
	go c.run()
	return c, nil
}

// run is the committer goroutine: it owns c.ping.
func (c *committer) run() {
	for b := range c.req {
		start, jobs := time.Now(), len(b.Jobs)
		err := c.st.Commit(b)
		if c.latency != nil {
			c.latency.Observe(time.Since(start).Seconds())
			c.size.Observe(float64(jobs))
			if err != nil {
				c.errors.Inc()
			}
		}
		c.res <- err
		c.ping.SendBytes([]byte{1}, 0)
	}
	c.ping.Close()
}

// start hands a batch to the committer. The replies the broker holds for
// it are the broker's (broker.Broker.Committed returns them).
func (c *committer) start(b *store.Batch) {
	c.busy = true
	c.req <- b
}

// finished reads the commit's outcome once the wake socket is readable.
func (c *committer) finished() error {
	c.wake.RecvBytes(0)
	err := <-c.res
	c.busy = false
	return err
}

// wait blocks until a busy commit is done (at shutdown).
func (c *committer) wait(timeout time.Duration) (err error, was bool) {
	if !c.busy {
		return nil, false
	}
	p := zmq.NewPoller()
	p.Add(c.wake, zmq.POLLIN)
	if polled, _ := p.Poll(timeout); len(polled) == 0 {
		return fmt.Errorf("server: commit did not finish within %v", timeout), true
	}
	return c.finished(), true
}

func (c *committer) close() {
	close(c.req)
	c.wake.Close()
}
