package server_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// The Guide's mdcliapi on a sync job that outlives its timeout: it gives
// up on its REQ socket, opens a new one (a new routing id) and sends the
// same request again. Under --dedupe-window the resend waits for the job
// the first request started, and gets its answer: the job runs once.
func TestServer_ResendFromANewSocketRunsOnce(t *testing.T) {
	srv := start(t, server.Config{Broker: broker.Config{DedupeWindow: time.Minute}})
	gate := make(chan struct{})
	var runs atomic.Int64
	w, err := worker.New(worker.Config{
		Brokers: []string{srv.WorkerEndpoint()}, Service: "echo", Heartbeat: 100 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			runs.Add(1)
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return []byte(strings.ToUpper(string(j.Input[0]))), nil
		}),
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "worker").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "worker", w.Run)
	waitService(t, srv.ClientEndpoint(), "echo")

	first := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	zmqtest.Send(t, first, b("MDPC01"), b("SYNC-echo"), b("hello"))
	zmqtest.Eventually(t, "the job running", wait, func() bool { return runs.Load() == 1 })
	if r, ok := zmqtest.TryRecv(first, 100*time.Millisecond); ok {
		t.Fatalf("an answer before the job ended: %s", zmqtest.Join(r))
	}
	first.Close() // the client's timeout: it gives up on this socket
	// The new socket is a DEALER framing as a REQ does (the empty frame
	// first), so that a query after the resend, answered first, shows
	// the broker has taken the resend in while the job still runs.
	second := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, second, b(""), b("MDPC01"), b("SYNC-echo"), b("hello"))
	zmqtest.Send(t, second, b(""), b("MDPC01"), b("SERVER-QUEUE"))
	expect(t, zmqtest.Recv(t, second, wait), "", "MDPC01", "SERVER-QUEUE", "*")
	close(gate)
	expect(t, zmqtest.Recv(t, second, wait), "", "MDPC01", "SYNC-echo", "HELLO")
	if n := runs.Load(); n != 1 {
		t.Fatalf("the job ran %d times, want once", n)
	}
}
