package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
)

// requests yields n empty requests.
func requests(n int) func(func(client.Request) bool) {
	return func(yield func(client.Request) bool) {
		for range n {
			if !yield(client.Request{Input: []byte("x")}) {
				return
			}
		}
	}
}

// offerOnce makes a service known to the broker and leaves: its jobs queue.
func offerOnce(t *testing.T, endpoint, service string) {
	t.Helper()
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetLinger(time.Second)
	if err := s.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	form := protocol.Form{Version: protocol.V2}
	for _, cmd := range []protocol.Command{protocol.CmdReady, protocol.CmdDisconnect} {
		if _, err := s.SendMessage(protocol.EncodeWorker(protocol.Message{Form: form, Cmd: cmd, Service: service})); err != nil {
			t.Fatal(err)
		}
	}
}

// A durable broker holds acceptances until their commit and refuses a full
// queue at once, so replies overtake each other: SubmitMany still reports
// every outcome for its own request, in order.
func TestSubmitMany_MatchesRepliesInOrder(t *testing.T) {
	srv, err := server.New(server.Config{
		ClientBind: "tcp://127.0.0.1:*",
		WorkerBind: "tcp://127.0.0.1:*",
		Store:      store.NewMemory(),
		Broker:     broker.Config{Heartbeat: 100 * time.Millisecond, Liveness: 5, MaxQueue: 150},
		Logger:     zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "server", srv.Run)
	offerOnce(t, srv.WorkerEndpoint(), "Q")
	c := newClient(t, srv.ClientEndpoint(), client.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The service must be known before the first submission.
	zmqtest.Eventually(t, "service Q known", 5*time.Second, func() bool {
		ss, err := c.Services(ctx)
		return err == nil && len(ss) == 1
	})

	const n = 400
	var got []client.Submitted
	err = c.SubmitMany(ctx, "Q", requests(n), 100, func(s client.Submitted) error {
		got = append(got, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d outcomes, want %d", len(got), n)
	}
	ids := map[string]bool{}
	for i, s := range got {
		switch {
		case s.Index != i:
			t.Fatalf("outcome %d has index %d", i, s.Index)
		case i < 150 && (s.Err != nil || s.ID == "" || ids[s.ID]):
			t.Fatalf("submission %d: id %q err %v, want a new job", i, s.ID, s.Err)
		case i >= 150 && !errors.Is(s.Err, client.ErrQueueFull):
			t.Fatalf("submission %d: id %q err %v, want queue full", i, s.ID, s.Err)
		}
		ids[s.ID] = true
	}
	ss, err := c.Services(ctx)
	if err != nil || len(ss) != 1 || ss[0].Queued != 150 {
		t.Fatalf("services %+v %v, want 150 queued", ss, err)
	}
	// The connection is in a clean state for the next request.
	if _, err := c.Submit(ctx, "Q", client.Request{}); !errors.Is(err, client.ErrQueueFull) {
		t.Fatalf("submit after: %v, want queue full", err)
	}
}

// A broker that never answers: every submission is reported with ErrTimeout
// after Config.Timeout, and SubmitMany returns it.
func TestSubmitMany_Timeout(t *testing.T) {
	_, ep := zmqtest.Bind(t, zmq.ROUTER)
	c, err := client.New(client.Config{Broker: ep, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var errs []error
	start := time.Now()
	err = c.SubmitMany(context.Background(), "S", requests(5), 2, func(s client.Submitted) error {
		errs = append(errs, s.Err)
		return nil
	})
	if !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("SubmitMany = %v, want ErrTimeout", err)
	}
	// The window is 2: two were sent, and both are reported.
	if len(errs) != 2 || !slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, client.ErrTimeout) }) {
		t.Fatalf("outcomes %v, want 2 timeouts", errs)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", el)
	}
}

func TestSubmitMany_RefusesSync(t *testing.T) {
	c := newClient(t, "tcp://127.0.0.1:9", client.Config{}) // never reached
	err := c.SubmitMany(context.Background(), "SYNC-S", requests(1), 0, func(client.Submitted) error { return nil })
	if !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("SubmitMany(SYNC-S) = %v, want ErrBadRequest", err)
	}
}

// A broker that accepts but echoes no reference: SubmitMany says so at the
// first reply instead of waiting out its timeout.
func TestSubmitMany_BrokerWithoutRefs(t *testing.T) {
	r, ep := zmqtest.Bind(t, zmq.ROUTER)
	done, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(done); <-stopped }() // before the socket is closed
	// Answer the first request only, as an old zmws broker would.
	go func() {
		defer close(stopped)
		p := zmq.NewPoller()
		p.Add(r, zmq.POLLIN)
		for {
			select {
			case <-done:
				return
			default:
			}
			if polled, _ := p.Poll(20 * time.Millisecond); len(polled) == 0 {
				continue
			}
			msg, err := r.RecvMessageBytes(0)
			if err != nil {
				return
			}
			reply := protocol.EncodeClient(protocol.Message{Form: protocol.Form{Version: protocol.V2}, Cmd: protocol.CmdReply,
				Service: "S", Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusAccepted, Job: "J"})}})
			r.SendMessage(append([][]byte{msg[0]}, reply...))
			return
		}
	}()
	c, err := client.New(client.Config{Broker: ep, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.SubmitMany(context.Background(), "S", requests(3), 0, func(client.Submitted) error { return nil })
	if !errors.Is(err, client.ErrBadReply) {
		t.Fatalf("SubmitMany = %v, want ErrBadReply", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("took %v: waited for the timeout", el)
	}
}
