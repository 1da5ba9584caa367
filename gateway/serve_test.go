package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
)

// TestGateway_ServeShutsDown: Serve answers until its ctx ends, then gives
// requests in flight ShutdownTimeout and cuts the rest, cancelling their
// contexts.
func TestGateway_ServeShutsDown(t *testing.T) {
	entered := make(chan struct{})
	left := make(chan struct{})
	fb := &fakeBackend{call: func(ctx context.Context, onPartial func([]byte) error) (*client.Result, error) {
		onPartial([]byte("x"))
		close(entered)
		<-ctx.Done()
		close(left)
		return nil, ctx.Err()
	}}
	g := newGateway(t, fb, Config{ShutdownTimeout: 50 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	stream, err := http.Get(base + "/SYNC-S")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	<-entered
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Serve did not return")
	}
	select {
	case <-left:
	case <-time.After(waitLong):
		t.Fatal("handler in flight not cancelled")
	}
	if _, err := io.ReadAll(stream.Body); err == nil {
		t.Error("cut stream read to a clean end")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still answering after Serve returned")
	}
}

func TestGateway_ServeListenerError(t *testing.T) {
	g := newGateway(t, &fakeBackend{}, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := g.Serve(context.Background(), ln); err == nil {
		t.Error("Serve on a closed listener returned nil")
	}
}
