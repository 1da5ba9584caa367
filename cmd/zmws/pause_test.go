package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
	"github.com/zmws/zmws/worker"
)

// journaled is a broker on fixed free endpoints with a journal, which a
// test may stop and start again on the same ones.
type journaled struct {
	t              *testing.T
	cfg            server.Config
	path           string
	st             *store.Bolt
	stopServer     func() // nil while stopped
	client, worker string
}

func newJournaled(t *testing.T) *journaled {
	j := &journaled{t: t, path: filepath.Join(t.TempDir(), "zmws.db"),
		client: zmqtest.FreeEndpoint(t), worker: zmqtest.FreeEndpoint(t)}
	j.cfg = server.Config{ClientBind: j.client, WorkerBind: j.worker,
		Broker: broker.Config{Heartbeat: 100 * time.Millisecond}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)}
	j.start()
	t.Cleanup(j.stop)
	return j
}

func (j *journaled) start() {
	st, err := store.OpenBolt(j.path, store.BoltOptions{})
	if err != nil {
		j.t.Fatal(err)
	}
	j.st, j.cfg.Store = st, st
	// The last broker's sockets close in libzmq's own threads: its port may
	// still be bound for a moment after its Run returned.
	var srv *server.Server
	zmqtest.Eventually(j.t, "the broker's endpoints bound again", wait, func() bool {
		srv, err = server.New(j.cfg)
		return err == nil
	})
	j.stopServer = zmqtest.Go(j.t, "broker", srv.Run)
}

func (j *journaled) stop() {
	if j.stopServer == nil {
		return
	}
	j.stopServer()
	j.st.Close()
	j.stopServer = nil
}

func (j *journaled) rig() rig {
	return rig{client: j.client, events: "tcp://127.0.0.1:1", worker: j.worker}
}

// gated is a worker whose jobs wait for a token on gate, and say which ran.
type gated struct {
	gate chan struct{}
	mu   sync.Mutex
	ran  []string
	done chan struct{} // closed when Run returned, with err
	err  error
}

func startGated(t *testing.T, endpoint, service string) *gated {
	g := &gated{gate: make(chan struct{}, 100), done: make(chan struct{})}
	w, err := worker.New(worker.Config{Brokers: []string{endpoint}, Service: service, Heartbeat: 100 * time.Millisecond,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			g.mu.Lock()
			g.ran = append(g.ran, j.ID)
			g.mu.Unlock()
			select {
			case <-g.gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return []byte("ok"), nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { g.err = w.Run(ctx); close(g.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-g.done:
		case <-time.After(15 * time.Second):
			t.Error("worker did not stop")
		}
	})
	return g
}

func (g *gated) runs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.ran...)
}

// serviceState is service name as zmws services says, or the zero
// ServiceInfo when the broker does not know it (yet).
func serviceState(t *testing.T, r rig, name string) protocol.ServiceInfo {
	t.Helper()
	out, _, err := r.zmws(t, "", "services", "-o", "json")
	if err != nil {
		t.Fatalf("zmws services: %v", err)
	}
	var ss []protocol.ServiceInfo
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		t.Fatalf("zmws services: %v: %s", err, out)
	}
	for _, s := range ss {
		if s.Name == name {
			return s
		}
	}
	return protocol.ServiceInfo{}
}

// Pause: jobs accumulate and none is dispatched, across a broker restart;
// resume dispatches them all.
func TestCLI_PauseQueuesAcrossARestartAndResumeDrains(t *testing.T) {
	j := newJournaled(t)
	r := j.rig()
	g := startGated(t, j.worker, "SLOW")
	zmqtest.Eventually(t, "SLOW's worker ready", wait, func() bool { return serviceState(t, r, "SLOW").WorkersIdle == 1 })
	if _, _, err := r.zmws(t, "", "pause", "SLOW"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, _, err := r.zmws(t, "", "submit", "SLOW"); err != nil {
			t.Fatal(err)
		}
	}
	// A submission is answered after the broker dispatched what it could:
	// had it dispatched one, the service would say so now.
	if s := serviceState(t, r, "SLOW"); !s.Paused || s.Queued != 5 || s.Active != 0 {
		t.Fatalf("paused service %+v, want 5 queued, none active", s)
	}
	out, _, _ := r.zmws(t, "", "services")
	if !strings.Contains(out, "paused") {
		t.Fatalf("zmws services does not say paused:\n%s", out)
	}

	j.stop()
	j.start()
	zmqtest.Eventually(t, "the worker back after the restart", wait, func() bool { return serviceState(t, r, "SLOW").WorkersIdle == 1 })
	if s := serviceState(t, r, "SLOW"); !s.Paused || s.Queued != 5 || s.Active != 0 || len(g.runs()) != 0 {
		t.Fatalf("after a restart: %+v, %d runs; want still paused with 5 queued, none run", s, len(g.runs()))
	}
	if _, _, err := r.zmws(t, "", "resume", "SLOW"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		g.gate <- struct{}{}
	}
	zmqtest.Eventually(t, "the 5 queued jobs run after resume", wait, func() bool {
		s := serviceState(t, r, "SLOW")
		return s.Completed == 5 && s.Queued == 0 && !s.Paused
	})
}

// Drain of a worker: its running job finishes, it gets no new one, and
// its slot stops (Run returns); the next job waits for another worker.
func TestCLI_DrainWorkerLetsItsJobFinish(t *testing.T) {
	j := newJournaled(t)
	r := j.rig()
	g := startGated(t, j.worker, "SLOW")
	zmqtest.Eventually(t, "SLOW's worker ready", wait, func() bool { return serviceState(t, r, "SLOW").WorkersIdle == 1 })
	first, _, err := r.zmws(t, "", "submit", "SLOW")
	if err != nil {
		t.Fatal(err)
	}
	first = strings.TrimSpace(first)
	zmqtest.Eventually(t, "the first job running", wait, func() bool { return len(g.runs()) == 1 })
	out, _, err := r.zmws(t, "", "workers", "-o", "json")
	var ws []protocol.WorkerInfo
	if err != nil || json.Unmarshal([]byte(out), &ws) != nil || len(ws) != 1 {
		t.Fatalf("zmws workers: %s %v", out, err)
	}
	if _, _, err := r.zmws(t, "", "drain", ws[0].Identity); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := r.zmws(t, "", "workers"); !strings.Contains(out, "busy (draining)") {
		t.Fatalf("zmws workers does not show the drain:\n%s", out)
	}
	second, _, err := r.zmws(t, "", "submit", "SLOW")
	if err != nil {
		t.Fatal(err)
	}
	second = strings.TrimSpace(second)
	g.gate <- struct{}{}
	select {
	case <-g.done:
		if g.err != nil {
			t.Fatalf("drained worker's Run: %v", g.err)
		}
	case <-time.After(wait):
		t.Fatal("the drained worker did not stop")
	}
	if runs := g.runs(); len(runs) != 1 || runs[0] != first {
		t.Fatalf("the drained worker ran %v, want only %s", runs, first)
	}
	out, _, err = r.zmws(t, "", "job", first, "-o", "json")
	if err != nil || !strings.Contains(out, `"state": "complete"`) && !strings.Contains(out, `"state":"complete"`) {
		t.Fatalf("the running job did not finish: %s %v", out, err)
	}
	if s := serviceState(t, r, "SLOW"); s.Queued != 1 || s.Active != 0 || s.WorkersIdle+s.WorkersBusy != 0 {
		t.Fatalf("after the drain: %+v, want the second job queued and no worker", s)
	}
	g2 := startGated(t, j.worker, "SLOW")
	g2.gate <- struct{}{}
	zmqtest.Eventually(t, "the second job on the next worker", wait, func() bool {
		runs := g2.runs()
		return len(runs) == 1 && runs[0] == second
	})
}
