package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

// TestGateway_BrokenBodies: a body that ends early or never arrives is the
// client's fault, answered 400 or 408 (a short ReadTimeout stands in for
// the minute), never 500; and no job is made.
func TestGateway_BrokenBodies(t *testing.T) {
	for _, tc := range []struct {
		name      string
		head      string // after the request line
		body      string
		closeSend bool // half-close after the body: the client gave up
		status    int
		code      string
	}{
		{"short of Content-Length, closed", "Content-Length: 10\r\n", "abc", true, http.StatusBadRequest, "bad_request"},
		{"short of Content-Length, stalled", "Content-Length: 10\r\n", "abc", false, http.StatusRequestTimeout, "request_timeout"},
		{"chunked, stalled", "Transfer-Encoding: chunked\r\n", "5\r\nab", false, http.StatusRequestTimeout, "request_timeout"},
		{"chunked, malformed", "Transfer-Encoding: chunked\r\n", "zz\r\nab\r\n0\r\n\r\n", false, http.StatusBadRequest, "bad_request"},
		{"json, stalled", "Content-Type: application/json\r\nContent-Length: 10\r\n", "{", false, http.StatusRequestTimeout, "request_timeout"},
		{"multipart, stalled", "Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: 100\r\n", "--zz\r\n", false, http.StatusRequestTimeout, "request_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{submitID: "J"}
			g := newGateway(t, fb, Config{ReadTimeout: 200 * time.Millisecond})
			hs := httptest.NewUnstartedServer(nil)
			hs.Config = g.server()
			hs.Start()
			defer hs.Close()
			conn, err := net.Dial("tcp", hs.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(waitLong))
			fmt.Fprintf(conn, "POST /S HTTP/1.1\r\nHost: %s\r\n%s\r\n%s", hs.Listener.Addr(), tc.head, tc.body)
			if tc.closeSend {
				conn.(*net.TCPConn).CloseWrite()
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			var e errorBody
			if resp.StatusCode != tc.status || json.Unmarshal(data, &e) != nil || e.Code != tc.code {
				t.Fatalf("%d %s, want %d with code %s", resp.StatusCode, data, tc.status, tc.code)
			}
			if _, _, n := fb.last(); n != 0 {
				t.Errorf("%d jobs submitted", n)
			}
		})
	}
}
