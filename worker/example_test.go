package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// A worker for STR-REV: it streams a line to synchronous callers, then
// returns the reversed parameter str as the job's result. A broker and a
// client run beside it in the same process, on loopback ports the system
// picks; in production the worker would connect to zmwsd's worker endpoint
// (tcp://127.0.0.1:5556 by default).
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clientEP, workerEP := startBroker(ctx)

	w, err := worker.New(worker.Config{
		Brokers: []string{workerEP},
		Service: "STR-REV",
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			fmt.Fprintf(j, "reversing %q\n", j.Params["str"]) // a PARTIAL, streamed to sync callers
			r := []rune(j.Params["str"])
			slices.Reverse(r)
			return []byte(string(r)), nil // the FINAL, status complete
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	go w.Run(ctx) // until ctx is cancelled

	c := newClient(ctx, clientEP, "STR-REV")
	defer c.Close()
	res, err := c.Call(ctx, "STR-REV", client.Request{Params: map[string]string{"str": "Hello, world"}},
		func(chunk []byte) error { fmt.Printf("partial: %s", chunk); return nil })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s\n", res.Status, res.Output)
	// Output:
	// partial: reversing "Hello, world"
	// complete: dlrow ,olleH
}

// A handler's error fails the job; an *ExitError also gives the job an
// exit code, which the caller sees as Result.ExitCode.
func ExampleExitError() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clientEP, workerEP := startBroker(ctx)

	w, err := worker.New(worker.Config{
		Brokers: []string{workerEP},
		Service: "CHECK",
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			if len(j.Input) == 0 {
				return nil, &worker.ExitError{Code: 2, Err: errors.New("no input")}
			}
			return []byte("ok"), nil
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	go w.Run(ctx)

	c := newClient(ctx, clientEP, "CHECK")
	defer c.Close()
	res, err := c.Call(ctx, "CHECK", client.Request{}, nil)
	if err != nil {
		log.Fatal(err) // no answer at all: a refusal, the transport, ctx
	}
	fmt.Println(res.Status == protocol.StatusFailed, *res.ExitCode, res.Error)
	// Output:
	// true 2 exit status 2: no input
}

// startBroker runs a zmws broker in this process until ctx ends, on
// loopback ports the system picks, and returns its client and worker
// endpoints.
func startBroker(ctx context.Context) (clientEP, workerEP string) {
	srv, err := server.New(server.Config{
		ClientBind: "tcp://127.0.0.1:*",
		WorkerBind: "tcp://127.0.0.1:*",
		Broker:     broker.Config{Heartbeat: 100 * time.Millisecond, Liveness: 3},
	})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Run(ctx)
	return srv.ClientEndpoint(), srv.WorkerEndpoint()
}

// newClient returns a client of the broker at endpoint once a worker of
// service has registered there: before that, the broker refuses the
// service as unknown.
func newClient(ctx context.Context, endpoint, service string) *client.Client {
	c, err := client.New(client.Config{Broker: endpoint})
	if err != nil {
		log.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st, err := c.ServiceStatus(ctx, service); err == nil && st == "200" {
			return c
		}
		if time.Now().After(deadline) {
			log.Fatalf("no worker of %s registered", service)
		}
	}
}
