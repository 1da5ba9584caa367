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
	// FlushBytes, LineLinger and FlushDelay decide when stdout is sent as a
	// partial reply. FlushBytes pending bytes go at once, in pieces of
	// FlushBytes. Complete lines go LineLinger after the first of them
	// arrived (with the lines that came meanwhile, up to the last newline).
	// Any pending byte goes at the latest FlushDelay after the oldest one
	// arrived, newline or not. What is pending when the command exits is not
	// sent as a partial: it is the job's result, in the final reply.
	FlushBytes = 16 << 10
	FlushDelay = 50 * time.Millisecond
	// LineLinger is short enough that a person watching a long-running
	// command does not notice it, and long enough that a quick filter (rev,
	// wc: one write of all its output, then exit) has exited and been
	// reaped before it ends: such a job then costs one message through the
	// broker (the final reply) instead of a partial and a final.
	LineLinger = 5 * time.Millisecond
	// StderrTail is how much of the end of stderr a failure reports.
	StderrTail = 4 << 10
	// maxLogLines and maxLogLine bound how much of a job's stderr is logged.
	maxLogLines = 1000
	maxLogLine  = 1 << 10
)

// stopper is a timer that can be stopped (a *time.Timer).
type stopper interface{ Stop() bool }

// output takes a command's stdout and passes it to sink in chunks, as
// partial replies, at the cadence of FlushBytes, LineLinger and FlushDelay.
// At most max bytes are passed on; the rest is counted and dropped.
// Everything happens under mu, so chunks leave in order; the reading
// goroutine and the two timers call in.
//
// The timers: delay is armed when a byte arrives and nothing was pending;
// line is armed when a newline arrives and none was pending. Both are
// stopped when nothing is pending any more, and by finish.
//
// If the sink says worker.ErrNoStream (a Job built by hand), output is
// gathered instead and becomes the job's result.
type output struct {
	sink       func([]byte) (int, error)
	max        int
	flushBytes int
	flushDelay time.Duration
	lineLinger time.Duration
	afterFunc  func(time.Duration, func()) stopper

	mu      sync.Mutex
	pending []byte
	kept    []byte // gathered output when there is no stream
	gather  bool
	total   int64 // bytes the command wrote
	taken   int   // bytes within max
	delay   flushTimer
	line    flushTimer
	sinkErr error
	done    bool
}

// flushTimer is one of output's timers. gen tells the live callback from a
// stale one: a timer stopped (or replaced) while its callback was already
// waiting for mu.
type flushTimer struct {
	t   stopper
	gen uint64
}

func (ft *flushTimer) armed() bool { return ft.t != nil }

func (ft *flushTimer) stop() {
	if ft.t != nil {
		ft.t.Stop()
		ft.t = nil
		ft.gen++
	}
}

func newOutput(sink func([]byte) (int, error), max int) *output {
	return &output{
		sink: sink, max: max, flushBytes: FlushBytes, flushDelay: FlushDelay, lineLinger: LineLinger,
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
	o.arm()
	return len(p), nil
}

// arm sets or stops the timers to match what is pending. Called with mu
// held.
func (o *output) arm() {
	if len(o.pending) == 0 {
		o.delay.stop()
		o.line.stop()
		return
	}
	if !o.delay.armed() {
		o.set(&o.delay, o.flushDelay, func() { o.emit(len(o.pending)) })
	}
	switch nl := bytes.IndexByte(o.pending, '\n') >= 0; {
	case nl && !o.line.armed():
		o.set(&o.line, o.lineLinger, func() { o.emit(bytes.LastIndexByte(o.pending, '\n') + 1) })
	case !nl:
		o.line.stop()
	}
}

// set arms ft to call flush, under mu, after d; then arm runs again.
// Called with mu held.
func (o *output) set(ft *flushTimer, d time.Duration, flush func()) {
	ft.gen++
	gen := ft.gen
	ft.t = o.afterFunc(d, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if ft.gen != gen || o.done {
			return
		}
		ft.t = nil
		flush()
		o.arm()
	})
}

// emit passes on the first n pending bytes. Called with mu held.
func (o *output) emit(n int) {
	if n <= 0 {
		return
	}
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

// finish stops the timers and returns the job's result: what was not sent
// yet (everything, when gathered), then a note if the output was cut.
// Writes after finish are dropped.
func (o *output) finish() (res []byte, truncated bool, sinkErr error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	o.delay.stop()
	o.line.stop()
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
	stream  string // what it logs: "stderr" when "" (an idle command's stdout: "stdout")
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
		s.log.Info().Str(s.name(), string(bytes.TrimRight(s.line, "\r"))).Msg("command " + s.name())
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
		s.log.Info().Int("lines", s.dropped).Msg("command " + s.name() + " lines not logged")
	}
}

func (s *stderrSink) name() string {
	if s.stream == "" {
		return "stderr"
	}
	return s.stream
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
