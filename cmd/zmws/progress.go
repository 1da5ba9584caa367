package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress modes (--progress).
const (
	progressAuto   = "auto"   // a live bar when stderr is a terminal, else plain lines
	progressAlways = "always" // a live bar even when stderr is not a terminal
	progressPlain  = "plain"  // plain lines every --progress-every, even on a terminal
	progressNever  = "never"  // only the final summary
)

// liveEvery is how often a live bar is redrawn: often enough to look
// alive, rarely enough to cost nothing.
const liveEvery = 150 * time.Millisecond

// rateWindow is the span a live rate is measured over: recent enough to
// follow a change of pace, long enough not to flicker.
const rateWindow = 5 * time.Second

// counts is where a bulk run stands at one instant. Total is the number
// of lines to submit, or -1 when unknown (a pipe without --count).
type counts struct {
	Total     int
	Submitted int
	Refused   int
	// Wait says the run follows its jobs to their end (--wait): then
	// Completed, Failed and Unknown (jobs the broker no longer knows) count
	// the finished ones, and Reading is false once every line was read.
	Wait      bool
	Completed int
	Failed    int
	Unknown   int
	Reading   bool
	// SubmitTime is how long reading and submitting took, once Reading is
	// false: then the submissions show their average rate, not a recent
	// one that falls to 0.
	SubmitTime time.Duration
}

// finished is how many of the run's jobs have ended, either way.
func (c counts) finished() int { return c.Completed + c.Failed + c.Unknown }

// finishTotal is how many jobs the run waits for: the lines left after
// the refused ones when the total is known, else those submitted so far;
// -1 while that can still grow without a known end.
func (c counts) finishTotal() int {
	switch {
	case c.Total >= 0:
		return max(c.Total-c.Refused, c.Submitted)
	case c.Reading:
		return -1
	default:
		return c.Submitted
	}
}

// sample is a counter's value at an instant.
type sample struct {
	at time.Time
	n  int
}

// meter measures a counter's recent rate from samples over a window. It
// is a plain value owned by one goroutine.
type meter struct {
	window  time.Duration
	samples []sample // oldest first; the first may be older than window
}

// observe records the counter's value n at now.
func (m *meter) observe(now time.Time, n int) {
	m.samples = append(m.samples, sample{now, n})
	// Keep one sample at or beyond the window's start, drop older ones.
	cut := 0
	for cut+1 < len(m.samples) && now.Sub(m.samples[cut+1].at) >= m.window {
		cut++
	}
	m.samples = m.samples[cut:]
}

// rate is the counter's increase per second between the oldest sample
// kept and the newest; 0 before two samples a moment apart.
func (m *meter) rate() float64 {
	if len(m.samples) < 2 {
		return 0
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt <= 0 || last.n < first.n {
		return 0
	}
	return float64(last.n-first.n) / dt
}

// eta is how long the rest of total takes at rate; ok is false when that
// cannot be told (no total, no rate, or nothing left).
func eta(done, total int, rate float64) (time.Duration, bool) {
	if total < 0 || rate <= 0 || done >= total {
		return 0, false
	}
	secs := float64(total-done) / rate
	if secs > 100*24*3600 {
		return 0, false
	}
	return max(time.Duration(secs*float64(time.Second)).Round(time.Second), time.Second), true
}

// rates are the recent rates of a run: submissions and finished jobs per
// second.
type rates struct{ Submit, Finish float64 }

// fmtRate formats a rate per second: whole numbers from 10/s up.
func fmtRate(r float64) string {
	if r >= 10 || r == 0 {
		return fmt.Sprintf("%.0f/s", r)
	}
	return fmt.Sprintf("%.1f/s", r)
}

// fmtDuration formats a duration for people: 42s, 5m03s, 2h07m.
func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d >= time.Hour {
		d = d.Round(time.Minute)
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// fmtElapsed formats a run's elapsed time: to the hundredth of a second
// under a minute, as fmtDuration above.
func fmtElapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmtDuration(d)
}

// percent is done of total in whole percent, capped at 100 (a --count
// that was too small).
func percent(done, total int) int {
	if total <= 0 {
		return 100
	}
	return min(100, done*100/total)
}

// bar draws a bar of width cells (with its brackets) filled to done of
// total.
func bar(done, total, width int) string {
	inner := width - 2
	if inner < 1 {
		return ""
	}
	fill := inner
	if total > 0 {
		fill = min(inner, done*inner/total)
	}
	var b strings.Builder
	b.WriteByte('[')
	b.WriteString(strings.Repeat("=", fill))
	if fill < inner {
		b.WriteByte('>')
		b.WriteString(strings.Repeat(" ", inner-fill-1))
	}
	b.WriteByte(']')
	return b.String()
}

// minBar is the narrowest bar worth drawing; below it the line goes without.
const minBar = 12

// barLine lays out one line of a live view in width columns: label, a bar
// (when total is known and there is room) and stats, its last fields
// dropped to fit width-1 so the terminal never wraps it (a wrapped line
// breaks redrawing).
func barLine(label string, done, total int, stats string, width int) string {
	width = max(width-1, 1)
	line := label + " " + stats
	if total >= 0 {
		if room := width - len(label) - len(stats) - 2; room >= minBar {
			line = label + " " + bar(done, total, room) + " " + stats
		}
	}
	if len(line) > width {
		// Drop the fields that do not fit whole, else cut.
		if i := strings.LastIndex(line[:width+1], "  "); i > len(label) {
			line = line[:i]
		} else {
			line = line[:width]
		}
	}
	return line
}

// liveLines renders the live view of a run of service in width columns:
// one line for the submissions, a second for the finished jobs with
// --wait.
func liveLines(service string, c counts, r rates, elapsed time.Duration, width int) []string {
	label := "submit " + service
	done := "done"
	if c.Wait && len(done) < len(label) {
		done += strings.Repeat(" ", len(label)-len(done)) // the bars line up
	}
	lines := []string{barLine(label, c.Submitted+c.Refused, c.Total, submitStats(c, r, elapsed), width)}
	if c.Wait {
		lines = append(lines, barLine(done, c.finished(), c.finishTotal(), finishStats(c, r, elapsed), width))
	}
	return lines
}

// submitStats is the numbers of the submissions: count (of total),
// percent, rate, ETA (or elapsed when there is no ETA), refused.
func submitStats(c counts, r rates, elapsed time.Duration) string {
	read := c.Submitted + c.Refused
	var parts []string
	if c.Total >= 0 {
		parts = append(parts, fmt.Sprintf("%d/%d", read, c.Total), fmt.Sprintf("%d%%", percent(read, c.Total)))
	} else {
		parts = append(parts, fmt.Sprintf("%d", read))
	}
	switch d, ok := eta(read, c.Total, r.Submit); {
	case !c.Reading:
		parts = append(parts, fmtRate(average(read, c.SubmitTime)), fmtDuration(c.SubmitTime))
	case ok:
		parts = append(parts, fmtRate(r.Submit), "ETA "+fmtDuration(d))
	default:
		parts = append(parts, fmtRate(r.Submit), fmtDuration(elapsed))
	}
	if c.Refused > 0 {
		parts = append(parts, fmt.Sprintf("%d refused", c.Refused))
	}
	return strings.Join(parts, "  ")
}

// finishStats is the numbers of the finished jobs: count (of total),
// completed and failed, rate, ETA.
func finishStats(c counts, r rates, elapsed time.Duration) string {
	total := c.finishTotal()
	var parts []string
	if total >= 0 {
		parts = append(parts, fmt.Sprintf("%d/%d", c.finished(), total))
	} else {
		parts = append(parts, fmt.Sprintf("%d", c.finished()))
	}
	outcome := fmt.Sprintf("%d ok, %d failed", c.Completed, c.Failed)
	if c.Unknown > 0 {
		outcome += fmt.Sprintf(", %d unknown", c.Unknown)
	}
	parts = append(parts, outcome, fmtRate(r.Finish))
	if d, ok := eta(c.finished(), total, r.Finish); ok {
		parts = append(parts, "ETA "+fmtDuration(d))
	} else {
		parts = append(parts, fmtDuration(elapsed))
	}
	return strings.Join(parts, "  ")
}

// plainLine renders a run's progress as one line for a log: what a live
// view shows, in words.
func plainLine(service string, c counts, r rates, elapsed time.Duration) string {
	read := c.Submitted + c.Refused
	var b strings.Builder
	fmt.Fprintf(&b, "progress %s: submitted %d", service, c.Submitted)
	if c.Total >= 0 {
		fmt.Fprintf(&b, " of %d lines (%d%%)", c.Total, percent(read, c.Total))
	}
	if !c.Reading {
		fmt.Fprintf(&b, ", %d refused, in %s (%s)", c.Refused, fmtElapsed(c.SubmitTime), fmtRate(average(read, c.SubmitTime)))
	} else {
		fmt.Fprintf(&b, ", %d refused, %s", c.Refused, fmtRate(r.Submit))
		if d, ok := eta(read, c.Total, r.Submit); ok {
			fmt.Fprintf(&b, ", ETA %s", fmtDuration(d))
		}
	}
	if c.Wait {
		total := c.finishTotal()
		fmt.Fprintf(&b, "; finished %d", c.finished())
		if total >= 0 {
			fmt.Fprintf(&b, " of %d", total)
		}
		fmt.Fprintf(&b, " (%d completed, %d failed", c.Completed, c.Failed)
		if c.Unknown > 0 {
			fmt.Fprintf(&b, ", %d unknown", c.Unknown)
		}
		fmt.Fprintf(&b, "), %s", fmtRate(r.Finish))
		if d, ok := eta(c.finished(), total, r.Finish); ok {
			fmt.Fprintf(&b, ", ETA %s", fmtDuration(d))
		}
	}
	fmt.Fprintf(&b, "; elapsed %s", fmtElapsed(elapsed))
	return b.String()
}

// summaryLine is the last line of a run: what was submitted (and, with
// --wait, how the jobs ended), how long it took and at what average rate.
func summaryLine(service string, c counts, submitTime, elapsed time.Duration) string {
	s := fmt.Sprintf("submitted %d jobs to %s in %s (%s), %d refused", c.Submitted, service, fmtElapsed(submitTime),
		fmtRate(average(c.Submitted, submitTime)), c.Refused)
	if c.Wait {
		s += fmt.Sprintf("; %d completed, %d failed", c.Completed, c.Failed)
		if c.Unknown > 0 {
			s += fmt.Sprintf(", %d unknown", c.Unknown)
		}
		s += fmt.Sprintf(", all finished in %s (%s)", fmtElapsed(elapsed), fmtRate(average(c.finished(), elapsed)))
	}
	return s
}

// average is n per second over d.
func average(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// reporter shows a run's progress on stderr: a live view redrawn in place
// (a terminal), a plain line every so often (a log), or nothing; and
// writes the run's other messages to stderr between redraws, so they never
// tear the view. Its methods are safe for concurrent use.
type reporter struct {
	w       io.Writer
	service string
	live    bool
	plain   bool
	every   time.Duration
	width   func() int
	start   time.Time

	mu     sync.Mutex
	c      counts
	drawn  int // lines of the live view on the screen now
	submit meter
	finish meter
	stop   chan struct{}
	done   chan struct{}
}

// newReporter makes the reporter of a run per mode and starts its clock.
func newReporter(w io.Writer, service, mode string, terminal bool, every time.Duration, width func() int, c counts) *reporter {
	r := &reporter{w: w, service: service, every: every, width: width, start: time.Now(), c: c,
		stop: make(chan struct{}), done: make(chan struct{})}
	switch {
	case mode == progressAlways, mode == progressAuto && terminal:
		r.live, r.every = true, liveEvery
	case mode == progressPlain, mode == progressAuto:
		r.plain = every > 0
	}
	win := max(rateWindow, r.every)
	r.submit.window, r.finish.window = win, win
	r.submit.observe(r.start, 0)
	r.finish.observe(r.start, 0)
	if r.live || r.plain {
		go r.loop()
	} else {
		close(r.done)
	}
	return r
}

func (r *reporter) loop() {
	defer close(r.done)
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.mu.Lock()
			r.tick(now)
			r.mu.Unlock()
		}
	}
}

// tick samples the counts and draws them; r.mu is held.
func (r *reporter) tick(now time.Time) {
	r.submit.observe(now, r.c.Submitted+r.c.Refused)
	r.finish.observe(now, r.c.finished())
	rt := rates{r.submit.rate(), r.finish.rate()}
	if r.live {
		r.clear()
		lines := liveLines(r.service, r.c, rt, now.Sub(r.start), r.width())
		io.WriteString(r.w, strings.Join(lines, "\n"))
		r.drawn = len(lines)
		return
	}
	fmt.Fprintln(r.w, plainLine(r.service, r.c, rt, now.Sub(r.start)))
}

// clear takes the live view off the screen: the cursor ends at the start
// of its first line. r.mu is held.
func (r *reporter) clear() {
	if r.drawn == 0 {
		return
	}
	var b bytes.Buffer
	b.WriteString("\r")
	if r.drawn > 1 {
		fmt.Fprintf(&b, "\x1b[%dA", r.drawn-1)
	}
	b.WriteString("\x1b[J")
	r.w.Write(b.Bytes())
	r.drawn = 0
}

// update changes the counts under the reporter's lock.
func (r *reporter) update(f func(*counts)) {
	r.mu.Lock()
	f(&r.c)
	r.mu.Unlock()
}

// counts returns the counts now.
func (r *reporter) counts() counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

// printf writes a message line to stderr, above the live view.
func (r *reporter) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clear()
	fmt.Fprintf(r.w, format, args...)
}

// close stops the view and takes it off the screen; the summary follows.
func (r *reporter) close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
	r.mu.Lock()
	r.clear()
	r.mu.Unlock()
}

// countLines counts the lines of in when it is a regular file, from its
// current offset on, as bufio.ScanLines splits them; ok is false for
// anything else (a pipe, a terminal), which cannot be read twice. It reads
// the file once more, in large blocks: cheap beside submitting each line.
func countLines(in io.Reader) (n int, ok bool, err error) {
	f, isFile := in.(*os.File)
	if !isFile {
		return 0, false, nil
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return 0, false, nil
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, false, nil
	}
	sr := io.NewSectionReader(f, pos, st.Size()-pos)
	buf := make([]byte, 256<<10)
	last := byte('\n')
	for {
		k, err := sr.Read(buf)
		if k > 0 {
			n += bytes.Count(buf[:k], []byte{'\n'})
			last = buf[k-1]
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, false, fmt.Errorf("count lines: %w", err)
		}
	}
	if last != '\n' {
		n++ // a last line without its newline
	}
	return n, true, nil
}
