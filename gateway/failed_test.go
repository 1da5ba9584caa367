package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
	"github.com/zmws/zmws/worker"
)

// GET /jobs?state=failed and POST /jobs/retry?state=failed&service=S pass
// their filters and cursor to the broker, link the next page or batch,
// and ask for the caller's own jobs when its token is not admin; a
// missing state or service is 400 naming it.
func TestGateway_FailedJobs(t *testing.T) {
	ts, toks := testTokens(t)
	fin := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC)
	fb := &fakeBackend{failed: func(opt client.FailedOptions) ([]protocol.JobInfo, protocol.RetryReport, string, error) {
		jobs := []protocol.JobInfo{{ID: "01F", Service: "S", State: protocol.JobFailed, Finished: &fin, Code: protocol.CodeJobFailed, Output: []byte("x")}}
		return jobs, protocol.RetryReport{Requeued: 1, Jobs: []string{"01F"}, Refused: []protocol.RetryRefusal{}}, "CUR", nil
	}}
	g, err := New(Config{Backend: fb, Tokens: ts, Hosts: []string{"example.com"}, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	do := func(token, method, target string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, nil)
		r.Header.Set("Authorization", "Bearer "+toks[token])
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w
	}
	lastOpt := func() client.FailedOptions {
		fb.mu.Lock()
		defer fb.mu.Unlock()
		return fb.failedOpts[len(fb.failedOpts)-1]
	}

	w := do("admin", "GET", "/jobs?state=failed&service=S&since=1h&limit=2")
	if w.Code != 200 {
		t.Fatalf("GET /jobs: %d %s", w.Code, w.Body)
	}
	if got, want := lastOpt(), (client.FailedOptions{Service: "S", Since: "1h", Limit: 2}); got != want {
		t.Errorf("the admin's options %+v, want %+v", got, want)
	}
	if link := w.Header().Get("Link"); link != `</jobs?after=CUR&limit=2&service=S&since=1h&state=failed>; rel="next"` {
		t.Errorf("Link %q", link)
	}
	var views []protocol.JobView
	if err := json.Unmarshal(w.Body.Bytes(), &views); err != nil || len(views) != 1 || views[0].ID != "01F" || views[0].Finished == nil {
		t.Errorf("body %s (%v)", w.Body, err)
	}
	if w := do("all", "GET", "/jobs?state=failed&after=CUR"); w.Code != 200 || lastOpt() != (client.FailedOptions{Owner: "token:all", After: "CUR"}) {
		t.Errorf("a token not admin: %d, options %+v", w.Code, lastOpt())
	}

	w = do("str", "POST", "/jobs/retry?state=failed&service=S&owner=token:admin")
	var rep retryFailedView
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &rep) != nil || rep.Requeued != 1 || rep.Next != "CUR" {
		t.Fatalf("POST /jobs/retry: %d %s", w.Code, w.Body)
	}
	if got := lastOpt(); got.Owner != "token:str" || got.Service != "S" {
		t.Errorf("a token not admin retries %+v, want its own jobs", got)
	}
	if link := w.Header().Get("Link"); !strings.HasPrefix(link, "</jobs/retry?after=CUR&") {
		t.Errorf("Link %q", link)
	}

	for _, tc := range []struct{ method, target, name string }{
		{"GET", "/jobs", "state"},
		{"GET", "/jobs?state=complete", "state"},
		{"GET", "/jobs?state=failed&limit=0", "limit"},
		{"POST", "/jobs/retry?state=failed", "service"},
	} {
		w := do("admin", tc.method, tc.target)
		if w.Code != 400 || !strings.Contains(w.Body.String(), tc.name) {
			t.Errorf("%s %s: %d %s, want 400 naming %s", tc.method, tc.target, w.Code, w.Body, tc.name)
		}
	}
	if w := do("admin", "GET", "/jobs/retry"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /jobs/retry: %d", w.Code)
	}
	if w := do("admin", "POST", "/jobs"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /jobs: %d", w.Code)
	}
}

// Through a real broker with a journal and a history of 2: GET /jobs lists
// all 4 failed jobs, paged by the Link; POST /jobs/retry requeues those of
// one service to a worker that now succeeds.
func TestE2E_FailedJobsFromTheJournal(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), store.BoltFile), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := newStackBroker(t, Config{}, BrokerConfig{}, st, broker.Config{Heartbeat: 100 * time.Millisecond, Liveness: 20, History: 2})
	var ok atomic.Bool
	flaky := func(ctx context.Context, j *worker.Job) ([]byte, error) {
		if ok.Load() {
			return []byte("ok"), nil
		}
		return nil, &worker.ExitError{Code: 2, Err: errors.New("no")}
	}
	s.worker(t, "A", 1, flaky)
	s.worker(t, "B", 1, flaky)
	for _, svc := range []string{"A", "A", "A", "B"} {
		if resp, body := s.post(t, "/"+svc, "text/plain", "x"); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /%s: %d %s", svc, resp.StatusCode, body)
		}
	}
	var all []protocol.JobView
	zmqtest.Eventually(t, "4 failed jobs", waitLong, func() bool {
		all = nil
		path := "/jobs?state=failed&limit=3"
		for path != "" {
			resp, body := s.get(t, path)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
			}
			all = append(all, decodeJSON[[]protocol.JobView](t, body)...)
			path, _ = strings.CutPrefix(strings.TrimSuffix(resp.Header.Get("Link"), `>; rel="next"`), "<")
		}
		return len(all) == 4
	})
	ok.Store(true)
	resp, body := s.post(t, "/jobs/retry?state=failed&service=A", "", "")
	rep := decodeJSON[retryFailedView](t, body)
	if resp.StatusCode != 200 || rep.Requeued != 3 || len(rep.Refused) != 0 || rep.Next != "" {
		t.Fatalf("POST /jobs/retry: %d %s", resp.StatusCode, body)
	}
	zmqtest.Eventually(t, "only the job of B failed", waitLong, func() bool {
		_, body := s.get(t, "/jobs?state=failed")
		left := decodeJSON[[]protocol.JobView](t, body)
		return len(left) == 1 && left[0].Service == "B"
	})
}
