package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
	"github.com/zmws/zmws/worker"
)

// waitLong bounds every wait for something that should happen promptly.
const waitLong = 10 * time.Second

// stack is a real server.Server, a Broker backend over its inproc endpoints, the
// gateway behind an httptest.Server, and the workers a test starts.
type stack struct {
	srv  *server.Server
	back *Broker
	gw   *Gateway
	hs   *httptest.Server
	log  zerolog.Logger
}

func newStack(t *testing.T, cfg Config) *stack {
	t.Helper()
	return newStackBackend(t, cfg, BrokerConfig{})
}

// newStackBackend is newStack with backend settings (the endpoints are set
// here).
func newStackBackend(t *testing.T, cfg Config, pcfg BrokerConfig) *stack {
	t.Helper()
	return newStackStore(t, cfg, pcfg, nil)
}

// newStackStore is newStackBackend with a job store for the server (nil:
// none).
func newStackStore(t *testing.T, cfg Config, pcfg BrokerConfig, st store.Store) *stack {
	t.Helper()
	return newStackBroker(t, cfg, pcfg, st, broker.Config{Heartbeat: 100 * time.Millisecond, Liveness: 20})
}

// newStackBroker is newStackStore with the broker's settings. The gateway
// relays events to the page (Config.Events) unless cfg has a hub already.
func newStackBroker(t *testing.T, cfg Config, pcfg BrokerConfig, st store.Store, bcfg broker.Config) *stack {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	name := rand.Text() // unique per test, across -count runs
	clients, events := "inproc://gw-clients-"+name, "inproc://gw-events-"+name
	srv, err := server.New(server.Config{
		ClientBind:   "tcp://127.0.0.1:*",
		WorkerBind:   "tcp://127.0.0.1:*",
		ClientInproc: clients,
		EventsInproc: events,
		Broker:       bcfg,
		Logger:       log,
		Store:        st,
		CommitDelay:  -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	pcfg.Broker, pcfg.Events, pcfg.Logger = clients, events, log
	back, err := NewBroker(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Backend, cfg.Logger = back, log
	if cfg.Events == nil {
		if cfg.Events, err = NewEvents(EventsConfig{Endpoint: events, Logger: log}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cfg.Events.Close() })
	}
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = gw.server() // the gateway's own timeouts
	hs.Start()
	t.Cleanup(func() {
		back.Close() // interrupts requests still in flight, so hs.Close returns
		hs.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server Run: %v", err)
			}
		case <-time.After(waitLong):
			t.Error("server did not stop")
		}
	})
	return &stack{srv: srv, back: back, gw: gw, hs: hs, log: log}
}

// worker runs a worker.Worker with n slots for service until the test ends,
// and waits until the broker has all n slots.
func (s *stack) worker(t *testing.T, service string, n int, h worker.HandlerFunc) {
	t.Helper()
	w, err := worker.New(worker.Config{
		Brokers:     []string{s.srv.WorkerEndpoint()},
		Service:     service,
		Handler:     h,
		Concurrency: n,
		Heartbeat:   100 * time.Millisecond,
		Liveness:    20,
		Grace:       100 * time.Millisecond,
		Logger:      s.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "worker "+service, w.Run)
	zmqtest.Eventually(t, "workers of "+service+" ready", waitLong, func() bool {
		body, err := s.back.Query(context.Background(), protocol.ServerWorkers)
		if err != nil {
			return false
		}
		var ws []protocol.WorkerInfo
		json.Unmarshal(body, &ws)
		count := 0
		for _, w := range ws {
			if w.Service == service {
				count++
			}
		}
		return count == n
	})
}

// get sends a GET to the gateway and returns the response with its body
// read (the trailers are then set).
func (s *stack) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := s.hs.Client().Get(s.hs.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp, string(b)
}

// post sends a POST with a body to the gateway and returns the response
// with its body read.
func (s *stack) post(t *testing.T, path, ctype, body string) (*http.Response, string) {
	t.Helper()
	resp, err := s.hs.Client().Post(s.hs.URL+path, ctype, strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", path, err)
	}
	return resp, string(b)
}

// reverse is STR-REV: the "str" parameter, else the input, reversed.
func reverse(ctx context.Context, j *worker.Job) ([]byte, error) {
	s := j.Params["str"]
	if s == "" && len(j.Input) > 0 {
		s = string(j.Input[0])
	}
	r := []rune(s)
	slices.Reverse(r)
	return []byte(string(r)), nil
}

func decodeJSON[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("JSON %q: %v", body, err)
	}
	return v
}

// TestE2E_OriginalURLs: the original's URLs through a real broker and worker.
func TestE2E_OriginalURLs(t *testing.T) {
	s := newStack(t, Config{})
	s.worker(t, "STR-REV", 1, reverse)

	resp, body := s.get(t, "/SYNC-STR-REV?str=Hello,+world")
	if resp.StatusCode != http.StatusOK || body != "dlrow ,olleH" {
		t.Fatalf("SYNC-STR-REV: %d %q", resp.StatusCode, body)
	}
	if resp.Header.Get(HeaderStatus) != StatusComplete || resp.Header.Get(HeaderJobID) == "" {
		t.Errorf("outcome headers %v", resp.Header)
	}
	if resp, body := s.get(t, "/SYNC:STR-REV?str=abc"); resp.StatusCode != http.StatusOK || body != "cba" {
		t.Errorf("SYNC:STR-REV: %d %q", resp.StatusCode, body)
	}
	post, err := s.hs.Client().Post(s.hs.URL+"/SYNC-STR-REV", "application/json", strings.NewReader(`{"str":"json"}`))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(post.Body); post.StatusCode != http.StatusOK || string(b) != "nosj" {
		t.Errorf("JSON body: %d %q", post.StatusCode, b)
	}
	post.Body.Close()
	post, err = s.hs.Client().Post(s.hs.URL+"/SYNC-STR-REV", "text/plain", strings.NewReader("raw input"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(post.Body); post.StatusCode != http.StatusOK || string(b) != "tupni war" {
		t.Errorf("raw body: %d %q", post.StatusCode, b)
	}
	post.Body.Close()

	resp, body = s.get(t, "/STR-REV?str=x")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("STR-REV: %d %q", resp.StatusCode, body)
	}
	acc := decodeJSON[map[string]string](t, body)
	loc := resp.Header.Get("Location")
	if acc["job_id"] == "" || acc["service"] != "STR-REV" || loc != "/jobs/"+acc["job_id"] {
		t.Fatalf("accepted %v, Location %q", acc, loc)
	}
	resp, body = s.get(t, loc+"?wait=5s")
	job := decodeJSON[protocol.JobView](t, body)
	if resp.StatusCode != http.StatusOK || job.State != protocol.JobComplete || job.Output == nil || *job.Output != "x" ||
		job.OutputEncoding != protocol.OutputUTF8 || job.Params["str"] != "x" || job.Finished == nil {
		t.Errorf("job: %d %s", resp.StatusCode, body)
	}

	resp, body = s.get(t, "/NOPE")
	e := decodeJSON[errorBody](t, body)
	if resp.StatusCode != http.StatusNotFound || e.Code != protocol.CodeUnknownService || e.Error != "no worker has ever provided service NOPE" {
		t.Errorf("NOPE: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.get(t, "/jobs/01NOTAJOB"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown job: %d %s", resp.StatusCode, body)
	}

	resp, body = s.get(t, "/SERVER-JOBS")
	jobs := decodeJSON[[]protocol.JobInfo](t, body)
	if resp.StatusCode != http.StatusOK || !slices.ContainsFunc(jobs, func(j protocol.JobInfo) bool {
		return j.ID == acc["job_id"] && j.State == protocol.JobComplete
	}) {
		t.Errorf("SERVER-JOBS: %d %s", resp.StatusCode, body)
	}
	for _, q := range []string{"/SERVER-WORKERS", "/SERVER-WORKERS?all=1", "/SERVER-ACTIVE", "/SERVER-QUEUE", "/SERVER-SERVICES"} {
		resp, body := s.get(t, q)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", q, resp.StatusCode, body)
		}
		decodeJSON[[]any](t, body)
	}
	if resp, body := s.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}
}

// failingStore is a Memory store whose commits fail while fail is set.
type failingStore struct {
	*store.Memory
	mu   sync.Mutex
	fail bool
}

func (f *failingStore) set(fail bool) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

func (f *failingStore) Commit(b *store.Batch) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return errors.New("no space left on device")
	}
	return f.Memory.Commit(b)
}

// TestE2E_HealthSaysStoreFailing: while the job journal refuses every job,
// /healthz is 503 store_unavailable, not 200; once a commit succeeds it is
// 200 again.
func TestE2E_HealthSaysStoreFailing(t *testing.T) {
	st := &failingStore{Memory: store.NewMemory()}
	s := newStackStore(t, Config{}, BrokerConfig{}, st)
	s.worker(t, "S", 1, func(ctx context.Context, j *worker.Job) ([]byte, error) { return nil, nil })
	if resp, body := s.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz before: %d %s", resp.StatusCode, body)
	}
	st.set(true)
	if resp, body := s.post(t, "/S", "text/plain", "x"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("submission to a failing store: %d %s", resp.StatusCode, body)
	}
	resp, body := s.get(t, "/healthz")
	if resp.StatusCode != http.StatusServiceUnavailable || decodeJSON[map[string]string](t, body)["code"] != protocol.CodeStoreUnavailable {
		t.Fatalf("healthz while the store fails: %d %s", resp.StatusCode, body)
	}
	st.set(false)
	if resp, body := s.post(t, "/S", "text/plain", "x"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submission after: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after: %d %s", resp.StatusCode, body)
	}
}

func TestE2E_SyncFailures(t *testing.T) {
	s := newStack(t, Config{})
	s.worker(t, "FAIL", 1, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		if j.Params["after"] != "" {
			if _, err := j.Write([]byte("partial\n")); err != nil {
				return nil, err
			}
		}
		return nil, &worker.ExitError{Code: 4, Err: errors.New("boom")}
	})

	resp, body := s.get(t, "/SYNC-FAIL")
	e := decodeJSON[errorBody](t, body)
	if resp.StatusCode != http.StatusBadGateway || e.Code != protocol.CodeJobFailed || e.ExitCode == nil || *e.ExitCode != 4 ||
		e.JobID == "" || !strings.Contains(e.Error, "boom") {
		t.Errorf("failed before output: %d %s", resp.StatusCode, body)
	}

	resp, body = s.get(t, "/SYNC-FAIL?after=1")
	if resp.StatusCode != http.StatusOK || body != "partial\n" {
		t.Fatalf("failed after output: %d %q", resp.StatusCode, body)
	}
	if resp.Trailer.Get(HeaderStatus) != StatusFail || resp.Trailer.Get(HeaderExitCode) != "4" ||
		resp.Trailer.Get(HeaderJobID) == "" || resp.Trailer.Get(HeaderCode) != protocol.CodeJobFailed ||
		!strings.Contains(resp.Trailer.Get(HeaderError), "boom") {
		t.Errorf("trailers %v", resp.Trailer)
	}

	// The async job fails too; /jobs shows how.
	resp, body = s.get(t, "/FAIL")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("async FAIL: %d %s", resp.StatusCode, body)
	}
	id := decodeJSON[map[string]string](t, body)["job_id"]
	_, body = s.get(t, "/jobs/"+id+"?wait=5s")
	job := decodeJSON[protocol.JobView](t, body)
	if job.State != protocol.JobFailed || job.ExitCode == nil || *job.ExitCode != 4 || !strings.Contains(job.Error, "boom") {
		t.Errorf("failed job: %s", body)
	}
}

// TestE2E_StreamsBeforeJobEnds (must show 2): the first bytes of a sync job
// reach the HTTP client while the job is still running. The worker blocks
// after its first partial until the test has read that partial, so the
// order is forced, not timed.
func TestE2E_StreamsBeforeJobEnds(t *testing.T) {
	s := newStack(t, Config{})
	release := make(chan struct{})
	s.worker(t, "STREAM", 1, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		j.Write([]byte("first\n"))
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		for i := 1; i <= 3; i++ {
			j.Write(fmt.Appendf(nil, "part %d\n", i))
		}
		return []byte("last\n"), nil
	})
	resp, err := s.hs.Client().Get(s.hs.URL + "/SYNC-STREAM")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("first chunk %q, %v", first, err)
	}
	// The job cannot have ended: its handler waits for release.
	body, err := s.back.Query(context.Background(), protocol.ServerActive)
	if err != nil {
		t.Fatal(err)
	}
	if active := decodeJSON[[]protocol.JobInfo](t, string(body)); len(active) != 1 || active[0].Service != "STREAM" {
		t.Errorf("active while streaming: %s", body)
	}
	close(release)
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "part 1\npart 2\npart 3\nlast\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if resp.Trailer.Get(HeaderStatus) != StatusComplete || resp.Trailer.Get(HeaderJobID) == "" {
		t.Errorf("trailers %v", resp.Trailer)
	}
}

// TestE2E_ConcurrentSync: a slow sync job does not hold up 19 fast ones on
// another service.
func TestE2E_ConcurrentSync(t *testing.T) {
	s := newStack(t, Config{})
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s.worker(t, "SLOW", 1, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-release:
			return []byte("slow"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	s.worker(t, "FAST", 4, reverse)

	type result struct {
		status int
		body   string
		err    error
	}
	get := func(path string) result {
		resp, err := s.hs.Client().Get(s.hs.URL + path)
		if err != nil {
			return result{err: err}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return result{resp.StatusCode, string(b), err}
	}
	slow := make(chan result, 1)
	go func() { slow <- get("/SYNC-SLOW") }()
	select {
	case <-started:
	case <-time.After(waitLong):
		t.Fatal("slow job did not start")
	}

	const fast = 19
	results := make([]result, fast)
	var wg sync.WaitGroup
	for i := range fast {
		wg.Go(func() { results[i] = get(fmt.Sprintf("/SYNC-FAST?str=job%02d", i)) })
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	select {
	case <-allDone:
	case <-time.After(waitLong):
		t.Fatal("fast jobs stalled behind the slow one")
	}
	for i, r := range results {
		want := []rune(fmt.Sprintf("job%02d", i))
		slices.Reverse(want)
		if r.err != nil || r.status != http.StatusOK || r.body != string(want) {
			t.Errorf("fast %d: %d %q %v, want %q", i, r.status, r.body, r.err, string(want))
		}
	}
	select {
	case r := <-slow:
		t.Fatalf("slow job ended before release: %+v", r)
	default:
	}
	close(release)
	if r := <-slow; r.err != nil || r.status != http.StatusOK || r.body != "slow" {
		t.Errorf("slow: %+v", r)
	}
	zmqtest.Eventually(t, "sync requests ended", waitLong, func() bool { return s.back.Stats().Sync == 0 })
}

// TestE2E_DisconnectMidStream: a client that leaves a sync request frees
// its broker client and goroutines; the gateway keeps serving.
func TestE2E_DisconnectMidStream(t *testing.T) {
	s := newStack(t, Config{})
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s.worker(t, "HANG", 1, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		j.Write([]byte("x"))
		started <- struct{}{}
		select {
		case <-release:
			return []byte("done"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	baseline := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.hs.URL+"/SYNC-HANG", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, b); err != nil || string(b) != "x" {
		t.Fatalf("first byte %q, %v", b, err)
	}
	<-started
	if st := s.back.Stats(); st.Sync != 1 {
		t.Errorf("while streaming: %+v", st)
	}
	cancel()
	resp.Body.Close()
	zmqtest.Eventually(t, "sync request ended", waitLong, func() bool { return s.back.Stats().Sync == 0 })

	// Let the job end (its reply finds no client), then count goroutines.
	close(release)
	zmqtest.Eventually(t, "job finished", waitLong, func() bool {
		body, err := s.back.Query(context.Background(), protocol.ServerActive)
		return err == nil && strings.TrimSpace(string(body)) == "[]"
	})
	tr.CloseIdleConnections()
	zmqtest.Eventually(t, fmt.Sprintf("goroutines back to %d", baseline), waitLong, func() bool { return runtime.NumGoroutine() <= baseline })

	if resp, body := s.get(t, "/SYNC-HANG"); resp.StatusCode != http.StatusOK || body != "xdone" {
		t.Errorf("after disconnect: %d %q", resp.StatusCode, body)
	}
	<-started
}

// TestE2E_LongRequestsOutliveReadTimeout: ReadTimeout bounds reading a
// request, not a sync stream or a ?wait= that outlasts it.
func TestE2E_LongRequestsOutliveReadTimeout(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	s := newStack(t, Config{ReadTimeout: readTimeout, Recheck: time.Hour})
	release := make(chan struct{})
	s.worker(t, "STREAM", 2, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		j.Write([]byte("first\n"))
		select {
		case <-release:
			return []byte("last\n"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	resp, err := s.hs.Client().Get(s.hs.URL + "/SYNC-STREAM")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if first, err := r.ReadString('\n'); err != nil || first != "first\n" {
		t.Fatalf("first %q, %v", first, err)
	}
	_, body := s.get(t, "/STREAM")
	id := decodeJSON[map[string]string](t, body)["job_id"]
	waited := make(chan string, 1)
	go func() {
		resp, err := s.hs.Client().Get(s.hs.URL + "/jobs/" + id + "?wait=20s")
		if err != nil {
			waited <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		waited <- string(b)
	}()
	// What is tested is time passing: both requests must live well past
	// ReadTimeout.
	time.Sleep(4 * readTimeout)
	close(release)
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "last\n" || resp.Trailer.Get(HeaderStatus) != StatusComplete {
		t.Errorf("stream after ReadTimeout: %q %v %v", rest, err, resp.Trailer)
	}
	if got := <-waited; !strings.Contains(got, `"state":"complete"`) {
		t.Errorf("wait after ReadTimeout: %s", got)
	}
}

// TestE2E_HostileInputs (must show 4): each gets its documented status and
// the gateway keeps serving.
func TestE2E_HostileInputs(t *testing.T) {
	s := newStack(t, Config{})
	s.worker(t, "STR-REV", 1, reverse)

	post, err := s.hs.Client().Post(s.hs.URL+"/STR-REV", "application/json", strings.NewReader(`{"str": `))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusBadRequest {
		t.Errorf("invalid JSON: %d", post.StatusCode)
	}

	// A 10 MiB body, announced by Content-Length, is refused before it is
	// read; a raw connection shows the answer without racing the upload.
	conn, err := net.Dial("tcp", s.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /SYNC-STR-REV HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", s.hs.Listener.Addr(), 10<<20)
	conn.Write([]byte(strings.Repeat("x", 64<<10)))
	big, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	big.Body.Close()
	if big.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("10 MiB body: %d", big.StatusCode)
	}

	if resp, _ := s.get(t, "/UNKNOWN-SERVICE"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown service: %d", resp.StatusCode)
	}
	if resp, _ := s.get(t, "/STR-REV?str="+strings.Repeat("a", 100<<10)); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB URL: %d", resp.StatusCode)
	}
	if resp, body := s.get(t, "/SYNC-STR-REV?str=ok"); resp.StatusCode != http.StatusOK || body != "ko" {
		t.Errorf("still serving: %d %q", resp.StatusCode, body)
	}
}

// TestBroker_MaxSyncAndClosed: past MaxSync a sync request gets 503 busy
// at once, while everything else is answered; after Close, requests get
// client.ErrClosed and in-flight ones end.
func TestBroker_MaxSyncAndClosed(t *testing.T) {
	s := newStackBackend(t, Config{}, BrokerConfig{MaxSync: 1})
	started := make(chan struct{}, 1)
	s.worker(t, "HOLD", 2, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	held := make(chan *http.Response, 1)
	go func() {
		resp, err := s.hs.Client().Get(s.hs.URL + "/SYNC-HOLD")
		if err != nil {
			t.Error(err)
		}
		held <- resp
	}()
	<-started
	resp, body := s.get(t, "/SYNC-HOLD")
	if e := decodeJSON[errorBody](t, body); resp.StatusCode != http.StatusServiceUnavailable || e.Code != codeBusy ||
		resp.Header.Get("Retry-After") == "" {
		t.Errorf("second sync request past MaxSync 1: %d %s, want 503 busy", resp.StatusCode, body)
	}
	for _, path := range []string{"/SERVER-JOBS", "/healthz"} {
		if resp, body := s.get(t, path); resp.StatusCode != http.StatusOK {
			t.Errorf("%s while MaxSync requests are held: %d %s", path, resp.StatusCode, body)
		}
	}
	s.back.Close()
	if _, err := s.back.Query(context.Background(), protocol.ServerJobs); !errors.Is(err, client.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	select {
	case resp := <-held:
		if resp != nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("in flight at Close: %d", resp.StatusCode)
			}
		}
	case <-time.After(waitLong):
		t.Fatal("request in flight at Close did not end")
	}
	if st := s.back.Stats(); st.Sync != 0 {
		t.Errorf("after Close: %+v", st)
	}
}

// TestE2E_HeldSyncRequestsLeaveTheRestAnswering is a fault found by hostile testing:
// 600 sync requests held by a known service with no live worker used to
// take every broker client of the gateway's pool (512), so that async
// submits, queries and /healthz all got 503. Now they share one socket
// with the held requests, and are answered. The figures (worst latency of
// each probe while the 600 are held) are logged: `go test -run
// HeldSyncRequests -v ./gateway`.
func TestE2E_HeldSyncRequestsLeaveTheRestAnswering(t *testing.T) {
	const held = 600
	s := newStack(t, Config{})

	// NOBODY is a known service whose only worker has left.
	ctx, stop := context.WithCancel(context.Background())
	w, err := worker.New(worker.Config{Brokers: []string{s.srv.WorkerEndpoint()}, Service: "NOBODY",
		Handler: worker.HandlerFunc(func(context.Context, *worker.Job) ([]byte, error) { return nil, nil }), Heartbeat: 100 * time.Millisecond, Logger: s.log})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	live := func() int {
		body, err := s.back.Query(context.Background(), protocol.ServerWorkers)
		if err != nil {
			return -1
		}
		var ws []protocol.WorkerInfo
		json.Unmarshal(body, &ws)
		return len(ws)
	}
	zmqtest.Eventually(t, "worker of NOBODY ready", waitLong, func() bool { return live() == 1 })
	stop()
	<-ran
	zmqtest.Eventually(t, "worker of NOBODY gone", waitLong, func() bool { return live() == 0 })
	// ?all=1 lists it, gone: it said DISCONNECT.
	resp, body := s.get(t, "/SERVER-WORKERS?all=1")
	if ws := decodeJSON[[]protocol.WorkerInfo](t, body); resp.StatusCode != http.StatusOK || len(ws) != 1 || ws[0].Service != "NOBODY" ||
		ws[0].State != protocol.WorkerGone || ws[0].GoneWhy != protocol.GoneDisconnected {
		t.Fatalf("/SERVER-WORKERS?all=1: %d %s; want NOBODY's worker gone disconnected", resp.StatusCode, body)
	}

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: held}}
	hold, release := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range held {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(hold, http.MethodGet, s.hs.URL+"/SYNC-NOBODY", nil)
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	defer func() {
		release()
		wg.Wait()
		zmqtest.Eventually(t, "held requests ended", waitLong, func() bool { return s.back.Stats().Sync == 0 })
	}()
	zmqtest.Eventually(t, fmt.Sprint(held, " sync requests held"), waitLong, func() bool { return s.back.Stats().Sync == held })

	probes := []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/NOBODY", http.StatusAccepted},
		{http.MethodGet, "/healthz", http.StatusOK},
		{http.MethodGet, "/SERVER-QUEUE", http.StatusOK},
	}
	for _, p := range probes {
		var worst time.Duration
		for range 20 {
			req, _ := http.NewRequest(p.method, s.hs.URL+p.path, nil)
			start := time.Now()
			resp, err := s.hs.Client().Do(req)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("%s %s with %d sync requests held: %v", p.method, p.path, held, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != p.want {
				t.Fatalf("%s %s with %d sync requests held: %d %s, want %d", p.method, p.path, held, resp.StatusCode, body, p.want)
			}
			worst = max(worst, elapsed)
		}
		t.Logf("%s %s with %d sync requests held: 20 x %d, worst %v", p.method, p.path, held, p.want, worst)
	}
	if st := s.back.Stats(); st.Sync != held {
		t.Errorf("sync requests in flight %d, want %d still held", st.Sync, held)
	}
}

// The control routes through a real broker: a paused service queues its
// jobs, resume runs them, an unknown service is 404.
func TestE2E_PauseAndResume(t *testing.T) {
	s := newStack(t, Config{})
	s.worker(t, "STR-REV", 1, reverse)
	resp, body := s.post(t, "/services/STR-REV/pause", "", "")
	if si := decodeJSON[protocol.ServiceInfo](t, body); resp.StatusCode != 200 || !si.Paused {
		t.Fatalf("pause: %d %s", resp.StatusCode, body)
	}
	resp, body = s.get(t, "/STR-REV?str=abc")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit to a paused service: %d %s", resp.StatusCode, body)
	}
	id := decodeJSON[struct {
		JobID string `json:"job_id"`
	}](t, body).JobID
	if _, body := s.get(t, "/jobs/"+id); !strings.Contains(body, `"state":"queued"`) {
		t.Fatalf("the job of a paused service: %s, want queued", body)
	}
	if resp, body := s.post(t, "/services/STR-REV/resume", "", ""); resp.StatusCode != 200 || decodeJSON[protocol.ServiceInfo](t, body).Paused {
		t.Fatalf("resume: %d %s", resp.StatusCode, body)
	}
	if _, body := s.get(t, "/jobs/"+id+"?wait=10s"); !strings.Contains(body, `"state":"complete"`) {
		t.Fatalf("after resume: %s, want complete", body)
	}
	if resp, body := s.post(t, "/services/NOPE/pause", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("pause of an unknown service: %d %s", resp.StatusCode, body)
	}
}
