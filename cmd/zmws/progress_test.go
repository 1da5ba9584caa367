package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMeter_RateOverWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := meter{window: 5 * time.Second}
	if r := m.rate(); r != 0 {
		t.Fatalf("no samples: %v", r)
	}
	m.observe(t0, 0)
	if r := m.rate(); r != 0 {
		t.Fatalf("one sample: %v", r)
	}
	m.observe(t0.Add(time.Second), 100)
	m.observe(t0.Add(2*time.Second), 300)
	if r := m.rate(); r != 150 {
		t.Fatalf("0 to 300 in 2s: %v, want 150", r)
	}
	// At 10s the samples older than 5s go, but for the last one before
	// the window (2s, 300): 1000 in 8s.
	m.observe(t0.Add(10*time.Second), 1300)
	if r := m.rate(); r != 125 {
		t.Fatalf("300 to 1300 in 8s: %v, want 125 (samples %v)", r, m.samples)
	}
	m.observe(t0.Add(11*time.Second), 1300)
	m.observe(t0.Add(16*time.Second), 1300)
	if r := m.rate(); r != 0 {
		t.Fatalf("no change for 6s: %v, want 0", r)
	}
}

func TestETA(t *testing.T) {
	for _, c := range []struct {
		done, total int
		rate        float64
		want        time.Duration
		ok          bool
	}{
		{50, 100, 10, 5 * time.Second, true},
		{0, 3600, 1, time.Hour, true},
		{10, 100, 0, 0, false}, // no rate yet
		{10, -1, 5, 0, false},  // no total
		{100, 100, 5, 0, false},
		{120, 100, 5, 0, false},            // --count too small
		{99, 100, 1000, time.Second, true}, // never "ETA 0s" while some are left
	} {
		got, ok := eta(c.done, c.total, c.rate)
		if got != c.want || ok != c.ok {
			t.Errorf("eta(%d, %d, %v) = %v %v, want %v %v", c.done, c.total, c.rate, got, ok, c.want, c.ok)
		}
	}
}

func TestBar(t *testing.T) {
	for _, c := range []struct {
		done, total, width int
		want               string
	}{
		{0, 10, 12, "[>         ]"},
		{5, 10, 12, "[=====>    ]"},
		{9, 10, 12, "[=========>]"},
		{10, 10, 12, "[==========]"},
		{15, 10, 12, "[==========]"},
		{1, 3, 5, "[=> ]"},
	} {
		if got := bar(c.done, c.total, c.width); got != c.want || len(got) != c.width {
			t.Errorf("bar(%d, %d, %d) = %q, want %q", c.done, c.total, c.width, got, c.want)
		}
	}
}

func TestFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 1400 * time.Millisecond: "1s", 42 * time.Second: "42s", 5*time.Minute + 3*time.Second: "5m03s",
		2*time.Hour + 7*time.Minute + 59*time.Second: "2h08m",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for r, want := range map[float64]string{0: "0/s", 0.25: "0.2/s", 3.14: "3.1/s", 10: "10/s", 1234.6: "1235/s"} {
		if got := fmtRate(r); got != want {
			t.Errorf("fmtRate(%v) = %q, want %q", r, got, want)
		}
	}
}

func TestLiveLines(t *testing.T) {
	c := counts{Total: 10000, Submitted: 4490, Refused: 10, Wait: true, Completed: 2990, Failed: 10, Reading: true}
	r := rates{Submit: 1000, Finish: 500}
	got := liveLines("STR-REV", c, r, 4*time.Second, 100)
	want := []string{
		// 4,500 of 10,000 read at 1,000/s: 5.5 s to go; the lines fill
		// the width but its last column, the bars take what is left.
		"submit STR-REV [=================>                    ] 4500/10000  45%  1000/s  ETA 6s  10 refused",
		// 3,000 of the 9,990 to wait for at 500/s: 14 s to go.
		"done           [==========>                         ] 3000/9990  2990 ok, 10 failed  500/s  ETA 14s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range []int{100, 60, 30, 5} {
		for _, l := range liveLines("STR-REV", c, r, 4*time.Second, w) {
			if len(l) > w-1 && w > 1 {
				t.Errorf("width %d: %q is %d wide", w, l, len(l))
			}
		}
	}
	// Narrow: no room for a bar, the numbers stay; narrower, the last
	// ones go whole.
	if got := liveLines("STR-REV", c, r, 4*time.Second, 40)[0]; got != "submit STR-REV 4500/10000  45%  1000/s" {
		t.Fatalf("width 40: %q", got)
	}
	if got := liveLines("STR-REV", c, r, 4*time.Second, 60)[0]; got != "submit STR-REV 4500/10000  45%  1000/s  ETA 6s  10 refused" {
		t.Fatalf("width 60: %q", got)
	}
	// A pipe: no total, no bar, no ETA: count, rate and elapsed; the
	// jobs to wait for are those submitted so far, without an end.
	pipe := counts{Total: -1, Submitted: 700, Wait: true, Completed: 600, Reading: true}
	got = liveLines("S", pipe, rates{Submit: 70, Finish: 60}, 10*time.Second, 80)
	if got[0] != "submit S 700  70/s  10s" || got[1] != "done     600  600 ok, 0 failed  60/s  10s" {
		t.Fatalf("pipe: %q", got)
	}
	// Once read, the jobs to wait for are known: a bar and an ETA.
	pipe.Reading, pipe.Total, pipe.SubmitTime = false, 700, 4*time.Second
	got = liveLines("S", pipe, rates{Submit: 3, Finish: 50}, 10*time.Second, 72)
	// The submissions are over: their average rate and time, not the
	// recent rate falling towards 0.
	if got[0] != "submit S [===================================] 700/700  100%  175/s  4s" {
		t.Fatalf("pipe, read: %q", got[0])
	}
	if got[1] != "done     [=================>  ] 600/700  600 ok, 0 failed  50/s  ETA 2s" {
		t.Fatalf("pipe, read: %q", got[1])
	}
}

func TestPlainAndSummaryLines(t *testing.T) {
	c := counts{Total: 10000, Submitted: 4490, Refused: 10, Reading: true}
	r := rates{Submit: 1000, Finish: 500}
	if got, want := plainLine("STR-REV", c, r, 4500*time.Millisecond),
		"progress STR-REV: submitted 4490 of 10000 lines (45%), 10 refused, 1000/s, ETA 6s; elapsed 4.50s"; got != want {
		t.Errorf("plain:\n got %s\nwant %s", got, want)
	}
	c.Wait, c.Completed, c.Failed = true, 2990, 10
	if got, want := plainLine("STR-REV", c, r, 4500*time.Millisecond),
		"progress STR-REV: submitted 4490 of 10000 lines (45%), 10 refused, 1000/s, ETA 6s; finished 3000 of 9990 (2990 completed, 10 failed), 500/s, ETA 14s; elapsed 4.50s"; got != want {
		t.Errorf("plain, --wait:\n got %s\nwant %s", got, want)
	}
	over := counts{Total: 10, Submitted: 10, SubmitTime: 2 * time.Second, Wait: true, Completed: 4}
	if got, want := plainLine("S", over, rates{Submit: 1, Finish: 2}, 5*time.Second),
		"progress S: submitted 10 of 10 lines (100%), 0 refused, in 2.00s (5.0/s); finished 4 of 10 (4 completed, 0 failed), 2.0/s, ETA 3s; elapsed 5.00s"; got != want {
		t.Errorf("plain, all submitted:\n got %s\nwant %s", got, want)
	}
	pipe := counts{Total: -1, Submitted: 700, Reading: true}
	if got, want := plainLine("S", pipe, rates{Submit: 70}, 10*time.Second),
		"progress S: submitted 700, 0 refused, 70/s; elapsed 10.00s"; got != want {
		t.Errorf("plain, a pipe:\n got %s\nwant %s", got, want)
	}
	done := counts{Total: 100, Submitted: 98, Refused: 2, Wait: true, Completed: 90, Failed: 7, Unknown: 1}
	if got, want := summaryLine("S", done, 2*time.Second, 5*time.Second),
		"submitted 98 jobs to S in 2.00s (49/s), 2 refused; 90 completed, 7 failed, 1 unknown, all finished in 5.00s (20/s)"; got != want {
		t.Errorf("summary, --wait:\n got %s\nwant %s", got, want)
	}
	done.Wait = false
	if got, want := summaryLine("S", done, 2*time.Second, 5*time.Second), "submitted 98 jobs to S in 2.00s (49/s), 2 refused"; got != want {
		t.Errorf("summary:\n got %s\nwant %s", got, want)
	}
}

func TestCountLines(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]int{"": 0, "a": 1, "a\n": 1, "a\nb\nc": 3, "a\n\nb\n": 3, "\n\n": 2, "x\r\ny\r\n": 2} {
		p := filepath.Join(dir, "in")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		n, ok, err := countLines(f)
		f.Close()
		if n != want || !ok || err != nil {
			t.Errorf("countLines(%q) = %d %v %v, want %d", body, n, ok, err, want)
		}
	}
	// From where the file stands (stdin a script read part of), and the
	// offset stays.
	p := filepath.Join(dir, "part")
	os.WriteFile(p, []byte("header\na\nb\n"), 0o600)
	f, _ := os.Open(p)
	defer f.Close()
	f.Seek(7, 0)
	if n, ok, err := countLines(f); n != 2 || !ok || err != nil {
		t.Errorf("from offset 7: %d %v %v, want 2", n, ok, err)
	}
	if off, _ := f.Seek(0, 1); off != 7 {
		t.Errorf("offset moved to %d", off)
	}
	// A pipe cannot be counted.
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	defer pw.Close()
	if _, ok, err := countLines(pr); ok || err != nil {
		t.Errorf("a pipe: counted (%v %v)", ok, err)
	}
	if _, ok, _ := countLines(strings.NewReader("a\n")); ok {
		t.Error("a reader that is no file: counted")
	}
}

func TestReporter_LiveRedrawsInPlace(t *testing.T) {
	var out strings.Builder
	t0 := time.Unix(1000, 0)
	r := &reporter{w: &out, service: "S", live: true, width: func() int { return 64 }, start: t0,
		c: counts{Total: 10, Wait: true, Reading: true}, stop: make(chan struct{}), done: make(chan struct{})}
	r.submit.window, r.finish.window = rateWindow, rateWindow
	r.submit.observe(t0, 0)
	r.finish.observe(t0, 0)
	close(r.done) // no loop: the test ticks
	r.update(func(c *counts) { c.Submitted = 5; c.Completed = 2 })
	r.tick(t0.Add(time.Second))
	first := "submit S [=============>             ] 5/10  50%  5.0/s  ETA 1s\n" +
		"done     [===>            ] 2/10  2 ok, 0 failed  2.0/s  ETA 4s"
	if out.String() != first {
		t.Fatalf("first draw:\n%q\nwant\n%q", out.String(), first)
	}
	// A message takes the two lines off (up one, clear below) and goes
	// where they were; the next tick draws them under it.
	r.printf("zmws: line 3 refused\n")
	r.tick(t0.Add(2 * time.Second))
	if got := strings.TrimPrefix(out.String(), first); !strings.HasPrefix(got, "\r\x1b[1A\x1b[Jzmws: line 3 refused\nsubmit S [") {
		t.Fatalf("after a message: %q", got)
	}
	out.Reset()
	r.close()
	if out.String() != "\r\x1b[1A\x1b[J" {
		t.Fatalf("close: %q, want the view cleared", out.String())
	}
}
