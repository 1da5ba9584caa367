package runner

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/worker"
)

// Output cadence and stderr bounds.
const (
	// FlushBytes and FlushDelay bound how long stdout waits before it is
	// sent as a partial reply: at a newline, once FlushBytes are pending, or
	// FlushDelay after the oldest pending byte, whichever comes first.
	FlushBytes = 16 << 10
	FlushDelay = 50 * time.Millisecond
	// StderrTail is how much of the end of stderr a failure reports.
	StderrTail = 4 << 10
	// maxLogLines and maxLogLine bound how much of a job's stderr is logged.
	maxLogLines = 1000
	maxLogLine  = 1 << 10
)

// stopper is a timer that can be stopped (a *time.Timer).
type stopper interface{ Stop() bool }

// output takes a command's stdout and passes it to sink in chunks, as
// partial replies: pending bytes are sent at the last newline, in pieces of
// flushBytes, and when the timer set at the oldest pending byte fires. At
// most max bytes are passed on; the rest is counted and dropped. Everything
// happens under mu, so chunks leave in order; the reading goroutine and the
// timer call in.
//
// If the sink says worker.ErrNoStream (a Job built by hand), output is
// gathered instead and becomes the job's result.
type output struct {
	sink       func([]byte) (int, error)
	max        int
	flushBytes int
	flushDelay time.Duration
	afterFunc  func(time.Duration, func()) stopper

	mu      sync.Mutex
	pending []byte
	kept    []byte // gathered output when there is no stream
	gather  bool
	total   int64 // bytes the command wrote
	taken   int   // bytes within max
	timer   stopper
	sinkErr error
	done    bool
}

func newOutput(sink func([]byte) (int, error), max int) *output {
	return &output{
		sink: sink, max: max, flushBytes: FlushBytes, flushDelay: FlushDelay,
		afterFunc: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
	}
}

// Write takes stdout bytes; it never fails, so the command is never blocked
// by the cap (its output past the cap is read and dropped).
func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.total += int64(len(p))
	if o.done {
		return len(p), nil
	}
	take := min(len(p), o.max-o.taken)
	if take <= 0 {
		return len(p), nil
	}
	o.taken += take
	o.pending = append(o.pending, p[:take]...)
	for len(o.pending) >= o.flushBytes {
		o.emit(o.flushBytes)
	}
	if i := bytes.LastIndexByte(o.pending, '\n'); i >= 0 {
		o.emit(i + 1)
	}
	switch {
	case len(o.pending) == 0 && o.timer != nil:
		o.timer.Stop()
		o.timer = nil
	case len(o.pending) > 0 && o.timer == nil:
		o.timer = o.afterFunc(o.flushDelay, o.tick)
	}
	return len(p), nil
}

// tick sends what is pending when the flush delay is over.
func (o *output) tick() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.timer = nil
	if !o.done && len(o.pending) > 0 {
		o.emit(len(o.pending))
	}
}

// emit passes on the first n pending bytes. Called with mu held.
func (o *output) emit(n int) {
	chunk := o.pending[:n]
	switch {
	case o.gather:
		o.kept = append(o.kept, chunk...)
	case o.sinkErr != nil:
	default:
		if _, err := o.sink(chunk); errors.Is(err, worker.ErrNoStream) {
			o.gather = true
			o.kept = append(o.kept, chunk...)
		} else if err != nil {
			o.sinkErr = err
		}
	}
	o.pending = append(o.pending[:0], o.pending[n:]...)
}

// finish stops the timer and returns the job's result: what was not sent
// yet (everything, when gathered), then a note if the output was cut.
// Writes after finish are dropped.
func (o *output) finish() (res []byte, truncated bool, sinkErr error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	res = append(o.kept, o.pending...)
	o.kept, o.pending = nil, nil
	if o.total > int64(o.taken) {
		truncated = true
		res = fmt.Appendf(res, "\n[zmws-run: output cut at %d bytes, %d more dropped]\n", o.max, o.total-int64(o.taken))
	}
	return res, truncated, o.sinkErr
}

// stderrSink keeps the tail of a command's stderr and logs it line by line,
// up to maxLogLines lines of up to maxLogLine bytes. One goroutine writes;
// the tail is read after it is done.
type stderrSink struct {
	log     zerolog.Logger
	tail    []byte
	cut     bool   // bytes were dropped from the front of tail
	line    []byte // partial line not logged yet
	lines   int
	dropped int // lines not logged
}

func (s *stderrSink) Write(p []byte) (int, error) {
	s.tail = append(s.tail, p...)
	if over := len(s.tail) - StderrTail; over > 0 {
		s.tail = append(s.tail[:0], s.tail[over:]...)
		s.cut = true
	}
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if room := maxLogLine - len(s.line); room > 0 {
				s.line = append(s.line, rest[:min(room, len(rest))]...)
			}
			break
		}
		if room := maxLogLine - len(s.line); room > 0 {
			s.line = append(s.line, rest[:min(room, i)]...)
		}
		s.logLine()
		rest = rest[i+1:]
	}
	return len(p), nil
}

func (s *stderrSink) logLine() {
	if s.lines < maxLogLines {
		s.log.Info().Str("stderr", string(bytes.TrimRight(s.line, "\r"))).Msg("command stderr")
		s.lines++
	} else {
		s.dropped++
	}
	s.line = s.line[:0]
}

// close logs a last unterminated line and how many lines were not logged.
func (s *stderrSink) close() {
	if len(s.line) > 0 {
		s.logLine()
	}
	if s.dropped > 0 {
		s.log.Info().Int("lines", s.dropped).Msg("command stderr lines not logged")
	}
}

// String returns the tail for a failure message: trailing white space
// trimmed, "…" in front when the start was cut (at a character boundary).
func (s *stderrSink) String() string {
	t := bytes.TrimRight(s.tail, " \t\r\n")
	if !s.cut {
		return string(t)
	}
	for len(t) > 0 && !utf8.RuneStart(t[0]) {
		t = t[1:]
	}
	return "…" + string(t)
}
