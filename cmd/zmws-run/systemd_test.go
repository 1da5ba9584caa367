package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/notifytest"
	"github.com/zmws/zmws/internal/testbroker"
	"github.com/zmws/zmws/internal/zmqtest"
)

// Under systemd zmws-run says READY=1 once every slot of every service has
// sent its READY, and STOPPING=1 when it stops.
func TestRun_NotifiesSystemd(t *testing.T) {
	n := notifytest.Listen(t, false)
	srv, c := testbroker.Start(t)
	stop := start(t, srv, c, []string{"--jobs-dir", "../../examples/jobs.d", "--only", "SAY", "--only", "SLEEP"}, "SAY", "SLEEP")
	want := "READY=1\nSTATUS=serving SAY, SLEEP (5 slots) for " + srv.WorkerEndpoint()
	if got := n.Next(t, wait); got != want {
		t.Errorf("notification %q, want %q", got, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := n.Next(t, wait); got != "STOPPING=1\nSTATUS=stopping: running jobs may finish for --grace 10s" {
		t.Errorf("notification %q, want STOPPING=1", got)
	}
}

// READY=1 does not wait for a broker: a worker on another host must start
// (and stay started) while its broker is away.
func TestRun_ReadyWithoutBroker(t *testing.T) {
	n := notifytest.Listen(t, true)
	cli := parse(t, "--broker", zmqtest.FreeEndpoint(t), "--service", "SAY", "--", "echo", "{{msg}}")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cli, &bytes.Buffer{}, zerolog.NewTestWriter(t)) }()
	if got := n.Next(t, wait); got != "READY=1\nSTATUS=serving SAY (1 slot) for "+cli.Broker[0] {
		t.Errorf("notification %q", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("run did not stop")
	}
	n.Expect(t, "STOPPING=1")
}

func TestServingStatus(t *testing.T) {
	for _, tc := range []struct {
		services []string
		slots    int
		want     string
	}{
		{[]string{"A"}, 1, "STATUS=serving A (1 slot) for tcp://b1:5556, tcp://b2:5556"},
		{[]string{"A", "B", "C", "D", "E", "F", "G"}, 9, "STATUS=serving A, B, C, D, E and 2 more (9 slots) for tcp://b1:5556, tcp://b2:5556"},
	} {
		if got := servingStatus(tc.services, tc.slots, []string{"tcp://b1:5556", "tcp://b2:5556"}); got != tc.want {
			t.Errorf("servingStatus(%v, %d) = %q, want %q", tc.services, tc.slots, got, tc.want)
		}
	}
}
