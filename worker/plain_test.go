package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/mdptest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// The worker and client libraries against brokers written from the
// specs (internal/mdptest), which know nothing of zmws.

const plainBeat = 50 * time.Millisecond

// shout streams "<" as a partial, then returns its input in capitals; it
// fails for input "fail".
var shout = worker.HandlerFunc(func(_ context.Context, j *worker.Job) ([]byte, error) {
	in := bytes.Join(j.Input, nil)
	if string(in) == "fail" {
		return nil, errors.New("asked to fail")
	}
	if _, err := j.Write([]byte("<")); err != nil {
		return nil, err
	}
	return bytes.ToUpper(in), nil
})

func startPlainWorker(t *testing.T, ep string, p protocol.Dialect) {
	t.Helper()
	startWorker(t, worker.Config{Brokers: []string{ep}, Service: "UP", Handler: shout, Protocol: p,
		Heartbeat: plainBeat, Liveness: 3, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})
}

func plainClient(t *testing.T, ep string, p protocol.Dialect) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Broker: ep, Protocol: p, Timeout: wait,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "client").Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func callUP(t *testing.T, c *client.Client, input string, onPartial func([]byte) error) *client.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := c.Call(ctx, "UP", client.Request{Input: []byte(input)}, onPartial)
	if err != nil {
		t.Fatalf("Call UP %q: %v", input, err)
	}
	return res
}

// In auto mode the worker's 18/MDP READY goes unanswered by a 7/MDP
// broker (which drops the header it does not know); after
// Heartbeat*Liveness the worker says READY in 7/MDP and serves. The
// client finds 7/MDP with mmi.service and gets the answer, the partial
// output ahead of the result in the one REPLY 7/MDP has.
func TestWorker_AutoFallsBackTo7MDP(t *testing.T) {
	b := mdptest.Start(t, mdptest.MDP1, plainBeat)
	startPlainWorker(t, b.Endpoint, protocol.DialectAuto)
	c := plainClient(t, b.Endpoint, protocol.DialectAuto)
	waitReady(t, b, 1)
	if b.Dropped() == 0 {
		t.Error("the 7/MDP broker dropped no 18/MDP message: the worker did not try 18/MDP first")
	}
	res := callUP(t, c, "hello", nil)
	if !res.OK() || string(res.Output) != "<HELLO" || res.JobID != "" {
		t.Errorf("result %+v, output %q; want complete <HELLO, no job ID", res, res.Output)
	}
	res = callUP(t, c, "fail", nil)
	if res.OK() || res.Code != protocol.CodeJobFailed || res.Error != "asked to fail" {
		t.Errorf("failing job: %+v", res)
	}
	// What a plain broker cannot do says so at once.
	if _, err := c.Submit(context.Background(), "UP", client.Request{}); !errors.Is(err, client.ErrUnsupported) {
		t.Errorf("Submit to a 7/MDP broker: %v, want ErrUnsupported", err)
	}
	if _, err := c.Call(context.Background(), "UP", client.Request{Params: map[string]string{"a": "1"}}, nil); !errors.Is(err, client.ErrUnsupported) {
		t.Errorf("Call with params to a 7/MDP broker: %v, want ErrUnsupported", err)
	}
	if st, err := c.ServiceStatus(context.Background(), "UP"); err != nil || st != "200" {
		t.Errorf("mmi.service UP: %q, %v", st, err)
	}
}

// Told 7/MDP, the worker never tries 18/MDP.
func TestWorker_Speaks7MDP(t *testing.T) {
	b := mdptest.Start(t, mdptest.MDP1, plainBeat)
	startPlainWorker(t, b.Endpoint, protocol.DialectMDP1)
	c := plainClient(t, b.Endpoint, protocol.DialectMDP1)
	waitReady(t, b, 1)
	for _, in := range []string{"a", "b", "c"} { // replies matched by order
		if res := callUP(t, c, in, nil); string(res.Output) != "<"+string(bytes.ToUpper([]byte(in))) {
			t.Errorf("UP %q: %+v", in, res)
		}
	}
	if n := b.Dropped(); n != 0 {
		t.Errorf("broker dropped %d messages", n)
	}
}

// A plain 18/MDP broker answers the worker's READY (its meta frame is one
// the broker ignores), sends REQUESTs without meta, and streams PARTIALs:
// the worker stays on 18/MDP, the client finds plain 18/MDP.
func TestWorker_Plain18MDP(t *testing.T) {
	b := mdptest.Start(t, mdptest.MDP2, plainBeat)
	startPlainWorker(t, b.Endpoint, protocol.DialectAuto)
	c := plainClient(t, b.Endpoint, protocol.DialectAuto)
	waitReady(t, b, 1)
	var partials []string
	res := callUP(t, c, "hello", func(p []byte) error { partials = append(partials, string(p)); return nil })
	if !res.OK() || string(res.Output) != "HELLO" || len(partials) != 1 || partials[0] != "<" {
		t.Errorf("result %+v output %q partials %q", res, res.Output, partials)
	}
	if n := b.Ready(); n != 1 {
		t.Errorf("%d READYs, want 1: the worker left 18/MDP", n)
	}
}

// An auto client that hears nothing in either protocol says so, naming
// both, instead of waiting for ever.
func TestClient_AutoNothingAnswers(t *testing.T) {
	ep := zmqtest.FreeEndpoint(t)
	c, err := client.New(client.Config{Broker: ep, Protocol: protocol.DialectAuto, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Call(context.Background(), "UP", client.Request{}, nil)
	if msg := fmt.Sprint(err); !errors.Is(err, client.ErrTimeout) || !strings.Contains(msg, "7/MDP") || !strings.Contains(msg, "18/MDP") || !strings.Contains(msg, ep) {
		t.Errorf("Call with no broker: %v", err)
	}
}

func waitReady(t *testing.T, b *mdptest.Broker, n int) {
	t.Helper()
	zmqtest.Eventually(t, "READY at the plain broker", wait, func() bool { return b.Ready() >= n })
}
