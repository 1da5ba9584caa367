package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// maxLine bounds one input line of --each-line.
const maxLine = 1 << 20

// eachLine submits one job per input line, with up to --window submissions
// in flight (client.SubmitMany). Job IDs go to stdout in input order (one
// per line, unless --quiet); progress goes to stderr (see reporter), and a
// summary line at the end. A refused line is reported with its number and
// the run goes on; the command fails if any line was refused. With --wait
// it then follows every job to its end (see follower), reports each failed
// one, and fails if any did.
func (c *SubmitCmd) eachLine(e *env, params map[string]string, at time.Time) error {
	in := e.stdin
	if c.Input != "" && c.Input != "-" {
		f, err := os.Open(c.Input)
		if err != nil {
			return fmt.Errorf("input: %w", err)
		}
		defer f.Close()
		in = f
	}
	if c.Key != "" {
		return errors.New("--key cannot be used with --each-line: every line is its own job")
	}
	if c.Window < 1 || c.Window > client.MaxWindow {
		return fmt.Errorf("--window %d: want 1 to %d", c.Window, client.MaxWindow)
	}
	if c.Count < 0 {
		return fmt.Errorf("--count %d: want the number of lines, 0 or more", c.Count)
	}
	if c.ProgressEvery <= 0 {
		return fmt.Errorf("--progress-every %v: want a duration above 0 (--progress never shows none)", c.ProgressEvery)
	}
	total := -1
	if c.Count > 0 {
		total = c.Count
	} else if n, ok, err := countLines(in); err != nil {
		return fmt.Errorf("input: %w", err)
	} else if ok {
		total = n
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()

	rep := newReporter(e.stderr, c.Service, c.Progress, e.stderrTerminal, c.ProgressEvery, e.width,
		counts{Total: total, Wait: c.Wait, Reading: true})
	defer rep.close()

	var fol *follower
	var followErr chan error
	if c.Wait {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		fol = newFollower(c.Service, func(j *followed, o outcome) {
			switch o.State {
			case protocol.JobComplete:
				rep.update(func(n *counts) { n.Completed++ })
				return
			case protocol.JobFailed:
				rep.update(func(n *counts) { n.Failed++ })
				rep.printf("zmws: line %d: job %s failed%s\n", j.line, j.id, failure(o))
			default:
				rep.update(func(n *counts) { n.Unknown++ })
				rep.printf("zmws: line %d: job %s is no longer known to the broker: how it ended is unknown\n", j.line, j.id)
			}
		})
		followErr = make(chan error, 1)
		go func() { followErr <- fol.lookups(ctx, cl.Job) }()
		go c.watch(ctx, e, fol, rep)
	}

	start := time.Now()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	n := 0 // lines read
	lines := func(yield func(client.Request) bool) {
		for sc.Scan() {
			n++
			line := sc.Text()
			req := client.Request{Params: params, TTR: c.TTR, Retries: c.Retries, Priority: c.Priority, Delay: c.Delay, At: at}
			if c.LineParam != "" {
				req.Params = maps.Clone(params)
				if req.Params == nil {
					req.Params = map[string]string{}
				}
				req.Params[c.LineParam] = line
			} else {
				req.Input = []byte(line)
			}
			if !yield(req) {
				return
			}
		}
	}
	var firstErr error
	err = cl.SubmitMany(e.ctx, c.Service, lines, c.Window, func(s client.Submitted) error {
		if s.Err != nil {
			var ce *client.Error
			if !errors.As(s.Err, &ce) {
				return nil // a transport failure: SubmitMany returns it
			}
			rep.update(func(n *counts) { n.Refused++ })
			if firstErr == nil {
				firstErr = fmt.Errorf("line %d: %w", s.Index+1, s.Err)
			}
			rep.printf("zmws: line %d refused: %v\n", s.Index+1, s.Err)
			return nil
		}
		rep.update(func(n *counts) { n.Submitted++ })
		if fol != nil {
			fol.add(time.Now(), s.ID, s.Index+1)
		}
		if !c.Quiet {
			fmt.Fprintln(e.stdout, s.ID)
		}
		return nil
	})
	submitTime := time.Since(start)
	rep.update(func(n *counts) {
		n.Reading, n.SubmitTime = false, submitTime
		if n.Total < 0 {
			n.Total = n.Submitted + n.Refused
		}
	})
	if err != nil {
		rep.close()
		got := rep.counts()
		if e.ctx.Err() != nil {
			fmt.Fprintf(e.stderr, "interrupted: %d submitted, %d refused; up to %d more lines were in flight and may or may not have made jobs\n",
				got.Submitted, got.Refused, c.Window)
			return e.ctx.Err()
		}
		// Transport failure: the broker is gone or silent; stop here.
		return fmt.Errorf("after line %d: %w (%d submitted, %d refused; jobs of lines without an ID may or may not exist)",
			got.Submitted+got.Refused, err, got.Submitted, got.Refused)
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		rep.close()
		return fmt.Errorf("reading input after line %d: %w", n, err)
	}
	if fol != nil {
		fol.submitted()
		select {
		case <-fol.done():
		case err := <-followErr:
			if err == nil { // ctx ended
				err = e.ctx.Err()
			}
			rep.close()
			got := rep.counts()
			if e.ctx.Err() != nil {
				fmt.Fprintf(e.stderr, "interrupted: %d submitted, %d refused; %d completed, %d failed, %d not finished yet (they run on)\n",
					got.Submitted, got.Refused, got.Completed, got.Failed, fol.pending())
				return e.ctx.Err()
			}
			return err
		}
	}
	rep.close()
	got := rep.counts()
	fmt.Fprintln(e.stderr, summaryLine(c.Service, got, submitTime, time.Since(start)))
	switch {
	case got.Refused > 0:
		return firstErr
	case got.Failed > 0:
		return fmt.Errorf("%d of %d jobs failed", got.Failed, got.Submitted)
	}
	return nil
}

// watch feeds the follower the service's completed and failed events
// until ctx ends. Events only speed the follower up: when they cannot be
// had (no events socket, a key without the watch right) it says so and
// the lookups carry on alone.
func (c *SubmitCmd) watch(ctx context.Context, e *env, fol *follower, rep *reporter) {
	keys, err := e.curve()
	if err == nil {
		err = client.WatchCurve(ctx, e.cli.Events, keys, []string{protocol.EventCompleted, protocol.EventFailed},
			func(ev protocol.Event) error { fol.seen(ev); return nil })
	}
	if err != nil && ctx.Err() == nil {
		rep.printf("zmws: no events from %s (%v): asking the broker about each job instead, which is slower\n", e.cli.Events, err)
	}
}

// failure says how a failed job failed, for its line on stderr.
func failure(o outcome) string {
	s := ""
	if o.Code != "" {
		s += " (" + o.Code
		if o.ExitCode != nil {
			s += fmt.Sprintf(", exit %d", *o.ExitCode)
		}
		s += ")"
	} else if o.ExitCode != nil {
		s += fmt.Sprintf(" (exit %d)", *o.ExitCode)
	}
	if o.Error != "" {
		s += ": " + oneLine(o.Error)
	}
	return s
}
