package runner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/testbroker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// serveTemplate runs tm as a worker of srv until the test ends and waits
// until the broker knows its service.
func serveTemplate(t *testing.T, srv *server.Server, c *client.Client, tm *Template) {
	t.Helper()
	h := newTestHandler(t, tm)
	w, err := worker.New(worker.Config{
		Brokers: []string{srv.WorkerEndpoint()}, Service: tm.Service(), Handler: h,
		Concurrency: tm.Concurrency(), Heartbeat: 200 * time.Millisecond, Liveness: 5,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "worker").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		h.Shutdown(context.Background())
	})
	qctx, stop := context.WithTimeout(context.Background(), wait)
	defer stop()
	zmqtest.Eventually(t, tm.Service()+" registered", wait, func() bool {
		st, err := c.ServiceStatus(qctx, tm.Service())
		return err == nil && st == "200"
	})
}

// zmws-run --service STR-REV -- rev, reached through a real broker.
func TestIntegration_StrRev(t *testing.T) {
	if _, err := exec.LookPath("rev"); err != nil {
		t.Skip("rev not installed")
	}
	srv, c := testbroker.Start(t)
	serveTemplate(t, srv, c, mustNew(t, Spec{Service: "STR-REV", Command: Command{Args: []string{"rev"}}}))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	res, err := c.Call(ctx, "STR-REV", client.Request{Params: map[string]string{"str": "Hello, world"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || string(res.Output) != "dlrow ,olleH\n" {
		t.Errorf("SYNC-STR-REV?str=Hello,+world: %+v, output %q", res, res.Output)
	}
	res, err = c.Call(ctx, "STR-REV", client.Request{Input: []byte("hello\n")}, nil)
	if err != nil || !res.OK() || string(res.Output) != "olleh\n" {
		t.Errorf("echo hello | zmws run STR-REV: %+v, %v", res, err)
	}
}

// A failing command's exit code and stderr reach the caller.
func TestIntegration_ExitCode(t *testing.T) {
	srv, c := testbroker.Start(t)
	serveTemplate(t, srv, c, childHandler(t, Spec{Service: "FAILS"}, "exit", "3", "it broke\n").t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := c.Call(ctx, "FAILS", client.Request{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != protocol.StatusFailed || res.ExitCode == nil || *res.ExitCode != 3 || !strings.Contains(res.Error, "it broke") {
		t.Errorf("result %+v", res)
	}
}

// The first line reaches a sync caller before the command prints the
// second: the command waits for the caller to have it.
func TestIntegration_Streams(t *testing.T) {
	srv, c := testbroker.Start(t)
	gate := filepath.Join(t.TempDir(), "gate")
	serveTemplate(t, srv, c, childHandler(t, Spec{Service: "SLOW"}, "slow", gate).t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var chunks []string
	res, err := c.Call(ctx, "SLOW", client.Request{}, func(p []byte) error {
		chunks = append(chunks, string(p))
		if string(p) == "one\n" {
			return os.WriteFile(gate, nil, 0o600)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || strings.Join(chunks, "")+string(res.Output) != "one\ntwo\n" || chunks[0] != "one\n" {
		t.Errorf("result %+v, partials %q", res, chunks)
	}
}
