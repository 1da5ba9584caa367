package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/proctest"
	"github.com/zmws/zmws/internal/syncbuf"
	"github.com/zmws/zmws/internal/testbroker"
	"github.com/zmws/zmws/internal/zmqtest"
)

// TestRun_IdleCommand, with real processes: the idle command runs once the
// services have been quiet for --idle-after; a job that arrives while it
// runs does not wait for it, and the idle command is stopped (it ignores
// SIGTERM, so it lasts until SIGKILL after --kill-grace, the job's
// answer long before); it runs again after the next quiet period; its
// output is in the log; and zmws-run stopping stops it too.
func TestRun_IdleCommand(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	srv, c := testbroker.Start(t)
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	mark := fmt.Sprintf("300.%06d", time.Now().UnixNano()%1e6) // this test's sleeps, in /proc
	var logs syncbuf.Buffer
	stop := startLog(t, srv, c, &logs, []string{
		"--idle-command", `sh -c 'trap "" TERM; echo idle-run; echo run >> ` + runs + "; exec sleep " + mark + "'",
		"--idle-after", "200ms", "--idle-timeout", "1m", "--kill-grace", "3s",
		"--service", "SAY", "--", "echo", "{{msg}}"}, "SAY")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zmws-run's log:\n%s", logs.String())
		}
	})
	countRuns := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run\n")
	}

	proctest.WaitSleepers(t, mark, 1, wait)
	if n := countRuns(); n != 1 {
		t.Fatalf("%d idle runs, want 1", n)
	}

	// A job while the idle command runs: answered while the idle command,
	// deaf to SIGTERM, still waits for its SIGKILL.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := c.Call(ctx, "SAY", client.Request{Params: map[string]string{"msg": "hi"}}, nil)
	if err != nil || !res.OK() || string(res.Output) != "hi\n" {
		t.Fatalf("SAY: %+v, %v", res, err)
	}
	if n := len(proctest.Sleepers(mark)); n != 1 {
		t.Errorf("the idle command is gone (%d sleepers) when the job is answered: the job waited for it", n)
	}
	proctest.WaitSleepers(t, mark, 0, wait) // SIGKILL after the grace
	waitLog(t, &logs, "idle command stopped", "a job started")

	// A further quiet period: it runs again.
	proctest.WaitSleepers(t, mark, 1, wait)
	if n := countRuns(); n != 2 {
		t.Errorf("%d idle runs, want 2", n)
	}
	waitLog(t, &logs, "command stdout", "idle-run")

	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	proctest.WaitSleepers(t, mark, 0, wait)
	waitLog(t, &logs, "idle command stopped", "zmws-run stopping")
}

// waitLog waits (bounded) for a log line with message msg and a field
// holding value.
func waitLog(t *testing.T, logs *syncbuf.Buffer, msg, value string) {
	t.Helper()
	zmqtest.Eventually(t, fmt.Sprintf("a %q line with %q in the log", msg, value), wait, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) != nil || m["message"] != msg {
				continue
			}
			for _, v := range m {
				if v == value {
					return true
				}
			}
		}
		return false
	})
}
