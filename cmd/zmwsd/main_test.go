package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/internal/syncbuf"
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
	if cli.DataDir == "zmws-data" { // the default: keep tests out of the source tree
		cli.DataDir = filepath.Join(t.TempDir(), "zmws-data")
	}
	return cli
}

func TestRun_ServesAndStops(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--heartbeat=50ms", "--log-level=debug", "--http-bind=127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	srv, httpAddr, done := start(t, ctx, cli, &logs)
	if httpAddr == "" || strings.HasSuffix(httpAddr, ":0") {
		t.Fatalf("HTTP address %q", httpAddr)
	}
	c := zmqtest.Connect(t, zmq.REQ, srv.ClientEndpoint())
	zmqtest.Send(t, c, []byte("MDPC01"), []byte("NOPE"))
	got := zmqtest.Recv(t, c, 5*time.Second)
	if len(got) != 5 || string(got[2]) != "FAIL" {
		t.Fatalf("reply %s", zmqtest.Join(got))
	}

	// The HTTP gateway reaches the same broker over inproc.
	status, body := httpGet(t, "http://"+httpAddr+"/healthz")
	if status != http.StatusOK || body != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", status, body)
	}
	status, body = httpGet(t, "http://"+httpAddr+"/NOPE")
	var e map[string]string
	json.Unmarshal([]byte(body), &e)
	if status != http.StatusNotFound || e["code"] != "unknown_service" || e["error"] != "no worker has ever provided service NOPE" {
		t.Errorf("NOPE: %d %s", status, body)
	}
	status, body = httpGet(t, "http://"+httpAddr+"/SERVER-SERVICES")
	if status != http.StatusOK || body != "[]" {
		t.Errorf("SERVER-SERVICES: %d %s", status, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
	if _, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
		t.Error("HTTP still answering after run returned")
	}
	for _, want := range []string{`"message":"zmwsd started"`, `"message":"http request"`, `"path":"/NOPE"`, `"status":404`} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %s: %s", want, logs.String())
		}
	}
}

func TestRun_HTTPDisabled(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind=", "--http-bind=")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, httpAddr, done := start(t, ctx, cli, &syncBuffer{})
	if httpAddr != "" || srv == nil {
		t.Errorf("HTTP address %q with --http-bind empty", httpAddr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// start runs run on a goroutine and waits until it is ready.
func start(t *testing.T, ctx context.Context, cli CLI, logw io.Writer) (*server.Server, string, chan error) {
	t.Helper()
	type started struct {
		srv  *server.Server
		addr string
	}
	ready := make(chan started, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cli, logw, func(s *server.Server, addr string) { ready <- started{s, addr} })
	}()
	select {
	case s := <-ready:
		return s.srv, s.addr, done
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("run not ready")
	}
	return nil, "", nil
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestRun_CrossSiteRefused: the real zmwsd on loopback answers a rebound
// name with 421 and a cross-origin form POST with 403 (no job in either
// case); a --http-host name, loopback names and curl-like requests pass,
// and /healthz answers any Host.
func TestRun_CrossSiteRefused(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--data-dir=", "--http-bind=127.0.0.1:0", "--http-host=zmws.example")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, httpAddr, done := start(t, ctx, cli, io.Discard)
	defer func() {
		cancel()
		<-done
	}()
	do := func(method, host, path string, headers ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+httpAddr+path, strings.NewReader("a=1"))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e map[string]string
		json.Unmarshal(b, &e)
		return resp.StatusCode, e["code"]
	}
	_, port, _ := net.SplitHostPort(httpAddr)
	for _, tc := range []struct {
		method, host, path string
		headers            []string
		status             int
		code               string
	}{
		{"GET", "attacker.example:" + port, "/SYNC-NOPE", []string{"Origin", "http://attacker.example:" + port}, 421, "wrong_host"},
		{"GET", "attacker.example", "/healthz", nil, 200, ""},
		{"POST", httpAddr, "/NOPE", []string{"Origin", "https://attacker.example", "Content-Type", "application/x-www-form-urlencoded"}, 403, "cross_origin"},
		{"POST", httpAddr, "/NOPE", []string{"Origin", "http://" + httpAddr}, 404, "unknown_service"},
		{"POST", "localhost:" + port, "/NOPE", nil, 404, "unknown_service"},
		{"GET", "zmws.example", "/SYNC-NOPE", nil, 404, "unknown_service"},
	} {
		if status, code := do(tc.method, tc.host, tc.path, tc.headers...); status != tc.status || code != tc.code {
			t.Errorf("%s %s Host %s %v: %d %s, want %d %s", tc.method, tc.path, tc.host, tc.headers, status, code, tc.status, tc.code)
		}
	}
}

func TestRun_Errors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-level=loud"}, "log level"},
		{[]string{"--liveness=0"}, "must be positive"},
		{[]string{"--http-max-body=0"}, "--http-max-body and --http-max-sync must be positive"},
		{[]string{"--http-max-sync=0"}, "--http-max-body and --http-max-sync must be positive"},
		{[]string{"--rate=S=0"}, "--rate: rate \"S=0\": \"0\" is not a positive number of jobs a second"},
		{[]string{"--rate=S=1", "--rate=S=2"}, "--rate: service S has two rates"},
		{[]string{"--http-rate=-1"}, "--http-rate, --http-burst and --http-concurrency must not be negative"},
		{[]string{"--mem-trim=-1s"}, "--mem-trim must not be negative"},
		{[]string{"--dedupe-window=-1s"}, "--dedupe-window must not be negative"},
		{[]string{"--client-rate=0"}, "--client-rate: client rate \"0\" (want JOBS_PER_SECOND or JOBS_PER_SECOND/BURST): \"0\" is not a positive number of jobs a second"},
		{[]string{"--client-rate=5/x"}, "--client-rate: client rate \"5/x\" (want JOBS_PER_SECOND or JOBS_PER_SECOND/BURST): burst \"x\" is not a positive integer"},
		{[]string{"--client-concurrency=-1"}, "--client-concurrency must not be negative"},
		{[]string{"--max-msg-frames=0"}, "--max-msg-frames and --max-msg-bytes must be positive, or -1"},
		{[]string{"--max-msg-bytes=-2"}, "--max-msg-frames and --max-msg-bytes must be positive, or -1"},
		{[]string{"--max-msg-bytes=1000"}, "--max-msg-bytes (1000) must be at least --max-msg-size (16777216)"},
		{[]string{"--http-cors=example.com"}, "--http-cors"},
		{[]string{"--http-host=a/b"}, "--http-host"},
		{[]string{"--http-bind=" + busy.Addr().String()}, "http gateway: listen on --http-bind " + busy.Addr().String()},
		{[]string{"--http-bind=nonsense"}, "http gateway: listen"},
		{[]string{"--client-bind=tcp://256.0.0.1:1", "--insecure", "--http-bind=127.0.0.1:0"}, "bind client endpoint"},
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
	t.Setenv("ZMWSD_HTTP_CORS", "https://a.example,http://localhost:3000")
	t.Setenv("ZMWSD_HTTP_MAX_BODY", "2048")
	t.Setenv("ZMWSD_MEM_TRIM", "0")
	t.Setenv("ZMWSD_MAX_MSG_FRAMES", "-1")
	cli := parse(t)
	if cli.Heartbeat != time.Second || cli.MaxQueue != 7 || cli.ClientBind != "tcp://127.0.0.1:5555" ||
		cli.HTTPBind != "127.0.0.1:5580" || cli.HTTPMaxBody != 2048 || cli.MemTrim != 0 || cli.MaxMsgFrames != -1 ||
		!reflect.DeepEqual(cli.HTTPCORS, []string{"https://a.example", "http://localhost:3000"}) {
		t.Fatalf("%+v", cli)
	}
	t.Setenv("ZMWSD_HTTP_HOST", "zmws.example,10.0.0.5")
	if cli := parse(t); !reflect.DeepEqual(cli.HTTPHost, []string{"zmws.example", "10.0.0.5"}) {
		t.Errorf("ZMWSD_HTTP_HOST: %q", cli.HTTPHost)
	}
	t.Setenv("ZMWSD_HTTP_BIND", "")
	if cli := parse(t); cli.HTTPBind != "" {
		t.Errorf("ZMWSD_HTTP_BIND empty: %q", cli.HTTPBind)
	}
}

// syncBuffer is a log destination tests read while others write.
type syncBuffer = syncbuf.Buffer

// TestRun_Check: --check binds nothing and opens no journal, and reports
// what a start would refuse.
func TestRun_Check(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	cli := parse(t, "--check", "--client-bind=tcp://"+ln.Addr().String(), "--http-bind="+ln.Addr().String(),
		"--data-dir="+filepath.Join(dir, "data"))
	if err := run(context.Background(), cli, io.Discard, nil); err != nil {
		t.Fatalf("--check with the endpoints taken: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("--check made the data dir: %v", err)
	}
	cli = parse(t, "--check", "--curve-key="+filepath.Join(dir, "none.key"))
	if err := run(context.Background(), cli, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "--curve-key") {
		t.Errorf("--check with a missing key: %v", err)
	}
	cli = parse(t, "--check", "--retry-backoff=0s")
	if err := run(context.Background(), cli, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "--retry-backoff") {
		t.Errorf("--check with --retry-backoff 0: %v", err)
	}
}
