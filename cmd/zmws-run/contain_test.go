//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/testbroker"
	"github.com/zmws/zmws/runner"
)

// sleepers returns the pids of the running processes whose command line is
// exactly "sleep mark".
func sleepers(mark string) []int {
	want := []byte("sleep\x00" + mark + "\x00")
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Equal(b, want) {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if i := bytes.LastIndexByte(st, ')'); err == nil && i > 0 && i+2 < len(st) && st[i+2] != 'Z' && st[i+2] != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitSleepers polls (bounded by d) until n sleepers of mark run.
func waitSleepers(t *testing.T, mark string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := len(sleepers(mark))
		if got == n {
			t.Logf("%d processes run sleep %s", got, mark)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d processes run sleep %s after %v; want %d", got, mark, d, n)
		}
		time.Sleep(20 * time.Millisecond) // polling /proc with a deadline
	}
}

// TestMain_KillNineEndsJobProcesses runs a job that forks 50 sleepers on a
// real zmws-run process, kills that process with SIGKILL, and wants all 50
// gone within seconds: nothing of a job outlives its runner.
func TestMain_KillNineEndsJobProcesses(t *testing.T) {
	if err := runner.CheckContain(); err != nil {
		t.Skipf("jobs cannot be contained here: %v", err)
	}
	mark := fmt.Sprintf("300.%06d", time.Now().UnixNano()%1e6)
	t.Cleanup(func() {
		for _, pid := range sleepers(mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	srv, c := testbroker.Start(t)
	args := []string{"--broker", srv.WorkerEndpoint(), "--heartbeat", "200ms", "--log-level", "warn", "--contain", "pid-namespace",
		"--service", "FORK", "--", "sh", "-c", "for i in $(seq 50); do sleep " + mark + " & done; echo up; wait"}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ZMWS_RUN_TEST_MAIN=1", "ZMWS_RUN_TEST_ARGS="+strings.Join(args, "\n"))
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		if st, err := c.ServiceStatus(ctx, "FORK"); err == nil && st == "200" {
			break
		}
		select {
		case <-exited:
			t.Fatalf("zmws-run exited:\n%s", logs.String())
		case <-ctx.Done():
			t.Fatalf("FORK never registered:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond): // polling a condition with a deadline
		}
	}
	go c.Call(ctx, "FORK", client.Request{}, nil)
	waitSleepers(t, mark, 50, wait)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	waitSleepers(t, mark, 0, 5*time.Second)
	if t.Failed() {
		t.Log(logs.String())
	}
}
