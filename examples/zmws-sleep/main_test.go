package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/worker"
)

func TestParseSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"1", 1, true}, {"0", 0, true}, {"0.25", 0.25, true}, {" 2 ", 2, true}, {"3600", 3600, true},
		{"3600.5", 0, false}, {"-1", 0, false}, {"", 0, false}, {"abc", 0, false},
		{"NaN", 0, false}, {"Inf", 0, false}, {"1s", 0, false},
	} {
		got, err := parseSeconds(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSeconds(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "seconds must be a number from 0 to 3600") {
			t.Errorf("parseSeconds(%q): unclear error %q", tc.in, err)
		}
	}
}

func TestServe(t *testing.T) {
	out, err := serve(context.Background(), &worker.Job{Params: map[string]string{"seconds": "0.01"}})
	if err != nil || string(out) != "slept 0.01s" {
		t.Errorf("serve = %q, %v", out, err)
	}
	if _, err := serve(context.Background(), &worker.Job{Params: map[string]string{"seconds": "-3"}}); err == nil {
		t.Error("negative seconds accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// No parameter: the default second, cut short by the cancelled ctx.
	if _, err := serve(ctx, &worker.Job{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled serve = %v", err)
	}
}

func TestFlags(t *testing.T) {
	parse := func(args ...string) CLI {
		t.Helper()
		var cli CLI
		p, err := kong.New(&cli)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse(args); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		return cli
	}
	t.Setenv("ZMWS_WORKER_BROKER", "") // restored at the end...
	os.Unsetenv("ZMWS_WORKER_BROKER")  // ...and unset meanwhile
	if c := parse(); len(c.Broker) != 1 || c.Broker[0] != "tcp://127.0.0.1:5556" || c.Service != "SLEEP" || c.Concurrency != 1 {
		t.Errorf("defaults: %+v", c)
	}
	if c := parse("--broker", "tcp://a:1", "--broker", "tcp://b:2", "--concurrency", "4", "--heartbeat", "1s"); len(c.Broker) != 2 ||
		c.Broker[1] != "tcp://b:2" || c.Concurrency != 4 || c.Heartbeat.String() != "1s" {
		t.Errorf("flags: %+v", c)
	}
	t.Setenv("ZMWS_WORKER_BROKER", "tcp://x:1,tcp://y:2")
	if c := parse(); len(c.Broker) != 2 || c.Broker[0] != "tcp://x:1" {
		t.Errorf("env: %+v", c.Broker)
	}
}
