package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/syncbuf"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/worker"
)

// childIdle returns an Idle whose command is the test binary playing the
// child in mode, and the log it writes.
func childIdle(t *testing.T, s Spec, d Defaults, mode string, args ...string) (*Idle, *syncbuf.Buffer) {
	t.Helper()
	s.Command = Command{Args: append([]string{testExe(t), mode}, args...)}
	if s.Timeout == 0 {
		s.Timeout = Duration(wait)
	}
	env := childVars()
	for k, v := range d.Env {
		env[k] = v
	}
	d.Env = env
	var logs syncbuf.Buffer
	i, err := NewIdle(s, d, Config{Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		i.Shutdown(ctx)
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return i, &logs
}

// logLines decodes the JSON lines of a log.
func logLines(t *testing.T, logs *syncbuf.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// find returns the log lines with message msg.
func find(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["message"] == msg {
			out = append(out, l)
		}
	}
	return out
}

func TestIdle_OutputToTheLog(t *testing.T) {
	t.Setenv("IDLE_TEST_SECRET", "hunter2")
	i, logs := childIdle(t, Spec{}, Defaults{Env: map[string]string{"IDLE_EXTRA": "yes"}}, "env")
	if err := i.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	lines := logLines(t, logs)
	env := map[string]bool{}
	for _, l := range find(lines, "command stdout") {
		if l["component"] != "idle" {
			t.Errorf("stdout line logged as %v", l)
		}
		env[l["stdout"].(string)] = true
	}
	if !env["IDLE_EXTRA=yes"] {
		t.Errorf("the extra environment is not there: %v", env)
	}
	for kv := range env {
		if strings.HasPrefix(kv, "ZMWS_") || strings.HasPrefix(kv, "IDLE_TEST_SECRET=") {
			t.Errorf("the idle command sees %s", kv)
		}
	}
	if done := find(lines, "idle command done"); len(done) != 1 || done[0]["elapsed"] == nil {
		t.Errorf("no idle command done with elapsed: %v", lines)
	}
}

func TestIdle_FailureLoggedWithExitCode(t *testing.T) {
	i, logs := childIdle(t, Spec{}, Defaults{}, "exit", "3", "disk full\n")
	if err := i.Run(context.Background()); exitCode(t, err) != 3 {
		t.Fatalf("Run: %v", err)
	}
	lines := logLines(t, logs)
	failed := find(lines, "idle command failed")
	if len(failed) != 1 || failed[0]["exit_code"] != 3.0 || !strings.Contains(fmt.Sprint(failed[0]["error"]), "disk full") || failed[0]["level"] != "warn" {
		t.Errorf("failure logged as %v", failed)
	}
	if s := find(lines, "command stderr"); len(s) != 1 || s[0]["stderr"] != "disk full" {
		t.Errorf("stderr logged as %v", s)
	}
}

func TestIdle_Timeout(t *testing.T) {
	i, logs := childIdle(t, Spec{Timeout: Duration(200 * time.Millisecond)}, Defaults{}, "termexit0")
	if err := i.Run(context.Background()); exitCode(t, err) != ExitTimeout {
		t.Fatalf("Run: %v", err)
	}
	if l := find(logLines(t, logs), "idle command timed out"); len(l) != 1 || l[0]["exit_code"] != float64(ExitTimeout) {
		t.Errorf("timeout logged as %v", l)
	}
}

// A job starting ends the idle command's context: its whole group goes,
// SIGTERM first and SIGKILL after the grace for what ignores it.
func TestIdle_StoppedWhenAJobStarts(t *testing.T) {
	i, logs := childIdle(t, Spec{}, Defaults{Grace: 100 * time.Millisecond}, "grandchild")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- i.Run(ctx) }()
	var pid, gpid int
	var printed []map[string]any
	zmqtest.Eventually(t, "the idle command's pids in the log", wait, func() bool {
		printed = find(logLines(t, logs), "command stdout")
		return len(printed) > 0
	})
	if _, err := fmt.Sscan(printed[0]["stdout"].(string), &pid, &gpid); err != nil {
		t.Fatal(err)
	}
	cancel(worker.ErrJobStarted)
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return when its context ended")
	}
	waitGone(t, pid, gpid)
	if l := find(logLines(t, logs), "idle command stopped"); len(l) != 1 || l[0]["reason"] != "a job started" {
		t.Errorf("stop logged as %v", l)
	}
}

func TestIdle_LogIsBounded(t *testing.T) {
	// 1,500 lines of 100 bytes: within max_output, beyond the lines logged.
	i, logs := childIdle(t, Spec{}, Defaults{}, "big", "150000")
	if err := i.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	lines := logLines(t, logs)
	if n := len(find(lines, "command stdout")); n != maxLogLines {
		t.Errorf("%d stdout lines logged, want %d", n, maxLogLines)
	}
	if l := find(lines, "command stdout lines not logged"); len(l) != 1 || l[0]["lines"] != 500.0 {
		t.Errorf("lines not logged: %v", l)
	}
}

func TestNewIdle_Refuses(t *testing.T) {
	for name, tc := range map[string]struct {
		s    Spec
		d    Defaults
		want string
	}{
		"placeholder": {Spec{Command: Command{Line: "echo {{msg}}"}, Timeout: Duration(time.Second)}, Defaults{}, "{{msg}} is a placeholder"},
		"env placeholder": {Spec{Command: Command{Line: "true"}, Timeout: Duration(time.Second)},
			Defaults{Env: map[string]string{"X": "{{x}}"}}, "{{x}} is a placeholder"},
		"shell operator": {Spec{Command: Command{Line: "sync; true"}, Timeout: Duration(time.Second)}, Defaults{}, "there is no shell"},
		"no timeout":     {Spec{Command: Command{Line: "true"}}, Defaults{}, "must be bounded"},
		"no program":     {Spec{Timeout: Duration(time.Second)}, Defaults{}, "no program"},
	} {
		if _, err := NewIdle(tc.s, tc.d, Config{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
