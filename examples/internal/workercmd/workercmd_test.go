package workercmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

var nop = worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) { return nil, nil })

func TestRun_Rejects(t *testing.T) {
	ok := Flags{Broker: []string{"tcp://127.0.0.1:1"}, Concurrency: 1, Heartbeat: time.Second, LogLevel: "info", LogFormat: "json"}
	for name, mod := range map[string]func(*Flags){
		"log level":   func(f *Flags) { f.LogLevel = "loud" },
		"log format":  func(f *Flags) { f.LogFormat = "xml" },
		"concurrency": func(f *Flags) { f.Concurrency = 0 },
		"heartbeat":   func(f *Flags) { f.Heartbeat = 0 },
		"broker":      func(f *Flags) { f.Broker = nil },
	} {
		f := ok
		mod(&f)
		if err := Run(context.Background(), f, "S", "test", nop, &bytes.Buffer{}); err == nil {
			t.Errorf("%s: Run succeeded", name)
		}
	}
}

func TestRun_AnnouncesAndStops(t *testing.T) {
	router, ep := zmqtest.Bind(t, zmq.ROUTER)
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Flags{Broker: []string{ep}, Concurrency: 1, Heartbeat: time.Second, LogLevel: "info", LogFormat: "json"},
			"SLEEP", "zmws-example-sleep", nop, &logs)
	}()
	frames := zmqtest.Recv(t, router, 5*time.Second)
	m, err := protocol.DecodeWorker(frames[1:])
	if err != nil || m.Cmd != protocol.CmdReady || m.Service != "SLEEP" {
		t.Fatalf("got %s (%v), want READY SLEEP", zmqtest.Join(frames), err)
	}
	if meta, err := protocol.DecodeMeta(m.Body[0]); err != nil || meta.Worker.Name != "zmws-example-sleep" {
		t.Errorf("READY meta %+v, %v", meta, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if !strings.Contains(logs.String(), `"service":"SLEEP"`) {
		t.Errorf("logs: %s", logs.String())
	}
}
