package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
	"github.com/zmws/zmws/worker"
)

// The Titanic tests speak 9/TSP the way the Guide's ticlient does: over
// 7/MDP client frames on a REQ socket (its mdcliapi), written from the
// specs, not with this project's codec or client.

// tiCall sends one 7/MDP request on REQ socket c and returns the reply's
// body, after checking its header and service frames as mdcliapi does.
func tiCall(t *testing.T, c *zmq.Socket, service string, body ...string) []string {
	t.Helper()
	frames := [][]byte{b("MDPC01"), b(service)}
	for _, f := range body {
		frames = append(frames, b(f))
	}
	zmqtest.Send(t, c, frames...)
	r := zmqtest.Recv(t, c, wait)
	if len(r) < 3 || string(r[0]) != "MDPC01" || string(r[1]) != service {
		t.Fatalf("%s %q: reply %s, want MDPC01, %s, a status", service, body, zmqtest.Join(r), service)
	}
	return zmqtest.Strings(r[2:])
}

// tiStatus calls service and checks the reply's status frame.
func tiStatus(t *testing.T, c *zmq.Socket, status, service string, body ...string) []string {
	t.Helper()
	r := tiCall(t, c, service, body...)
	if r[0] != status {
		t.Fatalf("%s %q: %q, want status %s", service, body, r, status)
	}
	return r
}

// journaled runs a server on the journal at path until stop (or the end
// of the test).
func journaled(t *testing.T, path string, cfg broker.Config) (srv *server.Server, stop func()) {
	t.Helper()
	st, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 100 * time.Millisecond
	}
	srv, err = server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", Store: st,
		Broker: cfg, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	stopServer := zmqtest.Go(t, "server", srv.Run)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopServer()
			st.Close()
		})
	}
	t.Cleanup(stop)
	return srv, stop
}

// echoWorker serves echo with the worker library until the test ends; each
// job waits for a value on gate (nil: none waits) and answers its input.
func echoWorker(t *testing.T, ep string, gate <-chan struct{}) {
	t.Helper()
	w, err := worker.New(worker.Config{
		Brokers: []string{ep}, Service: "echo", Heartbeat: 100 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return []byte(strings.ToUpper(string(j.Input[0]))), nil
		}),
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "worker").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "worker", w.Run)
}

// tiReplyOnce polls titanic.reply while it says "300", as ticlient does,
// and returns the first other reply.
func tiReplyOnce(t *testing.T, c *zmq.Socket, id string) []string {
	t.Helper()
	var r []string
	zmqtest.Eventually(t, "titanic.reply other than 300", wait, func() bool {
		r = tiCall(t, c, "titanic.reply", id)
		return r[0] != "300"
	})
	return r
}

// The Guide's ticlient round against zmwsd and a real worker: request,
// "300" while the job runs, "200" and the output, close, then "400".
func TestServer_TitanicClient(t *testing.T) {
	srv, _ := journaled(t, filepath.Join(t.TempDir(), "zmws.db"), broker.Config{})
	gate := make(chan struct{})
	echoWorker(t, srv.WorkerEndpoint(), gate)
	waitService(t, srv.ClientEndpoint(), "echo")
	c := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())

	r := tiStatus(t, c, "200", "titanic.request", "echo", "Hello world")
	if len(r) != 2 || len(r[1]) != 26 {
		t.Fatalf("titanic.request: %q, want 200 and a job ID", r)
	}
	id := r[1]
	// The job is running at the worker, held there: pending.
	zmqtest.Eventually(t, "the job running", wait, func() bool {
		return strings.Contains(strings.Join(tiCall(t, c, "SERVER-ACTIVE"), ""), id)
	})
	tiStatus(t, c, "300", "titanic.reply", id)
	close(gate)
	if r = tiReplyOnce(t, c, id); len(r) != 2 || r[0] != "200" || r[1] != "HELLO WORLD" {
		t.Fatalf("titanic.reply: %q, want 200 and the output", r)
	}
	tiStatus(t, c, "200", "titanic.reply", id) // until closed, the same answer
	tiStatus(t, c, "200", "titanic.close", id)
	tiStatus(t, c, "400", "titanic.reply", id)
	tiStatus(t, c, "200", "titanic.close", id) // idempotent
}

// Bad input is answered with the spec's status and a reason, never
// silence (which would hang a REQ client).
func TestServer_TitanicBadInput(t *testing.T) {
	srv, _ := journaled(t, filepath.Join(t.TempDir(), "zmws.db"), broker.Config{})
	c := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	for _, tc := range []struct {
		status, service string
		body            []string
	}{
		{"400", "titanic.request", nil},
		{"400", "titanic.request", []string{"NOPE", "Hello world"}},
		{"400", "titanic.request", []string{"SYNC-echo", "Hello world"}},
		{"400", "titanic.reply", nil},
		{"400", "titanic.reply", []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV"}},
		{"400", "titanic.close", nil},
		{"501", "titanic.nope", []string{"x"}},
	} {
		r := tiStatus(t, c, tc.status, tc.service, tc.body...)
		if len(r) != 3 || r[1] == "" || r[2] == "" {
			t.Errorf("%s %q: %q, want a status, a code and a reason", tc.service, tc.body, r)
		}
	}
}

// The journal keeps a Titanic request across restarts: its reply is
// pending on the next broker, then its output once a worker ran it; a job
// the restarted broker holds only in the journal is answered from there;
// a close is journaled, so the next restart does not bring the job back.
func TestServer_TitanicSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zmws.db")
	srv, stop := journaled(t, path, broker.Config{})
	knownService(t, srv, "echo")
	c := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	first := tiStatus(t, c, "200", "titanic.request", "echo", "first")[1]
	second := tiStatus(t, c, "200", "titanic.request", "echo", "second")[1]
	tiStatus(t, c, "300", "titanic.reply", first)
	stop()

	srv, stop = journaled(t, path, broker.Config{})
	c = zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	tiStatus(t, c, "300", "titanic.reply", first)
	echoWorker(t, srv.WorkerEndpoint(), nil)
	if r := tiReplyOnce(t, c, first); len(r) != 2 || r[0] != "200" || r[1] != "FIRST" {
		t.Fatalf("titanic.reply after a restart: %q", r)
	}
	if r := tiReplyOnce(t, c, second); len(r) != 2 || r[0] != "200" || r[1] != "SECOND" {
		t.Fatalf("titanic.reply after a restart: %q", r)
	}
	stop()

	// History 1: the older job is in the journal only (an archive lookup).
	srv, stop = journaled(t, path, broker.Config{History: 1})
	c = zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	if r := tiStatus(t, c, "200", "titanic.reply", first); len(r) != 2 || r[1] != "FIRST" {
		t.Fatalf("titanic.reply of a job in the journal only: %q", r)
	}
	tiStatus(t, c, "200", "titanic.close", first)
	tiStatus(t, c, "200", "titanic.close", second)
	tiStatus(t, c, "400", "titanic.reply", first)
	stop()

	srv, _ = journaled(t, path, broker.Config{History: 1})
	c = zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	tiStatus(t, c, "400", "titanic.reply", first)
	tiStatus(t, c, "400", "titanic.reply", second)
}
