package runner

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/worker"
)

// fakeTimer is a flush timer the test fires by hand.
type fakeTimer struct {
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool { t.stopped = true; return true }

// recorder collects what an output sends, one string per partial.
type recorder struct{ chunks []string }

func (r *recorder) sink(p []byte) (int, error) {
	r.chunks = append(r.chunks, string(p))
	return len(p), nil
}

func newTestOutput(max int) (*output, *recorder, *[]*fakeTimer) {
	rec := &recorder{}
	o := newOutput(rec.sink, max)
	timers := &[]*fakeTimer{}
	o.afterFunc = func(d time.Duration, f func()) stopper {
		if d != FlushDelay {
			panic(fmt.Sprintf("flush delay %v", d))
		}
		t := &fakeTimer{f: f}
		*timers = append(*timers, t)
		return t
	}
	return o, rec, timers
}

func TestOutput_Cadence(t *testing.T) {
	o, rec, timers := newTestOutput(1 << 20)
	step := func(what string, want ...string) {
		t.Helper()
		if len(want) == 0 {
			want = nil
		}
		if !reflect.DeepEqual(rec.chunks, want) {
			t.Fatalf("after %s: partials %q; want %q", what, rec.chunks, want)
		}
	}
	o.Write([]byte("ab"))
	step("a partial line")
	if len(*timers) != 1 {
		t.Fatalf("timers = %d; want one armed for the pending line", len(*timers))
	}
	o.Write([]byte("c\nd"))
	step("a newline", "abc\n")
	o.Write([]byte("e\nf\ng"))
	step("two newlines", "abc\n", "de\nf\n") // up to the last newline, in one partial
	if len(*timers) != 1 || (*timers)[0].stopped {
		t.Fatalf("the timer of the still pending bytes must stay armed: %d timers", len(*timers))
	}
	(*timers)[0].f() // FlushDelay is over
	step("the delay", "abc\n", "de\nf\n", "g")

	o.Write([]byte("h\n"))
	step("a whole line", "abc\n", "de\nf\n", "g", "h\n")
	if len(*timers) != 1 {
		t.Fatalf("a whole line needs no timer: %d timers", len(*timers))
	}

	o.Write([]byte("i"))
	o.Write([]byte("j\n"))
	step("a line in two writes", "abc\n", "de\nf\n", "g", "h\n", "ij\n")
	if len(*timers) != 2 || !(*timers)[1].stopped {
		t.Fatalf("the timer of bytes sent with their newline must be stopped")
	}

	big := bytes.Repeat([]byte("x"), 2*FlushBytes+10) // no newline
	o.Write(big)
	step("bytes", "abc\n", "de\nf\n", "g", "h\n", "ij\n", string(big[:FlushBytes]), string(big[:FlushBytes]))

	res, truncated, err := o.finish()
	if string(res) != string(big[:10]) || truncated || err != nil {
		t.Errorf("finish = %q, %v, %v; want the pending 10 bytes", res, truncated, err)
	}
	if !(*timers)[len(*timers)-1].stopped {
		t.Errorf("finish must stop the timer")
	}
	(*timers)[len(*timers)-1].f() // a timer that fires after finish sends nothing
	o.Write([]byte("late\n"))
	if len(rec.chunks) != 7 {
		t.Errorf("output after finish was sent: %q", rec.chunks[7:])
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
	o.Write([]byte("a\n"))
	o.Write([]byte("b\n"))
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
