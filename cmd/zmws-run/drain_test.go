package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/internal/syncbuf"
	"github.com/zmws/zmws/internal/testbroker"
	"github.com/zmws/zmws/internal/zmqtest"
)

// Draining every slot of a zmws-run (zmws drain HOST:PID) stops it: run
// returns nil on its own, and the log says why.
func TestRun_StopsOnceEverySlotIsDrained(t *testing.T) {
	srv, c := testbroker.Start(t)
	var logs syncbuf.Buffer
	cli := parse(t, "--broker", srv.WorkerEndpoint(), "--heartbeat", "200ms", "--concurrency", "2",
		"--jobs-dir", "../../examples/jobs.d", "--only", "SAY", "--only", "SLEEP")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cli, &bytes.Buffer{}, &logs) }()
	zmqtest.Eventually(t, "6 slots ready (SAY 2, SLEEP 4: its template says concurrency = 4)", wait, func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 6
	})
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	drained, err := c.DrainWorker(ctx, fmt.Sprintf("%s:%d", host, os.Getpid()))
	if err != nil || len(drained) != 6 {
		t.Fatalf("drain: %+v, %v", drained, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after the drain: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("zmws-run did not stop once drained")
	}
	if !strings.Contains(logs.String(), "every slot was drained by the broker") {
		t.Errorf("the log does not say why zmws-run stopped:\n%s", logs.String())
	}
}
