package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/notifytest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/store"
)

// Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC for this process) zmwsd says
// what it does while it starts, READY=1 once it serves, keep-alives from the
// broker loop after that, and STOPPING=1 when it stops.
func TestRun_NotifiesSystemd(t *testing.T) {
	n := notifytest.Listen(t, true) // systemd's own socket is abstract
	t.Setenv("WATCHDOG_USEC", "300000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--http-bind=")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	srv, _, done := start(t, ctx, cli, &logs)

	if got := n.Next(t, 10*time.Second); got != "STATUS=opening the journal "+filepath.Join(cli.DataDir, store.BoltFile) {
		t.Errorf("first notification %q, want the journal's STATUS", got)
	}
	want := "READY=1\nSTATUS=serving: clients " + srv.ClientEndpoint() + ", workers " + srv.WorkerEndpoint() + ", http off"
	if got := n.Next(t, 10*time.Second); got != want {
		t.Errorf("notification %q, want %q", got, want)
	}
	for range 3 { // every 100 ms
		if got := n.Next(t, 10*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("notification %q, want WATCHDOG=1", got)
		}
	}
	cancel()
	n.Expect(t, "STOPPING=1")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"interval":300,`) || !strings.Contains(logs.String(), `"message":"systemd watchdog on: the broker loop sends keep-alives"`) {
		t.Errorf("log lacks the watchdog: %s", logs.String())
	}
}

// Outside systemd nothing is sent and nothing fails; a watchdog meant for
// another process (WATCHDOG_PID) is not ours.
func TestRun_NoNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "300000")
	t.Setenv("WATCHDOG_PID", "1")
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--http-bind=", "--data-dir=")
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	_, _, done := start(t, ctx, cli, &logs)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := logs.String(); strings.Contains(s, "sd_notify") || strings.Contains(s, "watchdog") {
		t.Errorf("log: %s", s)
	}
}

// SIGUSR1 makes a running zmwsd write a consistent, checked copy of its
// journal to DATA_DIR/backup/zmws.db; without a journal it says so and goes
// on serving.
func TestRun_BackupOnUSR1(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--http-bind=")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	srv, _, done := start(t, ctx, cli, &logs)

	// A service and an accepted job: the reply comes once it is on disk.
	w := zmqtest.Connect(t, zmq.DEALER, srv.WorkerEndpoint())
	zmqtest.Send(t, w, []byte("MDPW02"), []byte{0x01}, []byte("ECHO"))
	c := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	zmqtest.Eventually(t, "a job accepted by ECHO", 10*time.Second, func() bool {
		zmqtest.Send(t, c, []byte("MDPC01"), []byte("ECHO"), []byte("hello"))
		reply := zmqtest.Recv(t, c, 5*time.Second)
		if len(reply) < 3 {
			t.Fatalf("submit: %s", zmqtest.Join(reply))
		}
		return string(reply[2]) != "FAIL" // FAIL: the READY is not in yet
	})

	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &logs, `"message":"journal backup written"`)
	to := filepath.Join(cli.DataDir, "backup", store.BoltFile)
	rep, err := store.Check(to, store.BoltOptions{})
	if err != nil || rep.Jobs != 1 || rep.Services != 1 {
		t.Errorf("Check(%s) = %+v, %v; want the job and its service", to, rep, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRun_BackupOnUSR1WithoutJournal(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--http-bind=", "--data-dir=")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	srv, _, done := start(t, ctx, cli, &logs)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &logs, `"message":"sigusr1: no journal to back up (--data-dir is empty)"`)
	c := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint()) // still serving
	zmqtest.Send(t, c, []byte("MDPC01"), []byte("NOPE"))
	if got := zmqtest.Recv(t, c, 5*time.Second); len(got) < 3 || string(got[2]) != "FAIL" {
		t.Errorf("reply %s", zmqtest.Join(got))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until logs hold want.
func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	zmqtest.Eventually(t, "the log line "+want, 10*time.Second, func() bool { return strings.Contains(logs.String(), want) })
}
