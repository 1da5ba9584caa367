//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/proctest"
	"github.com/zmws/zmws/internal/testbroker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/runner"
)

// TestMain_KillNineEndsJobProcesses runs a job that forks 50 sleepers on a
// real zmws-run process, kills that process with SIGKILL, and wants all 50
// gone within seconds: nothing of a job outlives its runner.
func TestMain_KillNineEndsJobProcesses(t *testing.T) {
	if err := runner.CheckContain(); err != nil {
		t.Skipf("jobs cannot be contained here: %v", err)
	}
	mark := fmt.Sprintf("300.%06d", time.Now().UnixNano()%1e6)
	t.Cleanup(func() {
		for _, pid := range proctest.Sleepers(mark) {
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
	t.Cleanup(func() { // after the one below: logs is complete once the process exited
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	zmqtest.Eventually(t, "FORK registered", wait, func() bool {
		select {
		case <-exited:
			t.Fatal("zmws-run exited")
		default:
		}
		st, err := c.ServiceStatus(ctx, "FORK")
		return err == nil && st == "200"
	})
	go c.Call(ctx, "FORK", client.Request{}, nil)
	proctest.WaitSleepers(t, mark, 50, wait)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	proctest.WaitSleepers(t, mark, 0, 5*time.Second)
}
