package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

func TestGateway_AsyncAccepted(t *testing.T) {
	fb := &fakeBackend{submitID: "01JOB"}
	g := newGateway(t, fb, Config{})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		w := serve(g, method, "/STR-REV?str=Hello,+world", nil)
		if w.Code != http.StatusAccepted {
			t.Fatalf("%s: status %d, body %q", method, w.Code, w.Body.String())
		}
		if loc := w.Header().Get("Location"); loc != "/jobs/01JOB" {
			t.Errorf("Location %q", loc)
		}
		var got map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"job_id": "01JOB", "service": "STR-REV"}; !reflect.DeepEqual(got, want) {
			t.Errorf("body %v, want %v", got, want)
		}
		svc, req, _ := fb.last()
		if svc != "STR-REV" || req.Params["str"] != "Hello, world" || req.Input != nil {
			t.Errorf("submitted %s %+v", svc, req)
		}
	}
}

func TestGateway_Params(t *testing.T) {
	multi := func() (string, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		mw.WriteField("a", "1")
		mw.WriteField("b", "two")
		fw, _ := mw.CreateFormFile("input", "in.txt")
		fw.Write([]byte("file content"))
		mw.Close()
		return mw.FormDataContentType(), b.String()
	}
	mct, mbody := multi()
	for _, tc := range []struct {
		name, target, ctype, body string
		params                    map[string]string
		input                     string
	}{
		{"none", "/S", "", "", nil, ""},
		{"query", "/S?a=1&b=x+y&a=2", "", "", map[string]string{"a": "2", "b": "x y"}, ""},
		{"form", "/S", "application/x-www-form-urlencoded", "a=1&b=%C3%A9", map[string]string{"a": "1", "b": "é"}, ""},
		{"form beats query", "/S?a=q&c=3", "application/x-www-form-urlencoded; charset=utf-8", "a=f", map[string]string{"a": "f", "c": "3"}, ""},
		{"json", "/S?q=1", "application/json", `{"s":"x","n":1.50,"i":-3,"t":true,"f":false}`,
			map[string]string{"q": "1", "s": "x", "n": "1.50", "i": "-3", "t": "true", "f": "false"}, ""},
		{"json null drops", "/S?a=q", "application/json", `{"a":null,"b":"2"}`, map[string]string{"b": "2"}, ""},
		{"json suffix", "/S", "application/vnd.api+json", `{"a":"1"}`, map[string]string{"a": "1"}, ""},
		{"json empty", "/S", "application/json", ``, nil, ""},
		{"raw text", "/S?a=1", "text/plain", "hello\nworld", map[string]string{"a": "1"}, "hello\nworld"},
		{"raw no type", "/S", "", "bytes", nil, "bytes"},
		{"raw binary", "/S", "application/octet-stream", "\x00\xff", nil, "\x00\xff"},
		{"multipart", "/S?a=q", mct, mbody, map[string]string{"a": "1", "b": "two"}, "file content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{submitID: "J"}
			g := newGateway(t, fb, Config{})
			w := serve(g, http.MethodPost, tc.target, body(tc.body), "Content-Type", tc.ctype)
			if w.Code != http.StatusAccepted {
				t.Fatalf("status %d, body %q", w.Code, w.Body.String())
			}
			_, req, _ := fb.last()
			if !reflect.DeepEqual(req.Params, tc.params) {
				t.Errorf("params %q, want %q", req.Params, tc.params)
			}
			if string(req.Input) != tc.input || (tc.input == "" && req.Input != nil) {
				t.Errorf("input %q, want %q", req.Input, tc.input)
			}
		})
	}
}

func TestGateway_BadParams(t *testing.T) {
	for _, tc := range []struct {
		name, target, ctype, body, want string
	}{
		{"bad query", "/S?a=%zz", "", "", "query string"},
		{"bad form", "/S", "application/x-www-form-urlencoded", "a=%zz", "form body"},
		{"bad content type", "/S", "text/plain; =x", "hi", "Content-Type"},
		{"bad json", "/S", "application/json", `{"a":`, "malformed JSON"},
		{"json trailing", "/S", "application/json", `{"a":"1"} {}`, "after the object"},
		{"json array", "/S", "application/json", `["a"]`, "not an array"},
		{"json string", "/S", "application/json", `"a"`, "not a string"},
		{"json nested object", "/S", "application/json", `{"a":{"b":"c"}}`, `"a" is an object`},
		{"json nested array", "/S", "application/json", `{"a":[1]}`, `"a" is an array`},
		{"multipart no boundary", "/S", "multipart/form-data", "x", "boundary"},
		{"empty name", "/S?=x", "", "", "empty name"},
		{"empty json name", "/S", "application/json", `{"":"x"}`, "empty name"},
		{"one variable", "/S?job-id=1&job_id=2", "", "", `"job-id" and "job_id" are both ZMWS_PARAM_JOB_ID`},
		{"one variable, query and body", "/S?Job-Id=1", "application/x-www-form-urlencoded", "job_id=2", "ZMWS_PARAM_JOB_ID"},
		{"multipart without boundary line", "/S", "multipart/form-data; boundary=zz", "x", "closing boundary"},
		{"multipart empty", "/S", "multipart/form-data; boundary=zz", "", "closing boundary"},
		{"multipart cut", "/S", "multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n", "closing boundary"},
		{"multipart garbage", "/S", "multipart/form-data; boundary=zz", "--zz\r\nno colon here\r\n\r\nx\r\n--zz--\r\n", "multipart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{submitID: "J"}
			g := newGateway(t, fb, Config{})
			w := serve(g, http.MethodPost, tc.target, body(tc.body), "Content-Type", tc.ctype)
			e := wantError(t, w, http.StatusBadRequest, protocol.CodeBadRequest)
			if !strings.Contains(e.Error, tc.want) {
				t.Errorf("error %q, want it to mention %q", e.Error, tc.want)
			}
			if _, _, n := fb.last(); n != 0 {
				t.Errorf("backend called %d times", n)
			}
		})
	}
}

func TestGateway_MultipartExtraFile(t *testing.T) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile("other", "x.bin")
	fw.Write([]byte("x"))
	mw.Close()
	g := newGateway(t, &fakeBackend{submitID: "J"}, Config{})
	w := serve(g, http.MethodPost, "/S", &b, "Content-Type", mw.FormDataContentType())
	wantError(t, w, http.StatusBadRequest, protocol.CodeBadRequest)
}

func TestGateway_BodyTooLarge(t *testing.T) {
	fb := &fakeBackend{submitID: "J", call: func(context.Context, func([]byte) error) (*client.Result, error) {
		return &client.Result{Status: protocol.StatusComplete}, nil
	}}
	g := newGateway(t, fb, Config{MaxBody: 10})
	big := strings.Repeat("x", 11)
	for _, tc := range []struct{ name, target, ctype string }{
		{"raw", "/S", "text/plain"},
		{"sync raw", "/SYNC-S", "text/plain"},
		{"form", "/S", "application/x-www-form-urlencoded"},
		{"json", "/S", "application/json"},
		{"multipart", "/S", "multipart/form-data; boundary=zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Both with a Content-Length (refused before reading) and
			// without one (chunked: refused while reading).
			for _, length := range []int64{11, -1} {
				r := newRequest(http.MethodPost, tc.target, big, "Content-Type", tc.ctype)
				r.ContentLength = length
				w := record(g, r)
				e := wantError(t, w, http.StatusRequestEntityTooLarge, codeTooLarge)
				if !strings.Contains(e.Error, "10 bytes") {
					t.Errorf("error %q", e.Error)
				}
			}
		})
	}
	if w := serve(g, http.MethodPost, "/S", body(strings.Repeat("x", 10))); w.Code != http.StatusAccepted {
		t.Errorf("body at the limit: status %d", w.Code)
	}
}

func TestGateway_MethodNotAllowed(t *testing.T) {
	g := newGateway(t, &fakeBackend{}, Config{})
	for _, tc := range []struct{ method, target, allow string }{
		{http.MethodPut, "/STR-REV", "GET, POST, OPTIONS"},
		{http.MethodDelete, "/SYNC-STR-REV", "GET, POST, OPTIONS"},
		{http.MethodHead, "/STR-REV", "GET, POST, OPTIONS"},
		{"T", "/STR-REV", "GET, POST, OPTIONS"},
		{http.MethodPost, "/SERVER-JOBS", "GET, HEAD, OPTIONS"},
		{http.MethodPost, "/jobs/01JOB", "GET, HEAD, DELETE, OPTIONS"},
		{http.MethodGet, "/jobs/01JOB/retry", "POST, OPTIONS"},
		{http.MethodPost, "/healthz", "GET, HEAD, OPTIONS"},
	} {
		w := serve(g, tc.method, tc.target, nil)
		wantError(t, w, http.StatusMethodNotAllowed, codeMethodNotAllowed)
		if got := w.Header().Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.target, got, tc.allow)
		}
	}
	w := serve(g, http.MethodOptions, "/STR-REV", nil)
	if w.Code != http.StatusNoContent || w.Header().Get("Allow") != allowJob {
		t.Errorf("OPTIONS: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

func TestGateway_CancelRetryAndJobOptions(t *testing.T) {
	fb := &fakeBackend{submitID: "01JOB", job: func(id string) (protocol.JobInfo, error) {
		if id == "01DONE" {
			return protocol.JobInfo{}, &client.Error{Code: protocol.CodeConflict, Message: "job 01DONE has already finished"}
		}
		return protocol.JobInfo{ID: id, State: protocol.JobFailed, Code: protocol.CodeCancelled}, nil
	}}
	g := newGateway(t, fb, Config{})
	w := serve(g, http.MethodDelete, "/jobs/01JOB", nil)
	if svc, req, _ := fb.last(); w.Code != http.StatusOK || svc != "SERVER-CANCEL" || string(req.Input) != "01JOB" {
		t.Fatalf("DELETE: %d %s %q", w.Code, svc, req.Input)
	}
	w = serve(g, http.MethodPost, "/jobs/01JOB/retry", nil)
	if svc, _, _ := fb.last(); w.Code != http.StatusOK || svc != "SERVER-RETRY" {
		t.Fatalf("retry: %d %s", w.Code, svc)
	}
	wantError(t, serve(g, http.MethodDelete, "/jobs/01DONE", nil), http.StatusConflict, protocol.CodeConflict)

	r := httptest.NewRequest(http.MethodPost, "/S", nil)
	r.Header.Set("Zmws-Ttr", "90s")
	r.Header.Set("Zmws-Retries", "3")
	w = httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if _, req, _ := fb.last(); w.Code != http.StatusAccepted || req.TTR != 90*time.Second || req.Retries != 3 {
		t.Fatalf("options: %d %+v", w.Code, req)
	}
	for _, h := range [][2]string{{"Zmws-Ttr", "soon"}, {"Zmws-Ttr", "-1s"}, {"Zmws-Retries", "many"}, {"Zmws-Retries", "101"}} {
		r := httptest.NewRequest(http.MethodPost, "/S", nil)
		r.Header.Set(h[0], h[1])
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		wantError(t, w, http.StatusBadRequest, protocol.CodeBadRequest)
	}
}

func TestGateway_NotFound(t *testing.T) {
	refusal := &client.Error{Code: protocol.CodeUnknownService, Message: "no worker has ever provided service NOPE"}
	fb := &fakeBackend{submitErr: refusal, call: func(context.Context, func([]byte) error) (*client.Result, error) {
		return nil, refusal
	}, job: func(id string) (protocol.JobInfo, error) {
		return protocol.JobInfo{}, &client.Error{Code: protocol.CodeNotFound, Message: "no job " + id + " is known"}
	}}
	g := newGateway(t, fb, Config{})
	for _, target := range []string{"/NOPE", "/SYNC-NOPE", "/SYNC:NOPE"} {
		e := wantError(t, serve(g, http.MethodGet, target, nil), http.StatusNotFound, protocol.CodeUnknownService)
		if e.Error != refusal.Message {
			t.Errorf("%s: error %q, want the broker's", target, e.Error)
		}
	}
	// Names no worker may announce are answered without asking the broker.
	_, _, before := fb.last()
	for _, target := range []string{"/mmi.service", "/titanic.request", "/SYNC-", "/SERVER-JOB", "/SERVER-NOPE", "/SYNC-SERVER-JOBS",
		"/" + strings.Repeat("A", 300)} {
		e := wantError(t, serve(g, http.MethodGet, target, nil), http.StatusNotFound, protocol.CodeUnknownService)
		if !strings.Contains(e.Error, "no worker has ever provided service") {
			t.Errorf("%s: error %q", target, e.Error)
		}
	}
	if _, _, after := fb.last(); after != before {
		t.Errorf("backend asked about reserved names")
	}
	for _, target := range []string{"/a/b", "/jobs/", "/jobs/a/b", "/jobs/" + strings.Repeat("x", 200), "/ui/nope"} {
		wantError(t, serve(g, http.MethodGet, target, nil), http.StatusNotFound, codeNotFound)
	}
	e := wantError(t, serve(g, http.MethodGet, "/jobs/01NOPE", nil), http.StatusNotFound, protocol.CodeNotFound)
	if !strings.Contains(e.Error, "01NOPE") {
		t.Errorf("error %q", e.Error)
	}
}

func TestGateway_IdempotencyKeyHeader(t *testing.T) {
	fb := &fakeBackend{submitID: "01JOB"}
	g := newGateway(t, fb, Config{})
	r := httptest.NewRequest(http.MethodPost, "/S", nil)
	r.Header.Set("Idempotency-Key", "order-42")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if _, req, _ := fb.last(); w.Code != http.StatusAccepted || req.Key != "order-42" {
		t.Fatalf("status %d, key %q", w.Code, req.Key)
	}
	r = httptest.NewRequest(http.MethodPost, "/S", nil)
	r.Header.Set("Idempotency-Key", strings.Repeat("k", 256))
	w = httptest.NewRecorder()
	g.ServeHTTP(w, r)
	wantError(t, w, http.StatusBadRequest, protocol.CodeBadRequest)
}

func TestGateway_BackendErrors(t *testing.T) {
	for _, tc := range []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{&client.Error{Code: protocol.CodeQueueFull, Message: "queue of S is full"}, http.StatusTooManyRequests, protocol.CodeQueueFull, true},
		{&client.Error{Code: protocol.CodeBadRequest, Message: "bad"}, http.StatusBadRequest, protocol.CodeBadRequest, false},
		{&client.Error{Code: protocol.CodeStoreUnavailable, Message: "disk full"}, http.StatusServiceUnavailable, protocol.CodeStoreUnavailable, false},
		{&client.Error{Code: "something_new"}, http.StatusBadGateway, "something_new", false},
		{fmt.Errorf("submit S: %w", client.ErrTimeout), http.StatusServiceUnavailable, codeUnavailable, false},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, codeUnavailable, false},
		{client.ErrClosed, http.StatusServiceUnavailable, protocol.CodeShutdown, false},
		{ErrClosed, http.StatusServiceUnavailable, protocol.CodeShutdown, false},
		{ErrBusy, http.StatusServiceUnavailable, codeBusy, true},
		{fmt.Errorf("x: %w", client.ErrBadReply), http.StatusBadGateway, codeBadGateway, false},
		{errors.New("socket exploded"), http.StatusInternalServerError, codeInternal, false},
	} {
		fb := &fakeBackend{submitErr: tc.err, queryErr: tc.err}
		g := newGateway(t, fb, Config{})
		for _, target := range []string{"/S", "/SERVER-JOBS"} {
			w := serve(g, http.MethodGet, target, nil)
			wantError(t, w, tc.status, tc.code)
			if got := w.Header().Get("Retry-After") != ""; got != tc.retryAfter {
				t.Errorf("%v: Retry-After %q", tc.err, w.Header().Get("Retry-After"))
			}
		}
	}
}

func TestGateway_SyncStreams(t *testing.T) {
	fb := &fakeBackend{call: func(ctx context.Context, onPartial func([]byte) error) (*client.Result, error) {
		for _, s := range []string{"one ", "two "} {
			if err := onPartial([]byte(s)); err != nil {
				return nil, err
			}
		}
		return &client.Result{JobID: "01J", Status: protocol.StatusComplete, ExitCode: intp(0), Output: []byte("three")}, nil
	}}
	g := newGateway(t, fb, Config{})
	for _, target := range []string{"/SYNC-S?x=1", "/SYNC:S?x=1"} {
		w := serve(g, http.MethodPost, target, body("in"), "Content-Type", "text/plain")
		if w.Code != http.StatusOK || w.Body.String() != "one two three" {
			t.Fatalf("%s: %d %q", target, w.Code, w.Body.String())
		}
		if !w.Flushed {
			t.Error("not flushed")
		}
		res := w.Result()
		if got := res.Header.Get("Trailer"); got != trailers {
			t.Errorf("Trailer %q", got)
		}
		want := map[string]string{HeaderStatus: StatusComplete, HeaderExitCode: "0", HeaderJobID: "01J", HeaderCode: "", HeaderError: ""}
		for k, v := range want {
			if got := res.Trailer.Get(k); got != v {
				t.Errorf("trailer %s = %q, want %q", k, got, v)
			}
		}
		svc, req, _ := fb.last()
		if svc != target[1:strings.Index(target, "?")] || req.Params["x"] != "1" || string(req.Input) != "in" {
			t.Errorf("called %s %+v", svc, req)
		}
	}
}

func TestGateway_SyncCompleteWithoutPartials(t *testing.T) {
	fb := &fakeBackend{call: func(ctx context.Context, onPartial func([]byte) error) (*client.Result, error) {
		return &client.Result{JobID: "01J", Status: protocol.StatusComplete, Output: []byte("dlrow ,olleH")}, nil
	}}
	g := newGateway(t, fb, Config{})
	w := serve(g, http.MethodGet, "/SYNC-STR-REV?str=Hello,+world", nil)
	if w.Code != http.StatusOK || w.Body.String() != "dlrow ,olleH" {
		t.Fatalf("%d %q", w.Code, w.Body.String())
	}
	h := w.Result().Header
	if h.Get(HeaderStatus) != StatusComplete || h.Get(HeaderJobID) != "01J" || h.Get(HeaderExitCode) != "" ||
		h.Get("Trailer") != "" || h.Get("Content-Length") != "12" {
		t.Errorf("headers %v", h)
	}
}

func TestGateway_SyncFailedBeforeOutput(t *testing.T) {
	for _, tc := range []struct {
		res    client.Result
		status int
		code   string
	}{
		{client.Result{JobID: "01J", Status: protocol.StatusFailed, Code: protocol.CodeJobFailed, Error: "exit status 3: boom",
			ExitCode: intp(3), Output: []byte("partial out")}, http.StatusBadGateway, protocol.CodeJobFailed},
		{client.Result{JobID: "01J", Status: protocol.StatusFailed, Code: protocol.CodeWorkerLost, Error: "worker w vanished"},
			http.StatusBadGateway, protocol.CodeWorkerLost},
		{client.Result{JobID: "01J", Status: protocol.StatusFailed, Code: protocol.CodeShutdown, Error: "broker shut down"},
			http.StatusServiceUnavailable, protocol.CodeShutdown},
		{client.Result{JobID: "01J", Status: protocol.StatusFailed}, http.StatusBadGateway, protocol.CodeJobFailed},
	} {
		fb := &fakeBackend{call: func(context.Context, func([]byte) error) (*client.Result, error) {
			res := tc.res
			return &res, nil
		}}
		g := newGateway(t, fb, Config{})
		w := serve(g, http.MethodGet, "/SYNC-S", nil)
		e := wantError(t, w, tc.status, tc.code)
		if e.JobID != "01J" || !reflect.DeepEqual(e.ExitCode, tc.res.ExitCode) {
			t.Errorf("error body %+v", e)
		}
		if tc.res.Error != "" && e.Error != tc.res.Error {
			t.Errorf("error %q, want %q", e.Error, tc.res.Error)
		}
		if len(tc.res.Output) > 0 && (e.Output == nil || *e.Output != string(tc.res.Output) || e.OutputEncoding != protocol.OutputUTF8) {
			t.Errorf("output %v %q", e.Output, e.OutputEncoding)
		}
		if got := w.Header().Get(HeaderStatus); got != StatusFail {
			t.Errorf("%s header %q", HeaderStatus, got)
		}
	}
}

func TestGateway_SyncFailedAfterOutput(t *testing.T) {
	fb := &fakeBackend{call: func(ctx context.Context, onPartial func([]byte) error) (*client.Result, error) {
		onPartial([]byte("working\n"))
		return &client.Result{JobID: "01J", Status: protocol.StatusFailed, Code: protocol.CodeJobFailed,
			Error: "exit status 4:\nline two\x01", ExitCode: intp(4), Output: []byte("tail")}, nil
	}}
	g := newGateway(t, fb, Config{})
	w := serve(g, http.MethodGet, "/SYNC-S", nil)
	if w.Code != http.StatusOK || w.Body.String() != "working\ntail" {
		t.Fatalf("%d %q", w.Code, w.Body.String())
	}
	tr := w.Result().Trailer
	want := map[string]string{HeaderStatus: StatusFail, HeaderExitCode: "4", HeaderJobID: "01J",
		HeaderCode: protocol.CodeJobFailed, HeaderError: "exit status 4: line two?"}
	for k, v := range want {
		if got := tr.Get(k); got != v {
			t.Errorf("trailer %s = %q, want %q", k, got, v)
		}
	}
}

// TestGateway_SyncBrokenAfterOutput: a stream whose broker went away (the
// gateway closed, the job lost by a restarted broker, a broker that stopped
// answering) ends with trailers saying so.
func TestGateway_SyncBrokenAfterOutput(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{client.ErrClosed, protocol.CodeShutdown},
		{fmt.Errorf("call SYNC-S: the broker no longer knows job J: %w", client.ErrLost), codeJobLost},
		{fmt.Errorf("call SYNC-S: job J: the broker does not answer: %w", client.ErrTimeout), codeUnavailable},
	} {
		fb := &fakeBackend{call: func(ctx context.Context, onPartial func([]byte) error) (*client.Result, error) {
			onPartial([]byte("x"))
			return nil, tc.err
		}}
		g := newGateway(t, fb, Config{})
		w := serve(g, http.MethodGet, "/SYNC-S", nil)
		tr := w.Result().Trailer
		if w.Code != http.StatusOK || tr.Get(HeaderStatus) != StatusFail || tr.Get(HeaderCode) != tc.code || tr.Get(HeaderError) == "" {
			t.Errorf("%v: %d trailers %v, want FAIL with code %s", tc.err, w.Code, tr, tc.code)
		}
	}
}

func TestGateway_SyncRefused(t *testing.T) {
	fb := &fakeBackend{call: func(context.Context, func([]byte) error) (*client.Result, error) {
		return nil, &client.Error{Code: protocol.CodeQueueFull, Message: "full"}
	}}
	g := newGateway(t, fb, Config{})
	w := serve(g, http.MethodGet, "/SYNC-S", nil)
	wantError(t, w, http.StatusTooManyRequests, protocol.CodeQueueFull)
	if w.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

func TestGateway_ServerQueries(t *testing.T) {
	fb := &fakeBackend{queries: map[string]string{}}
	for _, s := range []string{protocol.ServerWorkers, protocol.ServerJobs, protocol.ServerActive, protocol.ServerQueue, protocol.ServerServices} {
		fb.queries[s] = `[{"q":"` + s + `"}]`
	}
	g := newGateway(t, fb, Config{})
	for s, want := range fb.queries {
		w := serve(g, http.MethodGet, "/"+s, nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || strings.TrimSpace(w.Body.String()) != want {
			t.Errorf("%s: %d %q %q", s, w.Code, w.Header().Get("Content-Type"), w.Body.String())
		}
		if svc, _, _ := fb.last(); svc != s {
			t.Errorf("asked %s, want %s", svc, s)
		}
	}
}

func TestGateway_ServerWorkersAll(t *testing.T) {
	fb := &fakeBackend{queries: map[string]string{protocol.ServerWorkers: `[]`}}
	g := newGateway(t, fb, Config{})
	for target, all := range map[string]bool{
		"/SERVER-WORKERS": false, "/SERVER-WORKERS?all=0": false, "/SERVER-WORKERS?all=false": false,
		"/SERVER-WORKERS?all=1": true, "/SERVER-WORKERS?all=true": true, "/SERVER-WORKERS?all": true,
		"/SERVER-WORKERS?all=0&all=1": true,
	} {
		if w := serve(g, http.MethodGet, target, nil); w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", target, w.Code, w.Body.String())
		}
		want := ""
		if all {
			want = protocol.WorkersAll
		}
		if svc, req, _ := fb.last(); svc != protocol.ServerWorkers || string(req.Input) != want {
			t.Errorf("%s asked %s with %q, want %q", target, svc, req.Input, want)
		}
	}
	wantError(t, serve(g, http.MethodGet, "/SERVER-WORKERS?all=yes", nil), http.StatusBadRequest, codeBadRequest)
	// Other listings take no all.
	fb.queries[protocol.ServerActive] = `[]`
	serve(g, http.MethodGet, "/SERVER-ACTIVE?all=1", nil)
	if svc, req, _ := fb.last(); svc != protocol.ServerActive || req.Input != nil {
		t.Errorf("SERVER-ACTIVE?all=1 asked %s with %q", svc, req.Input)
	}
}

func TestGateway_Health(t *testing.T) {
	fb := &fakeBackend{}
	g := newGateway(t, fb, Config{})
	w := serve(g, http.MethodGet, "/healthz", nil)
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"status":"ok"}` {
		t.Errorf("%d %q", w.Code, w.Body.String())
	}
	fb.pingErr = client.ErrTimeout
	w = serve(g, http.MethodGet, "/healthz", nil)
	wantError(t, w, http.StatusServiceUnavailable, codeUnavailable)
	fb.pingErr = fmt.Errorf("%w: disk full", ErrStoreFailing)
	w = serve(g, http.MethodGet, "/healthz", nil)
	wantError(t, w, http.StatusServiceUnavailable, protocol.CodeStoreUnavailable)
}

func TestGateway_Job(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		output   []byte
		trunc    bool
		wantOut  string
		encoding string
	}{
		{"text", []byte("héllo"), false, "héllo", protocol.OutputUTF8},
		{"binary", []byte{0xff, 0x00, 0xfe}, false, base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0xfe}), protocol.OutputBase64},
		{"cut in a rune", []byte("ab\xc3"), true, "ab", protocol.OutputUTF8},
		{"none", nil, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{job: func(id string) (protocol.JobInfo, error) {
				return protocol.JobInfo{ID: id, Service: "S", State: protocol.JobComplete, Created: created, Finished: &created,
					Attempts: 1, Worker: "w1", ExitCode: intp(0), Params: map[string]string{"a": "1"},
					Output: tc.output, OutputTruncated: tc.trunc}, nil
			}}
			g := newGateway(t, fb, Config{})
			w := serve(g, http.MethodGet, "/jobs/01J", nil)
			if w.Code != http.StatusOK {
				t.Fatalf("%d %q", w.Code, w.Body.String())
			}
			var got map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["id"] != "01J" || got["state"] != "complete" || got["service"] != "S" || got["worker"] != "w1" ||
				got["exit_code"] != 0.0 || got["attempts"] != 1.0 || got["created"] != "2025-01-02T03:04:05Z" {
				t.Errorf("job %v", got)
			}
			out, _ := got["output"].(string)
			enc, _ := got["output_encoding"].(string)
			if out != tc.wantOut || enc != tc.encoding {
				t.Errorf("output %q (%s), want %q (%s)", out, enc, tc.wantOut, tc.encoding)
			}
		})
	}
}

func TestGateway_JobWaitWakesOnEvent(t *testing.T) {
	finished := make(chan struct{})
	watching := make(chan string, 1)
	done := make(chan struct{})
	fb := &fakeBackend{finished: finished, watching: watching, job: func(id string) (protocol.JobInfo, error) {
		select {
		case <-done:
			return protocol.JobInfo{ID: id, State: protocol.JobComplete}, nil
		default:
			return protocol.JobInfo{ID: id, State: protocol.JobActive}, nil
		}
	}}
	// Recheck is an hour: only the event can end this wait in time.
	g := newGateway(t, fb, Config{Recheck: time.Hour})
	res := make(chan *httptest.ResponseRecorder, 1)
	go func() { res <- serve(g, http.MethodGet, "/jobs/01J?wait=1h", nil) }()
	if id := <-watching; id != "01J" {
		t.Fatalf("watching %q", id)
	}
	close(done)
	close(finished)
	w := <-res
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"state":"complete"`) {
		t.Errorf("%d %q", w.Code, w.Body.String())
	}
}

func TestGateway_JobWaitRechecks(t *testing.T) {
	n := 0
	fb := &fakeBackend{job: func(id string) (protocol.JobInfo, error) {
		n++ // calls are sequential within one request
		if n < 3 {
			return protocol.JobInfo{ID: id, State: protocol.JobQueued}, nil
		}
		return protocol.JobInfo{ID: id, State: protocol.JobFailed, Code: protocol.CodeJobFailed}, nil
	}}
	g := newGateway(t, fb, Config{Recheck: time.Millisecond})
	w := serve(g, http.MethodGet, "/jobs/01J?wait=1h", nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"state":"failed"`) {
		t.Errorf("%d %q", w.Code, w.Body.String())
	}
}

func TestGateway_JobWaitEnds(t *testing.T) {
	fb := &fakeBackend{job: func(id string) (protocol.JobInfo, error) {
		return protocol.JobInfo{ID: id, State: protocol.JobActive}, nil
	}}
	// wait=1h is capped at MaxWait.
	g := newGateway(t, fb, Config{MaxWait: 20 * time.Millisecond, Recheck: time.Hour})
	w := serve(g, http.MethodGet, "/jobs/01J?wait=1h", nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"state":"active"`) {
		t.Errorf("%d %q", w.Code, w.Body.String())
	}
}

func TestGateway_JobBadWait(t *testing.T) {
	fb := &fakeBackend{job: func(id string) (protocol.JobInfo, error) { return protocol.JobInfo{ID: id}, nil }}
	g := newGateway(t, fb, Config{})
	for _, q := range []string{"wait=", "wait=soon", "wait=-1s", "wait=-3", "wait=NaN", "wait=%zz"} {
		wantError(t, serve(g, http.MethodGet, "/jobs/01J?"+q, nil), http.StatusBadRequest, protocol.CodeBadRequest)
	}
}

func TestParseWait(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want time.Duration
	}{
		{"", 0}, {"wait=0", 0}, {"wait=30s", 30 * time.Second}, {"wait=1.5", 1500 * time.Millisecond},
		{"wait=2m", 2 * time.Minute}, {"wait=1h", 5 * time.Minute}, {"wait=99999999", 5 * time.Minute}, {"wait=Inf", 5 * time.Minute},
	} {
		q, _ := url.ParseQuery(tc.q)
		got, err := parseWait(q, 5*time.Minute)
		if err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.q, got, err, tc.want)
		}
	}
}

func TestGateway_CORS(t *testing.T) {
	fb := &fakeBackend{submitID: "J"}
	none := newGateway(t, fb, Config{})
	w := serve(none, http.MethodGet, "/S", nil, "Origin", "https://a.example")
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("no CORS configured: ACAO %q", got)
	}

	star := newGateway(t, fb, Config{CORS: []string{"*"}})
	w = serve(star, http.MethodGet, "/S", nil, "Origin", "https://a.example")
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("*: ACAO %q", got)
	}
	if !strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), HeaderStatus) {
		t.Errorf("expose %q", w.Header().Get("Access-Control-Expose-Headers"))
	}

	list := newGateway(t, fb, Config{CORS: []string{"https://a.example", "http://localhost:8080/"}})
	for origin, want := range map[string]string{
		"https://a.example":     "https://a.example",
		"http://localhost:8080": "http://localhost:8080",
		"https://evil.example":  "",
		"":                      "",
	} {
		w := serve(list, http.MethodGet, "/S", nil, "Origin", origin)
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("origin %q: ACAO %q, want %q", origin, got, want)
		}
		if w.Header().Get("Vary") != "Origin" {
			t.Errorf("origin %q: Vary %q", origin, w.Header().Get("Vary"))
		}
	}

	w = serve(list, http.MethodOptions, "/SYNC-S", nil, "Origin", "https://a.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	h := w.Header()
	if w.Code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://a.example" ||
		h.Get("Access-Control-Allow-Methods") != allowJob || h.Get("Access-Control-Allow-Headers") != "content-type" ||
		h.Get("Access-Control-Max-Age") == "" {
		t.Errorf("preflight: %d %v", w.Code, h)
	}
	w = serve(list, http.MethodOptions, "/SYNC-S", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "" || w.Header().Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight from a stranger: %d %v", w.Code, w.Header())
	}
	// The GETs from origins CORS does not allow ran no job (see
	// TestGateway_CrossOrigin), nor did the preflights.
	if _, _, n := fb.last(); n != 4 {
		t.Errorf("backend called %d times, want 4 (preflights and refused origins never reach it)", n)
	}

	for _, bad := range []string{"a.example", "https://a.example/path", "ftp://a.example", "https://", "https://a.example?x"} {
		if _, err := New(Config{Backend: fb, CORS: []string{bad}}); err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
}

func TestNew_NeedsBackend(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without Backend succeeded")
	}
}
