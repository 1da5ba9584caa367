package client_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// startServer runs a real server on random loopback endpoints until cleanup.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{
		ClientBind: "tcp://127.0.0.1:*",
		WorkerBind: "tcp://127.0.0.1:*",
		Broker:     broker.Config{Heartbeat: 100 * time.Millisecond, Liveness: 5},
		Logger:     zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "server", srv.Run)
	return srv
}

// startRevWorker runs a raw 18/MDP zmws worker for service on its own
// goroutine, which owns its socket. It reverses the job's input (or its "str"
// parameter), streams every byte but the last as one PARTIAL each and sends
// the last with FINAL; with parameter fail=N it fails with exit code N.
func startRevWorker(t *testing.T, endpoint, service string, hb time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runRevWorker(ctx, endpoint, service, hb) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

func runRevWorker(ctx context.Context, endpoint, service string, hb time.Duration) error {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetLinger(0)
	if err := s.Connect(endpoint); err != nil {
		return err
	}
	form := protocol.Form{Version: protocol.V2}
	send := func(m protocol.Message) error {
		m.Form = form
		_, err := s.SendMessage(protocol.EncodeWorker(m))
		return err
	}
	ready := protocol.EncodeMeta(protocol.Meta{Worker: &protocol.WorkerDetails{Host: "test", Name: "rev-test"}})
	if err := send(protocol.Message{Cmd: protocol.CmdReady, Service: service, Body: [][]byte{ready}}); err != nil {
		return err
	}
	poller := zmq.NewPoller()
	poller.Add(s, zmq.POLLIN)
	nextHB := time.Now().Add(hb)
	for ctx.Err() == nil {
		if time.Now().After(nextHB) {
			if err := send(protocol.Message{Cmd: protocol.CmdHeartbeat}); err != nil {
				return err
			}
			nextHB = time.Now().Add(hb)
		}
		polled, err := poller.Poll(min(hb, 50*time.Millisecond))
		if err != nil {
			return err
		}
		if len(polled) == 0 {
			continue
		}
		frames, err := s.RecvMessageBytes(0)
		if err != nil {
			return err
		}
		m, err := protocol.DecodeWorker(frames)
		if err != nil {
			return err
		}
		if m.Cmd != protocol.CmdRequest {
			continue // heartbeats; a DISCONNECT only comes at shutdown here
		}
		meta, in, _, err := protocol.SplitMeta(m.Body)
		if err != nil {
			return err
		}
		input := []byte(meta.Params["str"])
		for _, f := range in {
			input = append(input, f...)
		}
		out := make([]byte, len(input))
		for i, c := range input {
			out[len(input)-1-i] = c
		}
		for len(out) > 1 {
			if err := send(protocol.Message{Cmd: protocol.CmdPartial, Address: m.Address, Body: [][]byte{out[:1]}}); err != nil {
				return err
			}
			out = out[1:]
		}
		final := protocol.Meta{Status: protocol.StatusComplete, ExitCode: new(int)}
		if n, ok := meta.Params["fail"]; ok {
			code, _ := strconv.Atoi(n)
			final = protocol.Meta{Status: protocol.StatusFailed, ExitCode: &code, Error: "asked to fail"}
		}
		if err := send(protocol.Message{Cmd: protocol.CmdReply, Address: m.Address, Body: [][]byte{protocol.EncodeMeta(final), out}}); err != nil {
			return err
		}
	}
	return nil
}

func TestClient_AgainstServer(t *testing.T) {
	srv := startServer(t)
	startRevWorker(t, srv.WorkerEndpoint(), "STR-REV", 100*time.Millisecond)
	c := newClient(t, srv.ClientEndpoint(), client.Config{})
	ctx := context.Background()

	zmqtest.Eventually(t, "worker registered", waitLong, func() bool {
		st, err := c.ServiceStatus(ctx, "STR-REV")
		if err != nil {
			t.Fatalf("ServiceStatus: %v", err)
		}
		return st == "200"
	})
	if st, err := c.ServiceStatus(ctx, "NOPE"); err != nil || st != "404" {
		t.Errorf("ServiceStatus(NOPE) = %q, %v; want 404", st, err)
	}

	// Async: the ID comes at once; the job is then found finished.
	id, err := c.Submit(ctx, "STR-REV", client.Request{Params: map[string]string{"str": "Hello"}})
	if err != nil || id == "" {
		t.Fatalf("Submit = %q, %v", id, err)
	}
	var job protocol.JobInfo
	zmqtest.Eventually(t, "submitted job complete", waitLong, func() bool {
		job, err = c.Job(ctx, id)
		if err != nil {
			t.Fatalf("Job(%s): %v", id, err)
		}
		return job.State == "complete"
	})
	if job.ID != id || job.Service != "STR-REV" || string(job.Output) != "olleH" {
		t.Errorf("Job = %+v, want %s with output olleH", job, id)
	}

	// Sync with partials streamed in order, then the FINAL part.
	var streamed []string
	res, err := c.Call(ctx, "STR-REV", client.Request{Input: []byte("abc")}, func(b []byte) error {
		streamed = append(streamed, string(b))
		return nil
	})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if !res.OK() || res.JobID == "" || string(res.Output) != "a" || res.ExitCode == nil || *res.ExitCode != 0 {
		t.Errorf("Call result %+v, want complete, exit 0, output a", res)
	}
	if len(streamed) != 2 || streamed[0] != "c" || streamed[1] != "b" {
		t.Errorf("partials %q, want [c b]", streamed)
	}

	// A failed job is a result, not an error; nil onPartial gathers output.
	res, err = c.Call(ctx, "SYNC:STR-REV", client.Request{Input: []byte("xyz"), Params: map[string]string{"fail": "3"}}, nil)
	if err != nil {
		t.Fatalf("failing Call: %v", err)
	}
	if res.Status != protocol.StatusFailed || res.ExitCode == nil || *res.ExitCode != 3 || string(res.Output) != "zyx" {
		t.Errorf("failing Call result %+v, want failed, exit 3, output zyx", res)
	}

	// Refusals.
	if _, err := c.Submit(ctx, "NOPE", client.Request{}); !errors.Is(err, client.ErrUnknownService) {
		t.Errorf("Submit(NOPE): %v, want ErrUnknownService", err)
	}
	if _, err := c.Call(ctx, "NOPE", client.Request{}, nil); !errors.Is(err, client.ErrUnknownService) {
		t.Errorf("Call(NOPE): %v, want ErrUnknownService", err)
	}
	if _, err := c.Job(ctx, "01NOSUCHJOB"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Job(unknown): %v, want ErrNotFound", err)
	}

	// Introspection.
	workers, err := c.Workers(ctx)
	if err != nil || len(workers) != 1 || workers[0].Service != "STR-REV" || !workers[0].Zmws || workers[0].JobsDone != 3 ||
		workers[0].Completed != 2 || workers[0].Failed != 1 {
		t.Errorf("Workers = %+v, %v; want one zmws STR-REV worker with 3 jobs done, 1 failed", workers, err)
	}
	if jobs, err := c.Jobs(ctx); err != nil || len(jobs) != 3 {
		t.Errorf("Jobs = %+v, %v; want 3 finished jobs", jobs, err)
	}
	if active, err := c.Active(ctx); err != nil || len(active) != 0 {
		t.Errorf("Active = %+v, %v; want none", active, err)
	}
	if _, err := c.Queue(ctx); err != nil {
		t.Errorf("Queue: %v", err)
	}
	services, err := c.Services(ctx)
	if err != nil || len(services) != 1 || services[0].Name != "STR-REV" || services[0].Completed != 2 || services[0].Failed != 1 {
		t.Errorf("Services = %+v, %v; want STR-REV with 2 completed, 1 failed", services, err)
	}
}

// A worker that stops says DISCONNECT and is listed gone, disconnected; one
// that dies (its socket closes, no goodbye) is listed gone too, found
// unreachable when its connection closes (or expired, on a machine too
// loaded to see that first). Workers lists neither.
func TestClient_StoppedWorkersListedGone(t *testing.T) {
	srv := startServer(t)
	c := newClient(t, srv.ClientEndpoint(), client.Config{})
	ctx := context.Background()

	w, err := worker.New(worker.Config{Brokers: []string{srv.WorkerEndpoint()}, Service: "CLEAN", Heartbeat: 100 * time.Millisecond,
		Handler: worker.HandlerFunc(func(context.Context, *worker.Job) ([]byte, error) { return nil, nil }),
		Logger:  zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	// run starts f; the func it returns stops f and returns its error.
	run := func(f func(context.Context) error) func() error {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f(ctx) }()
		stop := sync.OnceValue(func() error { cancel(); return <-done })
		t.Cleanup(func() { _ = stop() })
		return stop
	}
	stopClean := run(w.Run)
	stopDying := run(func(ctx context.Context) error {
		return runRevWorker(ctx, srv.WorkerEndpoint(), "DIES", 100*time.Millisecond)
	})
	zmqtest.Eventually(t, "both workers registered", waitLong, func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 2
	})

	for _, stop := range []func() error{stopClean, stopDying} {
		if err := stop(); err != nil {
			t.Fatalf("worker: %v", err)
		}
	}
	var all []protocol.WorkerInfo
	zmqtest.Eventually(t, "both workers gone", waitLong, func() bool {
		all, err = c.WorkersWithGone(ctx)
		if err != nil {
			t.Fatalf("WorkersWithGone: %v", err)
		}
		return len(all) == 2 && all[0].State == protocol.WorkerGone && all[1].State == protocol.WorkerGone
	})
	if all[0].Service != "CLEAN" || all[0].GoneWhy != protocol.GoneDisconnected || all[0].GoneAt.IsZero() {
		t.Errorf("the worker that stopped: %+v, want gone disconnected", all[0])
	}
	if all[1].Service != "DIES" || (all[1].GoneWhy != protocol.GoneUnreachable && all[1].GoneWhy != protocol.GoneExpired) {
		t.Errorf("the worker that died: %+v, want gone unreachable (or expired)", all[1])
	}
	if ws, err := c.Workers(ctx); err != nil || len(ws) != 0 {
		t.Errorf("Workers = %+v, %v; want none live", ws, err)
	}
}
