package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/worker"
)

const wait = 10 * time.Second

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// childHandler returns a handler whose command is the test binary playing
// the child in mode (see child in main_test.go).
func childHandler(t *testing.T, s Spec, mode string, args ...string) *Handler {
	t.Helper()
	s.Command = Command{Args: append([]string{testExe(t), mode}, args...)}
	env := childVars()
	for k, v := range s.Env {
		env[k] = v
	}
	s.Env = env
	return newTestHandler(t, mustNew(t, s))
}

func newTestHandler(t *testing.T, tm *Template) *Handler {
	return NewHandler(tm, Config{Logger: zerolog.New(zerolog.NewTestWriter(t))})
}

func job(params map[string]string, input ...string) *worker.Job {
	j := &worker.Job{ID: "01JOB", Service: "TEST", Attempt: 1, Params: params}
	if j.Params == nil {
		j.Params = map[string]string{}
	}
	for _, in := range input {
		j.Input = append(j.Input, []byte(in))
	}
	return j
}

// chanSink is a partial-output sink that hands each chunk to the test.
type chanSink chan string

func (c chanSink) write(p []byte) (int, error) { c <- string(p); return len(p), nil }

func next(t *testing.T, c chanSink) string {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(wait):
		t.Fatal("no output")
		return ""
	}
}

// gone reports whether pid has exited (a zombie counts: it no longer runs).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	zmqtest.Eventually(t, fmt.Sprintf("processes %v gone", pids), wait, func() bool {
		for _, p := range pids {
			if !gone(p) {
				return false
			}
		}
		return true
	})
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *worker.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("error %v; want a *worker.ExitError", err)
	}
	return ee.Code
}

func TestHandler_Echo(t *testing.T) {
	h := childHandler(t, Spec{}, "echo")
	res, err := h.ServeJob(context.Background(), job(nil, "hello ", "world"))
	if err != nil || string(res) != "hello world" {
		t.Errorf("ServeJob = %q, %v", res, err)
	}
}

func TestHandler_ExitCode(t *testing.T) {
	h := childHandler(t, Spec{}, "exit", "3", "boom\n")
	res, err := h.ServeJob(context.Background(), job(nil))
	if code := exitCode(t, err); code != 3 || err.Error() != "exit status 3: stderr: boom" || len(res) != 0 {
		t.Errorf("ServeJob = %q, %v", res, err)
	}

	h = childHandler(t, Spec{}, "exit", "1")
	if _, err := h.ServeJob(context.Background(), job(nil)); exitCode(t, err) != 1 || err.Error() != "exit status 1" {
		t.Errorf("exit 1, no stderr: %v", err)
	}
}

func TestHandler_Signal(t *testing.T) {
	h := childHandler(t, Spec{}, "killself")
	_, err := h.ServeJob(context.Background(), job(nil))
	if code := exitCode(t, err); code != 128+9 || !strings.Contains(err.Error(), "killed by signal SIGKILL") {
		t.Errorf("ServeJob error = %v (code %d)", err, code)
	}
}

func TestHandler_CannotStart(t *testing.T) {
	h := newTestHandler(t, mustNew(t, Spec{Command: Command{Args: []string{"/nonexistent/zmws-prog"}}}))
	if _, err := h.ServeJob(context.Background(), job(nil)); exitCode(t, err) != ExitNotFound || !strings.Contains(err.Error(), "cannot start") {
		t.Errorf("missing program: %v", err)
	}
	h = newTestHandler(t, mustNew(t, Spec{Command: Command{Line: "zmws-no-such-program-anywhere"}}))
	if _, err := h.ServeJob(context.Background(), job(nil)); exitCode(t, err) != ExitNotFound {
		t.Errorf("program not in PATH: %v", err)
	}
	noexec := filepath.Join(t.TempDir(), "data")
	os.WriteFile(noexec, []byte("not a program"), 0o644)
	h = newTestHandler(t, mustNew(t, Spec{Command: Command{Args: []string{noexec}}}))
	if _, err := h.ServeJob(context.Background(), job(nil)); exitCode(t, err) != ExitCannotRun {
		t.Errorf("not executable: %v", err)
	}
}

// The whole group ends at the timeout: the command ignores SIGTERM and so
// does the grandchild it started; SIGKILL after the grace ends both.
func TestHandler_TimeoutKillsGroup(t *testing.T) {
	const timeout = time.Second // room for the child and grandchild to start
	h := childHandler(t, Spec{Timeout: Duration(timeout), Grace: Duration(100 * time.Millisecond)}, "grandchild")
	start := time.Now()
	res, err := h.ServeJob(context.Background(), job(nil))
	elapsed := time.Since(start)
	if code := exitCode(t, err); code != ExitTimeout || !strings.Contains(err.Error(), "timed out after 1s") {
		t.Errorf("ServeJob error = %v", err)
	}
	if elapsed < timeout {
		t.Errorf("returned after %v, before the timeout", elapsed)
	}
	var pid, gpid int
	if _, err := fmt.Sscan(string(res), &pid, &gpid); err != nil {
		t.Fatalf("output %q: want the pids of the child and the grandchild (%v)", res, err)
	}
	waitGone(t, pid, gpid)
}

// A command that exits 0 on SIGTERM has still timed out.
func TestHandler_TimeoutIsFailure(t *testing.T) {
	h := childHandler(t, Spec{Timeout: Duration(200 * time.Millisecond)}, "termexit0")
	if _, err := h.ServeJob(context.Background(), job(nil)); exitCode(t, err) != ExitTimeout {
		t.Errorf("ServeJob error = %v", err)
	}
}

func TestHandler_CancelStopsGroup(t *testing.T) {
	h := childHandler(t, Spec{Grace: Duration(100 * time.Millisecond)}, "grandchild")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := make(chanSink, 10)
	done := make(chan error, 1)
	go func() {
		_, err := h.serve(ctx, job(nil), sink.write)
		done <- err
	}()
	var pid, gpid int
	if _, err := fmt.Sscan(next(t, sink), &pid, &gpid); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ServeJob error = %v; want context.Canceled, so the worker sends no result", err)
		}
	case <-time.After(wait):
		t.Fatal("ServeJob did not return after cancel")
	}
	waitGone(t, pid, gpid)
}

// When the command exits, what it left running in its group is killed.
func TestHandler_NoChildOutlivesExit(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	h := newTestHandler(t, mustNew(t, Spec{
		Command: Command{Args: []string{"sh", "-c", shellQuote(testExe(t)) + " ignoreterm & echo $!"}},
		Env:     childVars(),
	}))
	res, err := h.ServeJob(context.Background(), job(nil))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(res), &pid); err != nil {
		t.Fatalf("output %q: %v", res, err)
	}
	waitGone(t, pid)
}

func TestHandler_LargeInputNoDeadlock(t *testing.T) {
	in := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16) // 8 MiB, far beyond a pipe's buffer
	h := childHandler(t, Spec{MaxOutput: 16 << 20}, "echo")
	j := job(nil)
	j.Input = [][]byte{in[:1<<20], in[1<<20:]}
	res, err := h.ServeJob(context.Background(), j)
	if err != nil || !bytes.Equal(res, in) {
		t.Errorf("ServeJob: %d bytes back, %v; want the %d bytes sent", len(res), err, len(in))
	}
}

func TestHandler_OutputCap(t *testing.T) {
	h := childHandler(t, Spec{MaxOutput: 1000}, "big", "1000000")
	j := job(nil)
	res, err := h.ServeJob(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat(strings.Repeat("x", 99)+"\n", 10) + "\n[zmws-run: output cut at 1000 bytes, 999000 more dropped]\n"
	if string(res) != want {
		t.Errorf("output: %d bytes, ends %q", len(res), res[max(0, len(res)-80):])
	}
	if !j.OutputTruncated() {
		t.Error("output cut, but the job is not marked truncated")
	}
	// Output within the cap is not marked.
	j = job(nil)
	if _, err := childHandler(t, Spec{MaxOutput: 1000}, "big", "1000").ServeJob(context.Background(), j); err != nil || j.OutputTruncated() {
		t.Errorf("1000 bytes within a cap of 1000: truncated %v, %v", j.OutputTruncated(), err)
	}
}

// The first line reaches the caller while the command still runs: the
// child prints its second line only after the test has seen the first,
// then exits: that line is in the result, or (when the exit comes later
// than LineLinger) in a partial.
func TestHandler_StreamsWhileRunning(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	h := childHandler(t, Spec{}, "slow", gate)
	sink := make(chanSink, 10)
	type result struct {
		res []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := h.serve(context.Background(), job(nil), sink.write)
		done <- result{res, err}
	}()
	if got := next(t, sink); got != "one\n" {
		t.Fatalf("first partial %q", got)
	}
	os.WriteFile(gate, nil, 0o600)
	var r result
	select {
	case r = <-done:
	case <-time.After(wait):
		t.Fatal("the job did not end")
	}
	rest := ""
	for len(sink) > 0 {
		rest += <-sink
	}
	if r.err != nil || rest+string(r.res) != "two\n" {
		t.Errorf("then partials %q, result %q, %v; want \"two\\n\"", rest, r.res, r.err)
	}
}

// A command that prints its lines and exits within the linger sends no
// partial: its output is the job's result, one message through the broker.
func TestHandler_QuickJobOneMessage(t *testing.T) {
	h := childHandler(t, Spec{}, "echo")
	h.linger = wait // the child surely exits within it
	sink := make(chanSink, 10)
	res, err := h.serve(context.Background(), job(nil, "one\ntwo\n"), sink.write)
	if err != nil || string(res) != "one\ntwo\n" || len(sink) != 0 {
		t.Errorf("result %q, %v after %d partials; want the output in the result", res, err, len(sink))
	}
}

func TestHandler_ParamsRefusedBeforeStart(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "started")
	h := childHandler(t, Spec{Params: map[string]Param{"n": {Pattern: "[0-9]+"}}}, "touch", marker, "{{x}}", "{{n:1}}")
	for _, params := range []map[string]string{
		{},                       // x missing
		{"x": "-rf"},             // an option
		{"x": "ok", "n": "1; 2"}, // pattern
	} {
		_, err := h.ServeJob(context.Background(), job(params))
		var pe *ParamError
		if !errors.As(err, &pe) {
			t.Errorf("params %v: error %v; want a *ParamError", params, err)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("params %v: the command was started", params)
		}
	}
	res, err := h.ServeJob(context.Background(), job(map[string]string{"x": "$(touch /tmp/zmws-x); rm -rf /"}))
	if err != nil || string(res) != "$(touch /tmp/zmws-x); rm -rf / 1\n" {
		t.Errorf("ServeJob = %q, %v", res, err)
	}
}

func TestHandler_ArgsAreWords(t *testing.T) {
	h := childHandler(t, Spec{}, "args", "{{a}}", "pre {{b}} post", "{{c:x y}}")
	a, b := "one word; rm -rf / && `id` $(id) $HOME > /tmp/x", "line\nbreak 'quoted' \"double\""
	res, err := h.ServeJob(context.Background(), job(map[string]string{"a": a, "b": b}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := json.Unmarshal(res, &got); err != nil {
		t.Fatalf("output %q: %v", res, err)
	}
	if want := []string{a, "pre " + b + " post", "x y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("argv %q; want %q", got, want)
	}
}

func TestHandler_Environment(t *testing.T) {
	h := childHandler(t, Spec{Env: map[string]string{"GREETING": "hi {{name}}"}}, "env")
	h.environ = func() []string { return []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "AWS_SECRET_ACCESS_KEY=x"} }
	j := job(map[string]string{"name": "Ann", "file-name": "a.txt"})
	j.Attempt = 2
	res, err := h.ServeJob(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, kv := range strings.Split(strings.TrimSpace(string(res)), "\n") {
		got[kv] = true
	}
	for _, want := range []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "GREETING=hi Ann", "ZMWS_JOB_ID=01JOB",
		"ZMWS_SERVICE=TEST", "ZMWS_ATTEMPT=2", "ZMWS_PARAM_NAME=Ann", "ZMWS_PARAM_FILE_NAME=a.txt"} {
		if !got[want] {
			t.Errorf("environment lacks %s:\n%s", want, res)
		}
	}
	if got["AWS_SECRET_ACCESS_KEY=x"] {
		t.Errorf("a variable outside the allow-list was passed")
	}
}

func TestHandler_Workdir(t *testing.T) {
	dir, _ := filepath.EvalSymlinks(t.TempDir())
	h := childHandler(t, Spec{Workdir: dir}, "pwd")
	res, err := h.ServeJob(context.Background(), job(nil))
	if err != nil || strings.TrimSpace(string(res)) != dir {
		t.Errorf("ServeJob = %q, %v; want %s", res, err, dir)
	}
}

func TestHandler_StderrTail(t *testing.T) {
	h := childHandler(t, Spec{}, "stderr", "10000")
	_, err := h.ServeJob(context.Background(), job(nil))
	msg := err.Error()
	if exitCode(t, err) != 1 || !strings.HasPrefix(msg, "exit status 1: stderr: …") || len(msg) > StderrTail+40 {
		t.Errorf("error: %d bytes, starts %q", len(msg), msg[:min(40, len(msg))])
	}
}

func TestHandler_RealRev(t *testing.T) {
	if _, err := exec.LookPath("rev"); err != nil {
		t.Skip("rev not installed")
	}
	// zmws-run --service STR-REV -- rev
	h := newTestHandler(t, mustNew(t, Spec{Service: "STR-REV", Command: Command{Args: []string{"rev"}}}))
	res, err := h.ServeJob(context.Background(), job(map[string]string{"str": "Hello, world"}))
	if err != nil || string(res) != "dlrow ,olleH\n" {
		t.Errorf("params: ServeJob = %q, %v", res, err)
	}
	res, err = h.ServeJob(context.Background(), job(nil, "hello\n"))
	if err != nil || string(res) != "olleh\n" {
		t.Errorf("input: ServeJob = %q, %v", res, err)
	}
}

func TestHandler_Shutdown(t *testing.T) {
	h := childHandler(t, Spec{}, "hang")
	if err := h.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown with nothing running: %v", err)
	}
	h = childHandler(t, Spec{}, "hang")
	sink := make(chanSink, 10)
	done := make(chan error, 1)
	go func() {
		_, err := h.serve(context.Background(), job(nil), sink.write)
		done <- err
	}()
	next(t, sink) // running
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no more patience: kill at once
	if err := h.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v", err)
	}
	select {
	case err := <-done:
		if exitCode(t, err) != 128+9 {
			t.Errorf("killed job: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("the job did not end")
	}
	if _, err := h.ServeJob(context.Background(), job(nil)); !errors.Is(err, ErrShutdown) {
		t.Errorf("job after Shutdown: %v", err)
	}
}

func TestHandler_Concurrent(t *testing.T) {
	h := childHandler(t, Spec{}, "echo")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			in := fmt.Sprintf("job %d\n", i)
			res, err := h.ServeJob(context.Background(), job(nil, in))
			if err != nil || string(res) != in {
				t.Errorf("job %d: %q, %v", i, res, err)
			}
		})
	}
	wg.Wait()
}

// The program is looked up in PATH once, and again when PATH changes or
// when the program found is gone.
func TestHandler_ProgramLookup(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	a, b := t.TempDir(), t.TempDir()
	script := func(dir, says string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "zmws-test-prog"), []byte("#!/bin/sh\necho "+says+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", a+":"+b)
	h := newTestHandler(t, mustNew(t, Spec{Command: Command{Line: "zmws-test-prog"}}))
	says := func(what, want string) {
		t.Helper()
		res, err := h.ServeJob(context.Background(), job(nil))
		if err != nil || string(res) != want+"\n" {
			t.Errorf("%s: %q, %v; want %s", what, res, err, want)
		}
	}
	script(b, "b")
	says("found in b", "b")
	script(a, "a")
	says("a is earlier in PATH, but b is remembered", "b")
	os.Remove(filepath.Join(b, "zmws-test-prog"))
	says("b is gone", "a")
	script(b, "b")
	t.Setenv("PATH", b+":"+a)
	says("PATH changed", "b")
	os.Remove(filepath.Join(a, "zmws-test-prog"))
	os.Remove(filepath.Join(b, "zmws-test-prog"))
	if _, err := h.ServeJob(context.Background(), job(nil)); exitCode(t, err) != ExitNotFound {
		t.Errorf("program gone from PATH: %v", err)
	}
}

func TestHandler_OnSpawn(t *testing.T) {
	var mu sync.Mutex
	var got []time.Duration
	tm := mustNew(t, Spec{Service: "SPAWN", Command: Command{Args: []string{testExe(t), "echo"}},
		Env: childVars()})
	h := NewHandler(tm, Config{Logger: zerolog.New(zerolog.NewTestWriter(t)), OnSpawn: func(service string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if service != "SPAWN" {
			t.Errorf("OnSpawn for service %q", service)
		}
		got = append(got, d)
	}})
	if _, err := h.ServeJob(context.Background(), job(nil, "x")); err != nil {
		t.Fatal(err)
	}
	// A start that fails is no spawn.
	bad := NewHandler(mustNew(t, Spec{Command: Command{Args: []string{"/nonexistent/zmws-prog"}}}),
		Config{OnSpawn: func(string, time.Duration) { t.Error("OnSpawn for a command that did not start") }})
	bad.ServeJob(context.Background(), job(nil))
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] <= 0 || got[0] > wait {
		t.Errorf("spawn times %v, want one", got)
	}
}
