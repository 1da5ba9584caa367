package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// fakeBackend is a Backend whose answers the test sets. It records the last
// request made.
type fakeBackend struct {
	mu      sync.Mutex
	service string
	req     client.Request
	calls   int

	submitID  string
	submitErr error
	call      func(ctx context.Context, onPartial func([]byte) error) (*client.Result, error)
	queries   map[string]string
	// pages answers QueryPage when set; else QueryPage answers queries'
	// entry as the only page.
	pages    func(service string, opt client.PageOptions) (body, next string, err error)
	pageOpts []client.PageOptions // each QueryPage's options
	queryErr error
	job      func(id string) (protocol.JobInfo, error)
	finished chan struct{} // returned by WatchJob
	watching chan string   // gets the ID passed to WatchJob, if not nil
	pingErr  error
	// failed answers FailedPage and RetryFailed; failedOpts are the
	// options each was asked with.
	failed     func(opt client.FailedOptions) ([]protocol.JobInfo, protocol.RetryReport, string, error)
	failedOpts []client.FailedOptions
}

func (f *fakeBackend) failedAnswer(service string, opt client.FailedOptions) ([]protocol.JobInfo, protocol.RetryReport, string, error) {
	f.record(service, client.Request{})
	f.mu.Lock()
	f.failedOpts = append(f.failedOpts, opt)
	f.mu.Unlock()
	if f.failed == nil {
		return nil, protocol.RetryReport{}, "", f.queryErr
	}
	return f.failed(opt)
}

func (f *fakeBackend) FailedPage(ctx context.Context, opt client.FailedOptions) ([]protocol.JobInfo, string, error) {
	jobs, _, next, err := f.failedAnswer(protocol.ServerJobs, opt)
	return jobs, next, err
}

func (f *fakeBackend) RetryFailed(ctx context.Context, opt client.FailedOptions) (protocol.RetryReport, string, error) {
	_, rep, next, err := f.failedAnswer(protocol.ServerRetry, opt)
	return rep, next, err
}

func (f *fakeBackend) record(service string, req client.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.service, f.req = service, req
	f.calls++
}

func (f *fakeBackend) last() (string, client.Request, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.service, f.req, f.calls
}

func (f *fakeBackend) Submit(ctx context.Context, service string, req client.Request) (string, error) {
	f.record(service, req)
	if f.submitErr != nil {
		return "", f.submitErr
	}
	return f.submitID, nil
}

func (f *fakeBackend) Call(ctx context.Context, service string, req client.Request, onPartial func([]byte) error) (*client.Result, error) {
	f.record(service, req)
	return f.call(ctx, onPartial)
}

func (f *fakeBackend) Query(ctx context.Context, service string, body ...[]byte) ([]byte, error) {
	var req client.Request
	if len(body) > 0 {
		req.Input = body[0]
	}
	f.record(service, req)
	if f.queryErr != nil {
		return nil, f.queryErr
	}
	return []byte(f.queries[service]), nil
}

func (f *fakeBackend) QueryPage(ctx context.Context, service string, opt client.PageOptions) ([]byte, string, error) {
	f.record(service, client.Request{})
	f.mu.Lock()
	f.pageOpts = append(f.pageOpts, opt)
	f.mu.Unlock()
	if f.queryErr != nil {
		return nil, "", f.queryErr
	}
	if f.pages != nil {
		body, next, err := f.pages(service, opt)
		return []byte(body), next, err
	}
	return []byte(f.queries[service]), "", nil
}

func (f *fakeBackend) Job(ctx context.Context, id string) (protocol.JobInfo, error) {
	f.record("SERVER-JOB", client.Request{Input: []byte(id)})
	return f.job(id)
}

func (f *fakeBackend) Cancel(ctx context.Context, id string) (protocol.JobInfo, error) {
	f.record("SERVER-CANCEL", client.Request{Input: []byte(id)})
	return f.job(id)
}

func (f *fakeBackend) Retry(ctx context.Context, id string) (protocol.JobInfo, error) {
	f.record("SERVER-RETRY", client.Request{Input: []byte(id)})
	return f.job(id)
}

func (f *fakeBackend) WatchJob(id string) (<-chan struct{}, func()) {
	if f.watching != nil {
		f.watching <- id
	}
	ch := f.finished
	if ch == nil {
		ch = make(chan struct{})
	}
	return ch, func() {}
}

func (f *fakeBackend) Ping(ctx context.Context) error { return f.pingErr }

// newGateway returns a Gateway over fb; cfg.Backend is set for the caller.
func newGateway(t *testing.T, fb *fakeBackend, cfg Config) *Gateway {
	t.Helper()
	cfg.Backend = fb
	if cfg.Hosts == nil {
		// httptest.NewRequest's Host, on no connection.
		cfg.Hosts = []string{"example.com"}
	}
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// serve runs one request through g with a recorder. headers are name,
// value pairs.
func serve(g http.Handler, method, target string, body io.Reader, headers ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return record(g, r)
}

// newRequest is httptest.NewRequest with a string body and headers.
func newRequest(method, target, body string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return r
}

// record runs r through g with a recorder.
func record(g http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w
}

// errorOf decodes a JSON error answer, failing the test when it is not one.
func errorOf(t *testing.T, w *httptest.ResponseRecorder) errorBody {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %q", ct, w.Body.String())
	}
	var e errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	if e.Error == "" || e.Code == "" {
		t.Fatalf("error body %q lacks error or code", w.Body.String())
	}
	return e
}

// wantError checks a JSON error answer's status and code.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) errorBody {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %q", w.Code, status, w.Body.String())
	}
	e := errorOf(t, w)
	if e.Code != code {
		t.Fatalf("code %q, want %q (%s)", e.Code, code, e.Error)
	}
	return e
}

func intp(n int) *int { return &n }

func body(s string) io.Reader { return strings.NewReader(s) }
