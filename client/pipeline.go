package client

import (
	"context"
	"fmt"
	"iter"
	"strconv"
	"time"

	zmq "github.com/pebbe/zmq4"

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
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	if c.sock == nil {
		if err := c.open(); err != nil {
			return err
		}
	}
	next, stop := iter.Pull(reqs)
	defer stop()
	sent, reported, more := 0, 0, true
	defer func() {
		if reported < sent {
			c.drop() // replies still due must not meet the next request
		}
	}()

	// Outcomes wait in a ring of window slots until every earlier one is
	// in, so each sees them in order. Slot i%window belongs to request i.
	ring := make([]Submitted, window)
	in := make([]bool, window)
	heard := time.Now()
	for {
		for more && sent-reported < window {
			req, ok := next()
			if !ok {
				more = false
				break
			}
			frames := protocol.EncodeClient(protocol.Message{Form: form, Cmd: protocol.CmdRequest, Service: service,
				Body: req.bodyRef(strconv.Itoa(sent))})
			if _, err := c.sock.SendMessageDontwait(frames); err != nil {
				c.drop()
				return fmt.Errorf("client: send %s: %w", service, err)
			}
			ring[sent%window], in[sent%window] = Submitted{Index: sent}, false
			if sent == reported {
				heard = time.Now() // the clock starts with the oldest in flight
			}
			sent++
		}
		if reported == sent {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrClosed
		default:
		}
		left := c.cfg.Timeout - time.Since(heard)
		if left <= 0 {
			c.drop()
			err := fmt.Errorf("submit %s: no reply within %v: %w", service, c.cfg.Timeout, ErrTimeout)
			for ; reported < sent; reported++ {
				r := ring[reported%window]
				if !in[reported%window] {
					r.Err = err
				}
				if e := each(r); e != nil {
					return e
				}
			}
			return err
		}
		polled, err := c.poller.Poll(min(pollSlice, left))
		if err != nil {
			c.drop()
			return fmt.Errorf("client: poll: %w", err)
		}
		if len(polled) == 0 {
			if err := c.watch.Err(); err != nil {
				c.drop()
				return fmt.Errorf("submit %s: %w", service, err)
			}
			continue
		}
		for range sent - reported { // take what has arrived, then send more
			msg, err := c.sock.RecvMessageBytes(zmq.DONTWAIT)
			if err != nil {
				break
			}
			m, i, ok, err := c.pipelined(service, msg, reported, sent)
			if err != nil {
				c.drop()
				return err
			}
			if !ok || in[i%window] {
				continue
			}
			ring[i%window].ID, ring[i%window].Err = c.acceptedID(service, m)
			in[i%window] = true
			heard = time.Now()
		}
		for reported < sent && in[reported%window] {
			if err := each(ring[reported%window]); err != nil {
				return err
			}
			reported++
		}
	}
}

// pipelined decodes a reply to one of SubmitMany's submissions and returns
// the index of the request it answers, which must be in [from, to). A reply
// for the service that carries no reference is an error: the broker does
// not echo references (a stock MDP broker, or a zmws broker older than
// SubmitMany), so no reply could be matched.
func (c *Client) pipelined(service string, frames [][]byte, from, to int) (protocol.Message, int, bool, error) {
	m, err := protocol.DecodeReply(frames)
	if err != nil {
		c.log.Warn().Err(err).Str(keyService, service).Msg("malformed reply dropped")
		return m, 0, false, nil
	}
	if m.Service != service {
		c.log.Debug().Str(keyService, m.Service).Msg("stray reply dropped")
		return m, 0, false, nil
	}
	meta, _, _, err := protocol.SplitMeta(m.Body)
	if err == nil && meta.Ref == "" {
		return m, 0, false, fmt.Errorf("submit %s: the broker does not echo submission references; "+
			"SubmitMany needs a zmws broker that does (use Submit): %w", service, ErrBadReply)
	}
	i, aerr := strconv.Atoi(meta.Ref)
	if err != nil || aerr != nil || i < from || i >= to {
		c.log.Debug().Str(keyService, m.Service).Str("ref", meta.Ref).Msg("stray reply dropped")
		return m, 0, false, nil
	}
	return m, i, true, nil
}
