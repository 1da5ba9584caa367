package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/worker"
)

// syncBuffer is a bytes.Buffer safe for a command writing and a test
// reading at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// addGate adds service GATE to the rig: its jobs wait until gate is
// closed, then fail with exit 2 when their input is "fail" and complete
// otherwise.
func (r rig) addGate(t *testing.T, gate <-chan struct{}) {
	t.Helper()
	w, err := worker.New(worker.Config{Brokers: []string{r.worker}, Service: "GATE", Heartbeat: 100 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if string(bytes.Join(j.Input, nil)) == "fail" {
				return nil, &worker.ExitError{Code: 2, Err: errors.New("asked to fail")}
			}
			return []byte("ok\n"), nil
		}),
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	zmqtest.Eventually(t, "GATE registered", wait, func() bool {
		out, _, err := r.zmws(t, "", "services", "-o", "json")
		return err == nil && strings.Contains(out, `"GATE"`)
	})
}

// zmwsIO runs the CLI in-process as rig.zmws does, with the given stdin
// and stderr, and --events events.
func (r rig) zmwsIO(t *testing.T, events string, stdin io.Reader, stderr io.Writer, args ...string) (string, error) {
	t.Helper()
	var cli CLI
	p, err := kong.New(&cli, kong.Name("zmws"), kong.Exit(func(int) { t.Fatalf("kong exited on %v", args) }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := p.Parse(append([]string{"--broker", r.client, "--events", events, "--timeout", "3s"}, args...))
	if err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = kctx.Run(&env{ctx: ctx, cli: &cli, stdin: stdin, stdout: &stdout, stderr: stderr})
	return stdout.String(), err
}

// progressLines are the plain progress lines of stderr.
func progressLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "progress ") {
			out = append(out, l)
		}
	}
	return out
}

var summaryRE = regexp.MustCompile(`(?m)^submitted (\d+) jobs to (\S+) in [0-9.]+s \([0-9.]+/s\), (\d+) refused(; (\d+) completed, (\d+) failed, all finished in [0-9.]+s \([0-9.]+/s\))?$`)

func TestCLI_EachLineFileProgressWithWait(t *testing.T) {
	r := newRig(t)
	gate := make(chan struct{})
	r.addGate(t, gate)
	file := filepath.Join(t.TempDir(), "lines")
	lines := []string{"a", "fail", "b", "c", "fail", "d", "e", "f", "g", "h"}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := r.zmwsIO(t, r.events, nil, &stderr, "submit", "--each-line", "--input", file, "--wait", "--progress-every", "20ms", "GATE")
		done <- result{out, err}
	}()
	// The jobs wait at the gate: the progress lines say all 10 lines of
	// the file are submitted and none finished.
	want := "progress GATE: submitted 10 of 10 lines (100%), 0 refused, "
	zmqtest.Eventually(t, "a progress line with every line submitted", wait, func() bool {
		for _, l := range progressLines(stderr.String()) {
			if strings.HasPrefix(l, want) && strings.Contains(l, "; finished 0 of 10 (0 completed, 0 failed), ") {
				return true
			}
		}
		return false
	})
	close(gate)
	res := <-done
	if res.err == nil || res.err.Error() != "2 of 10 jobs failed" {
		t.Fatalf("err %v, want 2 of 10 jobs failed; stderr:\n%s", res.err, stderr.String())
	}
	if ids := strings.Fields(res.out); len(ids) != 10 {
		t.Fatalf("stdout %q: want 10 job IDs, nothing else", res.out)
	}
	errOut := stderr.String()
	m := summaryRE.FindStringSubmatch(errOut)
	if m == nil || m[1] != "10" || m[3] != "0" || m[5] != "8" || m[6] != "2" {
		t.Fatalf("summary: %q in\n%s", m, errOut)
	}
	if !strings.HasSuffix(errOut, m[0]+"\n") {
		t.Fatalf("the summary is not the last line:\n%s", errOut)
	}
	for _, line := range []string{"line 2", "line 5"} {
		if !regexp.MustCompile(`(?m)^zmws: ` + line + `: job \w{26} failed \(.*exit 2\)`).MatchString(errOut) {
			t.Errorf("no failure line for %s:\n%s", line, errOut)
		}
	}
	// Progress counts never go past the truth: finished at most 10, of 10.
	for _, l := range progressLines(errOut) {
		if !strings.Contains(l, " of 10 (") || strings.Contains(l, "\x1b") {
			t.Errorf("progress line %q", l)
		}
	}
}

func TestCLI_EachLineFileProgressWithoutWait(t *testing.T) {
	r := newRig(t)
	file := filepath.Join(t.TempDir(), "lines")
	if err := os.WriteFile(file, []byte("a\nb\nc\nd\ne"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file) // stdin redirected from a file is counted too
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stderr syncBuffer
	out, err := r.zmwsIO(t, r.events, f, &stderr, "submit", "--each-line", "--progress", "always", "STR-REV")
	if err != nil || len(strings.Fields(out)) != 5 {
		t.Fatalf("submit: %q %v\n%s", out, err, stderr.String())
	}
	errOut := stderr.String()
	if m := summaryRE.FindStringSubmatch(errOut); m == nil || m[1] != "5" || m[3] != "0" || m[4] != "" {
		t.Fatalf("summary: %q in %q", m, errOut)
	}
	// A bar may have been drawn (--progress always); it was taken off
	// again before the summary.
	if i := strings.LastIndex(errOut, "[="); i >= 0 && !strings.Contains(errOut[i:], "\x1b[J") {
		t.Fatalf("a bar left on the screen: %q", errOut)
	}
}

func TestCLI_EachLineCountFromAPipe(t *testing.T) {
	r := newRig(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	var stderr syncBuffer
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		// --window 1: SubmitMany reports a reply before it reads on.
		out, err := r.zmwsIO(t, r.events, pr, &stderr, "submit", "--each-line", "--window", "1", "--count", "6", "--wait", "--progress", "plain",
			"--progress-every", "20ms", "--line-param", "str", "STR-REV")
		done <- result{out, err}
	}()
	io.WriteString(pw, "a\nb\nc\n")
	zmqtest.Eventually(t, "3 of 6 submitted and finished", wait, func() bool {
		for _, l := range progressLines(stderr.String()) {
			if strings.HasPrefix(l, "progress STR-REV: submitted 3 of 6 lines (50%), 0 refused, ") &&
				strings.Contains(l, "; finished 3 of 6 (3 completed, 0 failed)") {
				return true
			}
		}
		return false
	})
	io.WriteString(pw, "d\ne\nf\n")
	pw.Close()
	res := <-done
	if res.err != nil || len(strings.Fields(res.out)) != 6 {
		t.Fatalf("submit: %q %v\n%s", res.out, res.err, stderr.String())
	}
	if m := summaryRE.FindStringSubmatch(stderr.String()); m == nil || m[1] != "6" || m[5] != "6" || m[6] != "0" {
		t.Fatalf("summary: %q in\n%s", m, stderr.String())
	}
}

func TestCLI_EachLinePipeWithoutCountHasNoTotal(t *testing.T) {
	r := newRig(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := r.zmwsIO(t, r.events, pr, &stderr, "submit", "--each-line", "--window", "1", "-q", "--progress-every", "20ms", "STR-REV")
		done <- err
	}()
	io.WriteString(pw, "a\nb\n")
	zmqtest.Eventually(t, "2 submitted", wait, func() bool {
		for _, l := range progressLines(stderr.String()) {
			if strings.HasPrefix(l, "progress STR-REV: submitted 2, 0 refused, ") && !strings.Contains(l, "ETA") {
				return true
			}
		}
		return false
	})
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := summaryRE.FindStringSubmatch(stderr.String()); m == nil || m[1] != "2" {
		t.Fatalf("summary: %q", stderr.String())
	}
}

// TestCLI_EachLineWaitWithoutEvents follows the jobs by lookups alone
// when the events socket says nothing: a TCP listener that never speaks
// ZMTP.
func TestCLI_EachLineWaitWithoutEvents(t *testing.T) {
	r := newRig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stderr syncBuffer
	out, err := r.zmwsIO(t, "tcp://"+ln.Addr().String(), strings.NewReader("x\ny\n"), &stderr,
		"submit", "--each-line", "--wait", "--progress", "never", "FAIL")
	if err == nil || err.Error() != "2 of 2 jobs failed" || len(strings.Fields(out)) != 2 {
		t.Fatalf("err %v out %q\n%s", err, out, stderr.String())
	}
	errOut := stderr.String()
	if m := summaryRE.FindStringSubmatch(errOut); m == nil || m[5] != "0" || m[6] != "2" {
		t.Fatalf("summary: %q", errOut)
	}
	// Looked up, a failure has its text.
	if !strings.Contains(errOut, "(job_failed, exit 3): exit status 3: disk full") || len(progressLines(errOut)) != 0 {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestCLI_EachLineFlagErrors(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", "--wait", "STR-REV"}, "go with --each-line"},
		{[]string{"submit", "--count", "3", "STR-REV"}, "go with --each-line"},
		{[]string{"submit", "--each-line", "--count=-1", "STR-REV"}, "--count -1"},
		{[]string{"submit", "--each-line", "--progress-every", "0s", "STR-REV"}, "--progress-every 0s"},
		{[]string{"submit", "--each-line", "--progress", "fancy", "STR-REV"}, "--progress"},
	} {
		if _, _, err := r.zmws(t, "a\n", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
