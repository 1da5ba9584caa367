//go:build linux

package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/proctest"
	"github.com/zmws/zmws/worker"
)

// needContain skips a test where jobs cannot be contained (not root, no
// PID namespaces in this container).
func needContain(t *testing.T) {
	t.Helper()
	if err := CheckContain(); err != nil {
		t.Skipf("jobs cannot be contained here: %v", err)
	}
}

func containedHandler(t *testing.T, s Spec) *Handler {
	t.Helper()
	return NewHandler(mustNew(t, s), Config{Logger: zerolog.New(zerolog.NewTestWriter(t)), Contain: true})
}

// sleepMark returns a sleep argument no other process has: the sleepers of
// one test are told apart in /proc by it.
func sleepMark() string {
	return fmt.Sprintf("300.%06d", time.Now().UnixNano()%1e6)
}

// A contained command's outcome is reported as an uncontained one's: its
// output, its exit code, its death by a signal, a program that cannot be
// started.
func TestContain_Outcome(t *testing.T) {
	needContain(t)
	env := childVars()
	h := containedHandler(t, Spec{Service: "ECHO", Command: Command{Args: []string{testExe(t), "echo"}}, Env: env})
	res, err := h.ServeJob(context.Background(), job(nil, "hello"))
	if err != nil || string(res) != "hello" {
		t.Errorf("echo: %q, %v", res, err)
	}
	h = containedHandler(t, Spec{Service: "EXIT", Command: Command{Args: []string{testExe(t), "exit", "3", "bad"}}, Env: env})
	_, err = h.ServeJob(context.Background(), job(nil))
	if exitCode(t, err) != 3 || !strings.Contains(err.Error(), "bad") {
		t.Errorf("exit 3: %v", err)
	}
	h = containedHandler(t, Spec{Service: "KILL", Command: Command{Args: []string{testExe(t), "killself"}}, Env: env})
	_, err = h.ServeJob(context.Background(), job(nil))
	if exitCode(t, err) != 137 || !strings.Contains(err.Error(), "SIGKILL") {
		t.Errorf("killself: %v", err)
	}
	h = containedHandler(t, Spec{Service: "NONE", Command: Command{Args: []string{"/nonexistent/zmws-prog"}}})
	_, err = h.ServeJob(context.Background(), job(nil))
	if exitCode(t, err) != ExitNotFound || !strings.Contains(err.Error(), "cannot start") {
		t.Errorf("no program: %v", err)
	}
}

// A timeout or a cancellation of a contained job ends all of it, processes
// that left its process group included, and its command gets SIGTERM first.
func TestContain_StopEndsEverything(t *testing.T) {
	needContain(t)
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{{"timeout", 500 * time.Millisecond}, {"cancel", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			mark := sleepMark()
			h := containedHandler(t, Spec{Service: "FORK", Timeout: Duration(tc.timeout), Grace: Duration(wait),
				Command: Command{Args: []string{"sh", "-c", `trap 'echo term; exit 0' TERM
for i in $(seq 50); do setsid sleep ` + mark + ` & done; echo up; wait`}}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := make(chanSink, 16)
			type result struct {
				res []byte
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := h.serve(ctx, job(nil), out.write)
				done <- result{res, err}
			}()
			if got := next(t, out); got != "up\n" {
				t.Fatalf("output %q", got)
			}
			proctest.WaitSleepers(t, mark, 50, wait)
			if tc.timeout == 0 {
				cancel()
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(wait):
				t.Fatal("job did not end")
			}
			switch {
			case tc.timeout > 0 && exitCode(t, r.err) != ExitTimeout:
				t.Errorf("err %v; want a timeout", r.err)
			case tc.timeout == 0 && !errors.Is(r.err, context.Canceled):
				t.Errorf("err %v; want cancelled", r.err)
			}
			var rest string // after "up": partials, then the result
			for more := true; more; {
				select {
				case p := <-out:
					rest += p
				default:
					more = false
				}
			}
			rest += string(r.res)
			if !strings.Contains(rest, "term") {
				t.Errorf("output after up %q: the command did not get SIGTERM", rest)
			}
			proctest.WaitSleepers(t, mark, 0, 5*time.Second)
		})
	}
}

// user = "nobody" runs the command as nobody, contained or not.
func TestContain_User(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot run a command as another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	for _, contain := range []bool{false, true} {
		if contain && CheckContain() != nil {
			continue
		}
		tm := mustNew(t, Spec{Service: "ID", User: "nobody", Command: Command{Line: "id -u"}})
		h := NewHandler(tm, Config{Logger: zerolog.New(zerolog.NewTestWriter(t)), Contain: contain})
		res, err := h.ServeJob(context.Background(), job(nil))
		if err != nil || string(res) != u.Uid+"\n" {
			t.Errorf("contain %v: id -u printed %q, %v; want %s", contain, res, err, u.Uid)
		}
	}
}

// A user that does not exist is a load error.
func TestTemplate_UnknownUser(t *testing.T) {
	_, err := New(Spec{Service: "ID", User: "zmws-no-such-user", Command: Command{Line: "id -u"}}, Defaults{})
	if err == nil || !strings.Contains(err.Error(), `user "zmws-no-such-user": no such user`) {
		t.Errorf("error %v", err)
	}
}

// An idle command is contained as a job is: stopped because a job
// started, all of it goes, what left its process group too.
func TestContain_Idle(t *testing.T) {
	needContain(t)
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	mark := sleepMark()
	i, err := NewIdle(Spec{Command: Command{Args: []string{"sh", "-c", "for i in 1 2 3; do setsid sleep " + mark + " & done; wait"}},
		Timeout: Duration(wait)}, Defaults{Grace: 100 * time.Millisecond}, Config{Logger: zerolog.New(zerolog.NewTestWriter(t)), Contain: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- i.Run(ctx) }()
	proctest.WaitSleepers(t, mark, 3, wait)
	cancel(worker.ErrJobStarted)
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
	proctest.WaitSleepers(t, mark, 0, 5*time.Second)
}
