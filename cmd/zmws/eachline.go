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

// eachLine submits one job per input line. Job IDs go to stdout (one per
// line, unless --quiet), a progress bar to stderr when stderr is a terminal,
// and a summary to stderr at the end. A refused line is reported with its
// number and the run goes on; the command fails if any line was refused.
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
	var submitted, refused, n int
	var firstErr error
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
		id, err := cl.Submit(e.ctx, c.Service, req)
		if err != nil {
			if e.ctx.Err() != nil {
				return e.ctx.Err()
			}
			var ce *client.Error
			if !errors.As(err, &ce) {
				// Transport failure: the broker is gone; stop here.
				return fmt.Errorf("line %d: %w (%d submitted before)", n, err, submitted)
			}
			refused++
			if firstErr == nil {
				firstErr = fmt.Errorf("line %d: %w", n, err)
			}
			fmt.Fprintf(e.stderr, "zmws: line %d refused: %v\n", n, err)
			continue
		}
		submitted++
		if !c.Quiet {
			fmt.Fprintln(e.stdout, id)
		}
		if bar != nil {
			bar.Add(1)
		}
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
