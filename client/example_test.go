package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// Call runs a job synchronously (SYNC-NAME on the wire) and streams its
// output as the worker writes it. The examples run a broker and a worker
// in the same process, on loopback ports the system picks; in production
// the client would connect to zmwsd's client endpoint
// (tcp://127.0.0.1:5555 by default).
func ExampleClient_Call() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := exampleClient(ctx, "STR-REV")
	defer c.Close()

	res, err := c.Call(ctx, "STR-REV", client.Request{Input: []byte("Hello, world")}, func(chunk []byte) error {
		fmt.Printf("partial: %s", chunk)
		return nil
	})
	if err != nil {
		log.Fatal(err) // no result: a refusal, the transport, ctx
	}
	fmt.Printf("%s: %s\n", res.Status, res.Output) // a job that ran and failed says so here
	// Output:
	// partial: reversing 12 bytes
	// complete: dlrow ,olleH
}

// Submit returns the job's ID as soon as the broker has accepted the job;
// Job then says where it is.
func ExampleClient_Submit() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := exampleClient(ctx, "STR-REV")
	defer c.Close()

	id, err := c.Submit(ctx, "STR-REV", client.Request{Input: []byte("abc")})
	if err != nil {
		log.Fatal(err)
	}
	for {
		job, err := c.Job(ctx, id)
		if err != nil {
			log.Fatal(err)
		}
		if job.State == "complete" || job.State == "failed" {
			fmt.Printf("%t %s %q\n", job.ID == id, job.State, job.Output) // all of it: partials, then the result
			break
		}
		time.Sleep(10 * time.Millisecond) // queued or active: ask again
	}
	// Output:
	// true complete "reversing 3 bytes\ncba"
}

// A service that no worker has ever offered is refused at once, never
// queued.
func ExampleClient_Submit_unknownService() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := exampleClient(ctx, "STR-REV")
	defer c.Close()

	_, err := c.Submit(ctx, "NOPE", client.Request{})
	fmt.Println(errors.Is(err, client.ErrUnknownService))
	// Output:
	// true
}

// SubmitMany keeps a window of submissions in flight and reports each
// outcome in the order of the requests.
func ExampleClient_SubmitMany() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := exampleClient(ctx, "STR-REV")
	defer c.Close()

	lines := slices.Values(strings.Fields("one two three"))
	reqs := func(yield func(client.Request) bool) {
		for l := range lines {
			if !yield(client.Request{Input: []byte(l)}) {
				return
			}
		}
	}
	err := c.SubmitMany(ctx, "STR-REV", reqs, 0, func(s client.Submitted) error {
		fmt.Println(s.Index, s.ID != "", s.Err)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// 0 true <nil>
	// 1 true <nil>
	// 2 true <nil>
}

// exampleClient runs a broker and a STR-REV worker (it reverses its input) in
// this process until ctx ends, and returns a client of the broker once the
// worker has registered: before that, the broker refuses the service as
// unknown.
func exampleClient(ctx context.Context, service string) *client.Client {
	srv, err := server.New(server.Config{
		ClientBind: "tcp://127.0.0.1:*",
		WorkerBind: "tcp://127.0.0.1:*",
		Broker:     broker.Config{Heartbeat: 100 * time.Millisecond, Liveness: 3},
	})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Run(ctx)
	w, err := worker.New(worker.Config{
		Brokers: []string{srv.WorkerEndpoint()},
		Service: service,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			in := bytes.Join(j.Input, nil) // the request's Input, one frame
			fmt.Fprintf(j, "reversing %d bytes\n", len(in))
			r := []rune(string(in))
			slices.Reverse(r)
			return []byte(string(r)), nil
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	go w.Run(ctx)

	c, err := client.New(client.Config{Broker: srv.ClientEndpoint()})
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
