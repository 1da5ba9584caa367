package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
)

// parse reads args the way main does, defaults and env included.
func parse(t *testing.T, args ...string) CLI {
	t.Helper()
	var cli CLI
	p, err := kong.New(&cli, kong.Name("zmwsd"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return cli
}

func TestRun_ServesAndStops(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--heartbeat=50ms", "--log-level=debug")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	ready := make(chan *server.Server, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cli, &logs, func(s *server.Server) { ready <- s }) }()
	var srv *server.Server
	select {
	case srv = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	c := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	zmqtest.Send(t, c, []byte("MDPC01"), []byte("NOPE"))
	got := zmqtest.Recv(t, c, 5*time.Second)
	if len(got) != 5 || string(got[2]) != "FAIL" {
		t.Fatalf("reply %s", zmqtest.Join(got))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
	if !strings.Contains(logs.String(), `"message":"zmwsd started"`) {
		t.Fatalf("no JSON start log: %s", logs.String())
	}
}

func TestRun_Errors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-level=loud"}, "log level"},
		{[]string{"--liveness=0"}, "must be positive"},
		{[]string{"--client-bind=tcp://256.0.0.1:1"}, "bind client endpoint"},
	} {
		cli := parse(t, tc.args...)
		err := run(context.Background(), cli, &bytes.Buffer{}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestCLI_Environment(t *testing.T) {
	t.Setenv("ZMWSD_HEARTBEAT", "1s")
	t.Setenv("ZMWSD_MAX_QUEUE", "7")
	cli := parse(t)
	if cli.Heartbeat != time.Second || cli.MaxQueue != 7 || cli.ClientBind != "tcp://127.0.0.1:5555" {
		t.Fatalf("%+v", cli)
	}
}
