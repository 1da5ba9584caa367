package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// TestRun_PageAndEvents: zmwsd serves the page at / and relays its job
// events on /ui/events, through the inproc events endpoint (so even with
// --events-bind empty).
func TestRun_PageAndEvents(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--data-dir=", "--http-bind=127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, httpAddr, done := start(t, ctx, cli, io.Discard)
	defer func() {
		cancel()
		<-done
	}()
	status, body := httpGet(t, "http://"+httpAddr+"/")
	if status != http.StatusOK || !strings.Contains(body, `<script src="/ui/app.js" defer></script>`) {
		t.Fatalf("/: %d %.200s", status, body)
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, "http://"+httpAddr+"/ui/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/ui/events: %d", resp.StatusCode)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expect := func(prefix string) string {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-timeout:
				t.Fatalf("no %q", prefix)
			}
		}
	}
	expect("event: ready")

	c, err := client.New(client.Config{Broker: srv.ClientEndpoint()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wk, err := worker.New(worker.Config{Brokers: []string{srv.WorkerEndpoint()}, Service: "UI-TEST",
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) { return []byte("ok"), nil })})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- wk.Run(wctx) }()
	defer func() { stopWorker(); <-wdone }()
	// The subscription reaches the broker a moment after ready: submit
	// until a queued event comes.
	zmqtest.Eventually(t, "a job event on /ui/events", 10*time.Second, func() bool {
		// unknown_service until the worker's READY is in.
		if _, err := c.Submit(ctx, "UI-TEST", client.Request{}); err != nil && !strings.Contains(err.Error(), "UI-TEST") {
			t.Fatal(err)
		}
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "event: "+protocol.EventQueued) || strings.HasPrefix(l, "event: "+protocol.EventStarted) {
				if d := expect("data: "); !strings.Contains(d, `"service":"UI-TEST"`) {
					t.Fatalf("event data %s", d)
				}
				return true
			}
		case <-time.After(100 * time.Millisecond):
		}
		return false
	})
}
