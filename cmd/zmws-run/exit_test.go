//go:build linux

package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"golang.org/x/sys/unix"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/runner"
)

// TestMain lets the test binary play zmws-run itself (ZMWS_RUN_TEST_MAIN=1,
// its arguments in ZMWS_RUN_TEST_ARGS, one per line), so a test can watch
// the real process exit.
func TestMain(m *testing.M) {
	if runner.IsInit() {
		runner.Init()
	}
	if os.Getenv("ZMWS_RUN_TEST_MAIN") == "1" {
		oneCPU()
		os.Args = append([]string{"zmws-run"}, strings.Split(os.Getenv("ZMWS_RUN_TEST_ARGS"), "\n")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// oneCPU pins every thread of the process, libzmq's among them, to the
// first CPU it may use: the exiting main thread then competes with libzmq's
// I/O thread for one CPU, which makes the race between them (an exit before
// a DISCONNECT left) as likely as on a loaded machine. Best effort.
func oneCPU() {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return
	}
	var one unix.CPUSet
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		if tid, err := strconv.Atoi(task.Name()); err == nil {
			unix.SchedSetaffinity(tid, &one)
		}
	}
}

// TestMain_SIGTERMSaysDisconnectFromEverySlot stops a real zmws-run process
// of four slots with SIGTERM, several times: a raw ROUTER playing the broker
// must get a DISCONNECT from every slot that said READY before the process
// is gone. The process exiting before libzmq sent the DISCONNECTs lost some.
func TestMain_SIGTERMSaysDisconnectFromEverySlot(t *testing.T) {
	const (
		runs  = 8
		slots = 4
	)
	lost := 0
	for run := range runs {
		router, ep := zmqtest.Bind(t, zmq.ROUTER)
		args := []string{"--broker", ep, "--concurrency", "4", "--log-level", "warn",
			"--service", "EXIT-TEST", "--", os.Args[0]}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ZMWS_RUN_TEST_MAIN=1", "ZMWS_RUN_TEST_ARGS="+strings.Join(args, "\n"))
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		ready := map[string]bool{} // identity → said DISCONNECT
		deadline := time.Now().Add(wait)
		for len(ready) < slots {
			id, m := recvWorker(t, router, deadline)
			if m.Cmd != protocol.CmdReady {
				t.Fatalf("run %d: %v from %x before every slot was ready", run, m.Cmd, id)
			}
			ready[id] = false
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var err error
		select {
		case err = <-exited:
		case <-time.After(wait):
			cmd.Process.Kill()
			t.Fatalf("run %d: zmws-run did not exit after SIGTERM", run)
		}
		if err != nil {
			t.Fatalf("run %d: zmws-run: %v\n%s", run, err, logs.String())
		}
		// The process is gone: whatever it sent is in the ROUTER's queue
		// or on the wire by now. Read what came, for a moment.
		for more := true; more; {
			msg, ok := zmqtest.TryRecv(router, 500*time.Millisecond)
			if more = ok; !ok {
				break
			}
			m, derr := protocol.DecodeWorker(msg[1:])
			if derr == nil && m.Cmd == protocol.CmdDisconnect {
				ready[string(msg[0])] = true
			}
		}
		for id, said := range ready {
			if !said {
				lost++
				t.Logf("run %d: no DISCONNECT from slot %x", run, id)
			}
		}
		router.Close()
	}
	if lost > 0 {
		t.Errorf("%d of %d slots exited without a DISCONNECT", lost, runs*slots)
	}
}

// recvWorker receives one worker message from router by deadline.
func recvWorker(t *testing.T, router *zmq.Socket, deadline time.Time) (string, protocol.Message) {
	t.Helper()
	msg, ok := zmqtest.TryRecv(router, time.Until(deadline))
	if !ok {
		t.Fatal("no message from zmws-run in time")
	}
	m, err := protocol.DecodeWorker(msg[1:])
	if err != nil {
		t.Fatalf("from zmws-run: %v: %s", err, zmqtest.Join(msg))
	}
	return string(msg[0]), m
}
