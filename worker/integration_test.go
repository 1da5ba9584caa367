package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

const wait = 5 * time.Second

// startServer runs a real server on the given endpoints until stop is
// called or the test ends. Binding is retried for a moment: after a
// restart the old listener may still be closing.
func startServer(t *testing.T, clientEP, workerEP string, heartbeat time.Duration) (stop func()) {
	t.Helper()
	var (
		srv *server.Server
		err error
	)
	zmqtest.Eventually(t, "server.New binding "+clientEP+" and "+workerEP, wait, func() bool {
		srv, err = server.New(server.Config{
			ClientBind: clientEP, WorkerBind: workerEP,
			Broker: broker.Config{Heartbeat: heartbeat, Liveness: 3},
			Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "server").Logger(),
		})
		if err != nil {
			t.Logf("server.New: %v (retrying)", err)
		}
		return err == nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// startWorker runs a worker until the test ends.
func startWorker(t *testing.T, cfg worker.Config) {
	t.Helper()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "worker").Logger()
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	})
}

// call sends one MDPC02 request with a meta frame from a fresh DEALER and
// returns the final reply's meta, the partial chunks and the final output.
func call(t *testing.T, clientEP, service string, params map[string]string) (protocol.Meta, []string, []string) {
	t.Helper()
	sock := zmqtest.Connect(t, zmq.DEALER, clientEP)
	defer sock.Close()
	req := protocol.EncodeClient(protocol.Message{Form: protocol.Form{Version: protocol.V2}, Cmd: protocol.CmdRequest,
		Service: service, Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Params: params})}})
	zmqtest.Send(t, sock, req...)
	var partials []string
	for {
		m, err := protocol.DecodeReply(zmqtest.Recv(t, sock, wait))
		if err != nil {
			t.Fatalf("reply: %v", err)
		}
		if m.Cmd == protocol.CmdPartial {
			partials = append(partials, zmqtest.Strings(m.Body)...)
			continue
		}
		meta, rest, ok, err := protocol.SplitMeta(m.Body)
		if !ok || err != nil {
			t.Fatalf("final reply %s: meta %v %v", zmqtest.Join(m.Body), ok, err)
		}
		return meta, partials, zmqtest.Strings(rest)
	}
}

// waitIdleWorker polls SERVER-WORKERS until an idle worker offers service.
func waitIdleWorker(t *testing.T, clientEP, service string) {
	t.Helper()
	zmqtest.Eventually(t, "an idle "+service+" worker in SERVER-WORKERS", wait, func() bool {
		meta, _, out := call(t, clientEP, protocol.ServerWorkers, nil)
		var ws []protocol.WorkerInfo
		if meta.Status == protocol.StatusComplete && len(out) == 1 && json.Unmarshal([]byte(out[0]), &ws) == nil {
			for _, w := range ws {
				if w.Service == service && w.State == "idle" && w.Zmws {
					return true
				}
			}
		}
		return false
	})
}

var upper = worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
	fmt.Fprintf(j, "working on %s;", j.Params["str"])
	return fmt.Appendf(nil, "<%s>", j.Params["str"]), nil
})

func TestIntegration_RejoinsRestartedBroker(t *testing.T) {
	// Downtime 0: the worker follows the broker's DISCONNECT. 700ms: it also
	// finds the endpoint dead for longer than heartbeat*liveness and retries.
	for _, downtime := range []time.Duration{0, 700 * time.Millisecond} {
		t.Run(fmt.Sprint("downtime=", downtime), func(t *testing.T) { testRejoin(t, downtime) })
	}
}

func testRejoin(t *testing.T, downtime time.Duration) {
	clientEP, workerEP := zmqtest.FreeEndpoint(t), zmqtest.FreeEndpoint(t)
	const hb = 100 * time.Millisecond // liveness 300ms on both sides
	stop1 := startServer(t, clientEP, workerEP, hb)
	startWorker(t, worker.Config{Brokers: []string{workerEP}, Service: "UP", Handler: upper,
		Heartbeat: hb, Liveness: 3, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
	waitIdleWorker(t, clientEP, "UP")
	check := func(str string) {
		t.Helper()
		meta, partials, out := call(t, clientEP, "SYNC-UP", map[string]string{"str": str})
		if meta.Status != protocol.StatusComplete || !reflect.DeepEqual(partials, []string{"working on " + str + ";"}) ||
			!reflect.DeepEqual(out, []string{"<" + str + ">"}) {
			t.Errorf("SYNC-UP %s: %+v partials %q out %q", str, meta, partials, out)
		}
	}
	check("before")

	stop1()
	time.Sleep(downtime) // the outage being simulated, not synchronisation
	startServer(t, clientEP, workerEP, hb)
	waitIdleWorker(t, clientEP, "UP") // the new broker has never heard of UP until the worker rejoins
	check("after")
}

func TestIntegration_LongJobNotDropped(t *testing.T) {
	clientEP, workerEP := zmqtest.FreeEndpoint(t), zmqtest.FreeEndpoint(t)
	const (
		hb   = 100 * time.Millisecond
		long = time.Second // more than 3x heartbeat*liveness
	)
	startServer(t, clientEP, workerEP, hb)
	var calls atomic.Int32
	startWorker(t, worker.Config{Brokers: []string{workerEP}, Service: "SLOW", Heartbeat: hb, Liveness: 3,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			calls.Add(1)
			select {
			case <-time.After(long):
				return []byte("finished"), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})})
	waitIdleWorker(t, clientEP, "SLOW")
	t0 := time.Now()
	meta, _, out := call(t, clientEP, "SYNC-SLOW", nil)
	if meta.Status != protocol.StatusComplete || meta.Attempt != 1 || !reflect.DeepEqual(out, []string{"finished"}) {
		t.Errorf("SYNC-SLOW: %+v %q", meta, out)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
	if d := time.Since(t0); d > 2*long {
		t.Errorf("job took %v", d)
	}
}
