package runner

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/worker"
)

// fakeTimer is a flush timer the test fires by hand.
type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool { t.stopped = true; return true }

// fakeClock hands out fakeTimers and finds them for the test.
type fakeClock struct{ timers []*fakeTimer }

func (c *fakeClock) afterFunc(d time.Duration, f func()) stopper {
	t := &fakeTimer{d: d, f: f}
	c.timers = append(c.timers, t)
	return t
}

// live returns the timers of duration d that are armed.
func (c *fakeClock) live(d time.Duration) []*fakeTimer {
	var ts []*fakeTimer
	for _, t := range c.timers {
		if t.d == d && !t.stopped {
			ts = append(ts, t)
		}
	}
	return ts
}

// recorder collects what an output sends, one string per partial.
type recorder struct{ chunks []string }

func (r *recorder) sink(p []byte) (int, error) {
	r.chunks = append(r.chunks, string(p))
	return len(p), nil
}

func newTestOutput(max int) (*output, *recorder, *fakeClock) {
	rec := &recorder{}
	o := newOutput(rec.sink, max)
	clock := &fakeClock{}
	o.afterFunc = clock.afterFunc
	return o, rec, clock
}

func TestOutput_Cadence(t *testing.T) {
	o, rec, clock := newTestOutput(1 << 20)
	step := func(what string, want ...string) {
		t.Helper()
		if len(want) == 0 {
			want = nil
		}
		if !reflect.DeepEqual(rec.chunks, want) {
			t.Fatalf("after %s: partials %q; want %q", what, rec.chunks, want)
		}
	}
	// fire fires the one armed timer of duration d.
	fire := func(d time.Duration) {
		t.Helper()
		ts := clock.live(d)
		if len(ts) != 1 {
			t.Fatalf("%d armed timers of %v; want 1", len(ts), d)
		}
		ts[0].stopped = true // a time.Timer that fired is not armed
		ts[0].f()
	}
	armed := func(what string, delay, line int) {
		t.Helper()
		if d, l := len(clock.live(FlushDelay)), len(clock.live(LineLinger)); d != delay || l != line {
			t.Fatalf("after %s: %d delay and %d line timers armed; want %d and %d", what, d, l, delay, line)
		}
	}

	o.Write([]byte("ab"))
	step("a partial line")
	armed("a partial line", 1, 0)
	o.Write([]byte("c\nd"))
	step("a newline") // it lingers
	armed("a newline", 1, 1)
	o.Write([]byte("e\nf\ng"))
	step("two more newlines")
	armed("two more newlines", 1, 1) // the linger counts from the first
	fire(LineLinger)
	step("the linger", "abc\nde\nf\n") // up to the last newline, in one partial
	armed("the linger", 1, 0)          // "g" is still pending
	fire(FlushDelay)
	step("the delay", "abc\nde\nf\n", "g")
	armed("the delay", 0, 0)

	// A line that is pending when the command exits goes in the result.
	o.Write([]byte("h\n"))
	armed("a whole line", 1, 1)
	res, truncated, err := o.finish()
	if string(res) != "h\n" || truncated || err != nil {
		t.Errorf("finish = %q, %v, %v; want the pending line", res, truncated, err)
	}
	step("finish", "abc\nde\nf\n", "g")
	armed("finish", 0, 0)
	for _, tm := range clock.timers {
		tm.f() // a timer that fires after finish sends nothing
	}
	o.Write([]byte("late\n"))
	step("finish", "abc\nde\nf\n", "g")
}

// FlushBytes pending bytes go at once, newline or not.
func TestOutput_FlushBytes(t *testing.T) {
	o, rec, clock := newTestOutput(1 << 20)
	big := bytes.Repeat([]byte("x"), 2*FlushBytes+10) // no newline
	o.Write(big)
	if want := []string{string(big[:FlushBytes]), string(big[:FlushBytes])}; !reflect.DeepEqual(rec.chunks, want) {
		t.Fatalf("partials: %d; want 2 of FlushBytes", len(rec.chunks))
	}
	if len(clock.live(FlushDelay)) != 1 || len(clock.live(LineLinger)) != 0 {
		t.Fatalf("the 10 bytes left need the delay timer only")
	}
	o.Write([]byte("\n"))
	res, _, _ := o.finish()
	if string(res) != string(big[:10])+"\n" || len(rec.chunks) != 2 {
		t.Errorf("finish = %q after %d partials", res, len(rec.chunks))
	}
}

// A callback of a timer stopped while it waited for the lock sends
// nothing, and does not disarm the timer that replaced it.
func TestOutput_StaleTimer(t *testing.T) {
	o, rec, clock := newTestOutput(1 << 20)
	o.Write([]byte("a\n"))
	stale := clock.live(LineLinger)[0]
	o.mu.Lock()
	o.emit(2) // as if FlushBytes had gone: nothing pending
	o.arm()
	o.mu.Unlock()
	if !stale.stopped {
		t.Fatal("nothing pending, yet the line timer is armed")
	}
	o.Write([]byte("b\n"))
	stale.f() // it was already running when Stop was called
	if len(rec.chunks) != 1 || len(clock.live(LineLinger)) != 1 {
		t.Fatalf("a stale callback sent %q or disarmed the live timer", rec.chunks[1:])
	}
	clock.live(LineLinger)[0].f()
	if !reflect.DeepEqual(rec.chunks, []string{"a\n", "b\n"}) {
		t.Errorf("partials %q", rec.chunks)
	}
}

func TestOutput_Cap(t *testing.T) {
	o, rec, _ := newTestOutput(10)
	o.Write([]byte("12345\n6789"))
	o.Write([]byte("0abcdef\n"))
	o.Write([]byte("more\n"))
	res, truncated, _ := o.finish()
	if got := strings.Join(rec.chunks, "") + string(res); !truncated ||
		got != "12345\n6789\n[zmws-run: output cut at 10 bytes, 13 more dropped]\n" {
		t.Errorf("output %q, truncated %v", got, truncated)
	}
}

func TestOutput_GathersWithoutStream(t *testing.T) {
	var j worker.Job // not made by a Worker: Write says ErrNoStream
	o := newOutput(j.Write, 100)
	o.Write([]byte("line 1\nline"))
	o.Write([]byte(" 2\n"))
	res, _, err := o.finish()
	if string(res) != "line 1\nline 2\n" || err != nil {
		t.Errorf("finish = %q, %v", res, err)
	}
}

func TestOutput_SinkError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	o := newOutput(func(p []byte) (int, error) { calls++; return 0, boom }, 100)
	clock := &fakeClock{}
	o.afterFunc = clock.afterFunc
	o.Write([]byte("a\n"))
	clock.live(LineLinger)[0].f()
	o.Write([]byte("b\n"))
	clock.live(LineLinger)[1].f()
	if _, _, err := o.finish(); !errors.Is(err, boom) || calls != 1 {
		t.Errorf("finish error %v after %d calls; want boom after 1", err, calls)
	}
}

func TestStderrSink(t *testing.T) {
	var logs bytes.Buffer
	s := &stderrSink{log: zerolog.New(&logs)}
	s.Write([]byte("first line\nsecond"))
	s.Write([]byte(" line\r\nunterminated"))
	s.close()
	for _, want := range []string{`"stderr":"first line"`, `"stderr":"second line"`, `"stderr":"unterminated"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	if got := s.String(); got != "first line\nsecond line\r\nunterminated" {
		t.Errorf("tail = %q", got)
	}

	s = &stderrSink{log: zerolog.Nop()}
	s.Write([]byte("é" + strings.Repeat("x", StderrTail-2) + "end\n\n"))
	if got := s.String(); !strings.HasPrefix(got, "…x") || !strings.HasSuffix(got, "xend") || len(got) > StderrTail+len("…") {
		t.Errorf("cut tail = %q…%q (%d bytes)", got[:8], got[len(got)-8:], len(got))
	}

	logs.Reset()
	s = &stderrSink{log: zerolog.New(&logs)}
	s.Write([]byte(strings.Repeat("l\n", maxLogLines+5)))
	s.close()
	if n := strings.Count(logs.String(), `"stderr":"l"`); n != maxLogLines || !strings.Contains(logs.String(), `"lines":5`) {
		t.Errorf("%d lines logged; want %d and a count of 5 more", n, maxLogLines)
	}
}
