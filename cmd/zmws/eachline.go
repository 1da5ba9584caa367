package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/zmws/zmws/client"
)

// maxLine bounds one input line of --each-line.
const maxLine = 1 << 20

// eachLine submits one job per input line, with up to --window submissions
// in flight (client.SubmitMany). Job IDs go to stdout in input order (one
// per line, unless --quiet), a progress bar to stderr when stderr is a
// terminal, and a summary to stderr at the end. A refused line is reported
// with its number and the run goes on; the command fails if any line was
// refused.
func (c *SubmitCmd) eachLine(e *env, params map[string]string) error {
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
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()

	var bar *progressbar.ProgressBar
	if e.stderrTerminal {
		bar = progressbar.NewOptions(-1,
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription("submitting "+c.Service),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("jobs"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}
	start := time.Now()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	n := 0 // lines read
	lines := func(yield func(client.Request) bool) {
		for sc.Scan() {
			n++
			line := sc.Text()
			req := client.Request{Params: params, TTR: c.TTR, Retries: c.Retries}
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
	var submitted, refused int
	var firstErr error
	err = cl.SubmitMany(e.ctx, c.Service, lines, c.Window, func(s client.Submitted) error {
		if s.Err != nil {
			var ce *client.Error
			if !errors.As(s.Err, &ce) {
				return nil // a transport failure: SubmitMany returns it
			}
			refused++
			if firstErr == nil {
				firstErr = fmt.Errorf("line %d: %w", s.Index+1, s.Err)
			}
			fmt.Fprintf(e.stderr, "zmws: line %d refused: %v\n", s.Index+1, s.Err)
			return nil
		}
		submitted++
		if !c.Quiet {
			fmt.Fprintln(e.stdout, s.ID)
		}
		if bar != nil {
			bar.Add(1)
		}
		return nil
	})
	if err != nil {
		if e.ctx.Err() != nil {
			fmt.Fprintf(e.stderr, "interrupted: %d submitted, %d refused; up to %d more lines were in flight and may or may not have made jobs\n",
				submitted, refused, c.Window)
			return e.ctx.Err()
		}
		// Transport failure: the broker is gone or silent; stop here.
		return fmt.Errorf("after line %d: %w (%d submitted, %d refused; jobs of lines without an ID may or may not exist)",
			submitted+refused, err, submitted, refused)
	}
	if bar != nil {
		bar.Finish()
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading input after line %d: %w", n, err)
	}
	elapsed := time.Since(start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(submitted) / elapsed.Seconds()
	}
	fmt.Fprintf(e.stderr, "submitted %d jobs to %s in %.2fs (%.0f/s), %d refused\n", submitted, c.Service, elapsed.Seconds(), rate, refused)
	if refused > 0 {
		return firstErr
	}
	return nil
}
