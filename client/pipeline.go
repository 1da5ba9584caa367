package client

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Window bounds for SubmitMany.
const (
	// DefaultWindow is how many submissions SubmitMany keeps in flight when
	// asked for 0: enough for a durable broker to commit hundreds of jobs
	// per disk sync.
	DefaultWindow = 256
	// MaxWindow caps the window below the socket's send high-water mark
	// (1000), so a submission is never refused by the socket itself.
	MaxWindow = 900
)

// Submitted is the outcome of one submission of SubmitMany.
type Submitted struct {
	Index int    // the request's position in the sequence, from 0
	ID    string // the job's ID when it was accepted
	Err   error  // why it was not: a refusal (*Error), or ErrTimeout, ...
}

// SubmitMany submits every request of reqs to service as asynchronous jobs,
// keeping up to window of them in flight on the client's connection
// (0: DefaultWindow; at most MaxWindow), and calls each with every outcome,
// in the order of reqs. Against a durable broker this is what makes bulk
// submission fast: one disk sync commits many jobs, where Submit waits for a
// sync per job.
//
// Each submission carries a reference the broker echoes (protocol Meta.Ref),
// so replies are matched even when a refusal overtakes acceptances still
// waiting for their commit. A refusal is reported for its request and the
// rest go on. A broker that does not echo references fails the call with
// ErrBadReply at its first reply (jobs sent so far may exist). If the
// broker stays silent for Config.Timeout, the requests
// still unanswered are reported with ErrTimeout and SubmitMany returns it:
// their jobs may or may not exist, and are not resent (give them Keys and
// submit them again to be sure). SubmitMany returns early with ctx's error,
// ErrClosed, or the error each returns; outcomes not yet reported are then
// not reported.
func (c *Client) SubmitMany(ctx context.Context, service string, reqs iter.Seq[Request], window int, each func(Submitted) error) error {
	if _, sync := protocol.SplitSync(service); sync {
		return fmt.Errorf("submit %s: synchronous service, use Call: %w", service, ErrBadRequest)
	}
	switch {
	case window <= 0:
		window = DefaultWindow
	case window > MaxWindow:
		window = MaxWindow
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.plainAllows(ctx, "submit", service); err != nil {
		return err
	}
	next, stop := iter.Pull(reqs)
	defer stop()
	notify := make(chan struct{}, 1) // every reply of the window signals it
	var inflight []*call             // in the order of reqs
	defer func() {
		for _, cl := range inflight {
			c.finish(cl) // their late replies are strays
		}
	}()
	sent, more := 0, true
	heard, timeout := time.Now(), c.timeout()
	for {
		for more && len(inflight) < window {
			req, ok := next()
			if !ok {
				more = false
				break
			}
			cl, err := c.start(service, req.bodyRef, notify)
			if err != nil {
				return err
			}
			cl.index = sent
			sent++
			if len(inflight) == 0 {
				heard = time.Now() // the clock starts with the oldest in flight
			}
			inflight = append(inflight, cl)
		}
		if len(inflight) == 0 {
			return nil
		}
		// Report what is in, in order.
		reported := false
		for len(inflight) > 0 {
			cl := inflight[0]
			r, ok, err := cl.take()
			if err != nil {
				return opError("submit", service, err)
			}
			if !ok {
				break
			}
			if r.cmd == protocol.CmdPartial {
				continue
			}
			if !r.byRef {
				return fmt.Errorf("submit %s: the broker does not echo submission references; "+
					"SubmitMany needs a zmws broker that does (use Submit): %w", service, ErrBadReply)
			}
			id, rerr := c.acceptedID(service, r)
			c.finish(cl)
			inflight = inflight[1:]
			if err := each(Submitted{Index: cl.index, ID: id, Err: rerr}); err != nil {
				return err
			}
			reported = true
		}
		if reported {
			heard = time.Now()
			continue
		}
		left := timeout - time.Since(heard)
		if left <= 0 {
			err := fmt.Errorf("submit %s: no reply within %v: %w", service, timeout, ErrTimeout)
			for len(inflight) > 0 {
				cl := inflight[0]
				c.finish(cl)
				inflight = inflight[1:]
				if e := each(Submitted{Index: cl.index, Err: err}); e != nil {
					return e
				}
			}
			return err
		}
		t := time.NewTimer(left)
		select {
		case <-notify:
			heard = time.Now() // a reply came, maybe to a later request
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-c.done:
			t.Stop()
			return ErrClosed
		}
		t.Stop()
	}
}
