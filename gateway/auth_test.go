package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/syncbuf"
	"github.com/zmws/zmws/protocol"
)

// testTokens writes a tokens file with three tokens and returns its
// reloadable set and the tokens by name: "admin" (admin), "str" (services
// STR-* only) and "all" (every service, not admin).
func testTokens(t *testing.T) (*auth.TokenSet, map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.toml")
	toks := map[string]string{}
	for name, r := range map[string]auth.Rights{
		"admin": {Admin: true},
		"str":   {Services: []string{"STR-*"}},
		"all":   {},
	} {
		tok, err := auth.AddToken(path, name, r)
		if err != nil {
			t.Fatal(err)
		}
		toks[name] = tok
	}
	ts, err := auth.NewTokenSet(path)
	if err != nil {
		t.Fatal(err)
	}
	return ts, toks
}

// authBackend answers every route: jobs named after their service
// ("J-STR-REV" is a STR-REV job, submitted with the token "str"; the
// other jobs with "all"), with output that must not leak.
func authBackend() *fakeBackend {
	return &fakeBackend{
		submitID: "01JOB",
		call: func(context.Context, func([]byte) error) (*client.Result, error) {
			return &client.Result{Status: protocol.StatusComplete, Output: []byte("done")}, nil
		},
		queries: map[string]string{protocol.ServerServices: "[]", protocol.ServerJobs: "[]",
			protocol.ServerActive: "[]", protocol.ServerQueue: "[]", protocol.ServerWorkers: "[]",
			protocol.ServerPause: "{}", protocol.ServerResume: "{}", protocol.ServerDrain: "{}"},
		job: func(id string) (protocol.JobInfo, error) {
			service, ok := strings.CutPrefix(id, "J-")
			if !ok {
				return protocol.JobInfo{}, &client.Error{Code: protocol.CodeNotFound, Message: "no job " + id}
			}
			owner := "token:all"
			if strings.HasPrefix(service, "STR-") {
				owner = "token:str"
			}
			return protocol.JobInfo{ID: id, Service: service, State: protocol.JobComplete, Owner: owner,
				Output: []byte("secret output of " + id)}, nil
		},
	}
}

// syncBuffer is a log destination tests read while others write.
type syncBuffer = syncbuf.Buffer

func TestGateway_Tokens(t *testing.T) {
	ts, toks := testTokens(t)
	var logs syncBuffer
	fb := authBackend()
	g, err := New(Config{Backend: fb, Tokens: ts, CORS: []string{"https://app.example"}, Hosts: []string{"example.com"},
		Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	type tc struct {
		token          string // a name in toks, "" for none, or "raw:..." sent as is
		method, target string
		status         int
		code           string // for errors
	}
	var cases []tc
	// Every route, without a token and with a wrong one: 401, except
	// /healthz.
	routes := [][2]string{
		{"GET", "/STR-REV"}, {"POST", "/SYNC-STR-REV"}, {"GET", "/SYNC:STR-REV"}, {"GET", "/NOPE"},
		{"GET", "/SERVER-SERVICES"}, {"GET", "/SERVER-JOBS"}, {"HEAD", "/SERVER-WORKERS"},
		{"GET", "/jobs/J-STR-REV"}, {"DELETE", "/jobs/J-STR-REV"}, {"POST", "/jobs/J-STR-REV/retry"},
		{"GET", "/mmi.service"}, {"POST", "/services/SLEEP/pause"}, {"POST", "/workers/w1/drain"},
	}
	for _, rt := range routes {
		cases = append(cases,
			tc{"", rt[0], rt[1], 401, codeUnauthorized},
			tc{"raw:Bearer zmws_wrong", rt[0], rt[1], 401, codeUnauthorized},
			tc{"raw:Basic " + toks["admin"], rt[0], rt[1], 401, codeUnauthorized},
			tc{"raw:Bearer " + toks["admin"][:len(toks["admin"])-1], rt[0], rt[1], 401, codeUnauthorized},
			tc{"raw:Bearer ", rt[0], rt[1], 401, codeUnauthorized},
		)
	}
	cases = append(cases,
		tc{"", "GET", "/healthz", 200, ""},
		tc{"raw:Bearer zmws_wrong", "GET", "/healthz", 200, ""},
		// A submit-only token: its services, SERVER-SERVICES and its jobs.
		tc{"str", "GET", "/STR-REV", 202, ""},
		tc{"str", "POST", "/SYNC-STR-REV", 200, ""},
		tc{"str", "GET", "/SYNC:STR-REV", 200, ""},
		tc{"str", "GET", "/SERVER-SERVICES", 200, ""},
		tc{"str", "GET", "/jobs/J-STR-REV", 200, ""},
		tc{"str", "GET", "/jobs/J-STR-REV?wait=1s", 200, ""},
		tc{"str", "GET", "/jobs/UNKNOWN", 404, protocol.CodeNotFound},
		tc{"str", "GET", "/SLEEP", 403, codeForbidden},
		tc{"str", "POST", "/SYNC-SLEEP", 403, codeForbidden},
		tc{"str", "GET", "/SYNC:SLEEP", 403, codeForbidden},
		tc{"str", "GET", "/jobs/J-SLEEP", 403, codeForbidden},
		tc{"str", "GET", "/jobs/J-SLEEP?wait=5m", 403, codeForbidden},
		tc{"str", "GET", "/SERVER-JOBS", 403, codeForbidden},
		tc{"str", "GET", "/SERVER-ACTIVE", 403, codeForbidden},
		tc{"str", "GET", "/SERVER-QUEUE", 403, codeForbidden},
		tc{"str", "GET", "/SERVER-WORKERS", 403, codeForbidden},
		tc{"str", "DELETE", "/jobs/J-STR-REV", 403, codeForbidden},
		tc{"str", "POST", "/jobs/J-STR-REV/retry", 200, ""}, // its own job
		tc{"str", "POST", "/jobs/J-SLEEP/retry", 403, codeForbidden},
		tc{"str", "POST", "/jobs/UNKNOWN/retry", 404, protocol.CodeNotFound},
		tc{"str", "POST", "/services/STR-REV/pause", 403, codeForbidden},
		tc{"str", "GET", "/mmi.service", 404, protocol.CodeUnknownService},
		tc{"raw:bearer " + toks["str"], "GET", "/STR-REV", 202, ""}, // the scheme in any case
		// Every service, but no admin.
		tc{"all", "GET", "/SLEEP", 202, ""},
		tc{"all", "GET", "/jobs/J-SLEEP", 200, ""},
		tc{"all", "GET", "/jobs/J-STR-REV", 403, codeForbidden}, // a service it may use, but another token's job
		tc{"all", "GET", "/SERVER-JOBS", 403, codeForbidden},
		tc{"all", "DELETE", "/jobs/J-SLEEP", 403, codeForbidden},
		tc{"all", "POST", "/jobs/J-SLEEP/retry", 200, ""},
		tc{"all", "POST", "/jobs/J-STR-REV/retry", 403, codeForbidden}, // another token's job
		tc{"all", "POST", "/services/SLEEP/pause", 403, codeForbidden},
		tc{"all", "POST", "/services/SLEEP/resume", 403, codeForbidden},
		tc{"all", "POST", "/services/SLEEP/drain", 403, codeForbidden},
		tc{"all", "POST", "/workers/w1/drain", 403, codeForbidden},
		// Admin: everything.
		tc{"admin", "GET", "/SLEEP", 202, ""},
		tc{"admin", "GET", "/SYNC-SLEEP", 200, ""},
		tc{"admin", "GET", "/SERVER-JOBS", 200, ""},
		tc{"admin", "GET", "/SERVER-ACTIVE", 200, ""},
		tc{"admin", "GET", "/SERVER-QUEUE", 200, ""},
		tc{"admin", "GET", "/SERVER-WORKERS", 200, ""},
		tc{"admin", "GET", "/SERVER-SERVICES", 200, ""},
		tc{"admin", "GET", "/jobs/J-SLEEP", 200, ""},
		tc{"admin", "DELETE", "/jobs/J-SLEEP", 200, ""},
		tc{"admin", "POST", "/jobs/J-SLEEP/retry", 200, ""},
		tc{"admin", "POST", "/services/SLEEP/pause", 200, ""},
		tc{"admin", "POST", "/services/SLEEP/resume", 200, ""},
		tc{"admin", "POST", "/services/SLEEP/drain", 200, ""},
		tc{"admin", "POST", "/workers/w1/drain", 200, ""},
		tc{"admin", "GET", "/services/SLEEP/pause", 405, codeMethodNotAllowed},
		tc{"admin", "POST", "/services/SLEEP/stop", 404, codeNotFound},
		tc{"admin", "POST", "/workers/w1/pause", 404, codeNotFound},
		tc{"admin", "POST", "/services//pause", 404, codeNotFound},
		// Paths and methods that are no route answer as before.
		tc{"", "GET", "/a/b", 404, codeNotFound},
		tc{"", "PUT", "/STR-REV", 405, codeMethodNotAllowed},
	)
	for _, c := range cases {
		var hdr []string
		switch {
		case strings.HasPrefix(c.token, "raw:"):
			hdr = []string{"Authorization", c.token[len("raw:"):]}
		case c.token != "":
			hdr = []string{"Authorization", "Bearer " + toks[c.token]}
		}
		_, _, before := fb.last()
		w := serve(g, c.method, c.target, nil, hdr...)
		name := c.method + " " + c.target + " with " + c.token
		if c.code == "" {
			if w.Code != c.status {
				t.Errorf("%s: status %d, want %d; body %q", name, w.Code, c.status, w.Body.String())
			}
			continue
		}
		if w.Code != c.status {
			t.Errorf("%s: status %d, want %d; body %q", name, w.Code, c.status, w.Body.String())
			continue
		}
		if c.method != http.MethodHead {
			if e := errorOf(t, w); e.Code != c.code {
				t.Errorf("%s: code %q, want %q", name, e.Code, c.code)
			}
		}
		if strings.Contains(w.Body.String(), "secret output") {
			t.Errorf("%s: refusal leaks the job's output: %s", name, w.Body.String())
		}
		switch c.status {
		case 401:
			want := `Bearer realm="zmws"`
			if c.token != "" && !strings.HasPrefix(c.token, "raw:Basic") && c.token != "raw:Bearer " {
				want += `, error="invalid_token"`
			}
			if got := w.Header().Get("WWW-Authenticate"); got != want {
				t.Errorf("%s: WWW-Authenticate %q, want %q", name, got, want)
			}
			fallthrough
		case 403:
			// Only a job lookup (to learn its service or owner) reaches
			// the broker.
			_, _, after := fb.last()
			wantCalls := before
			lookup := c.method == http.MethodGet || c.method == http.MethodPost && strings.HasSuffix(c.target, "/retry")
			if c.status == 403 && strings.HasPrefix(c.target, "/jobs/") && lookup {
				wantCalls++
			}
			if after != wantCalls {
				t.Errorf("%s: %d backend calls, want %d", name, after-before, wantCalls-before)
			}
		}
	}

	// Preflights carry no credentials and stay open.
	w := serve(g, http.MethodOptions, "/SERVER-JOBS", nil, "Origin", "https://app.example",
		"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization")
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "https://app.example" ||
		w.Header().Get("Access-Control-Allow-Headers") != "authorization" {
		t.Errorf("preflight: %d %v", w.Code, w.Header())
	}

	// Refusals are logged with the token's name, never the token.
	log := logs.String()
	for _, tok := range toks {
		if strings.Contains(log, tok) {
			t.Fatalf("the log holds a token:\n%s", log)
		}
	}
	for _, want := range []string{`"token_name":"str"`, `"message":"http token lacks the rights"`,
		`"message":"http token not accepted"`, `"level":"warn"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

func TestGateway_NoTokensIsOpen(t *testing.T) {
	g := newGateway(t, authBackend(), Config{})
	for _, target := range []string{"/SERVER-JOBS", "/jobs/J-SLEEP"} {
		if w := serve(g, http.MethodGet, target, nil); w.Code != http.StatusOK {
			t.Errorf("%s without tokens: %d", target, w.Code)
		}
	}
	var nilSet *auth.TokenSet
	if _, err := New(Config{Backend: authBackend(), Tokens: nilSet}); err == nil {
		t.Error("a nil *auth.TokenSet was taken for no tokens")
	}
}

// TestGateway_TokensReload swaps the tokens file under concurrent requests:
// each request sees the old set or the new one (-race checks the swap).
func TestGateway_TokensReload(t *testing.T) {
	ts, toks := testTokens(t)
	g := newGateway(t, authBackend(), Config{Tokens: ts})
	fresh, err := auth.AddToken(ts.Path(), "fresh", auth.Rights{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	if w := serve(g, "GET", "/SERVER-JOBS", nil, "Authorization", "Bearer "+fresh); w.Code != 401 {
		t.Fatalf("fresh token before Reload: %d", w.Code)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := serve(g, "GET", "/SERVER-JOBS", nil, "Authorization", "Bearer "+toks["admin"])
				if w.Code != http.StatusOK {
					t.Errorf("admin during reloads: %d", w.Code)
					return
				}
				if w := serve(g, "GET", "/SERVER-JOBS", nil, "Authorization", "Bearer "+fresh); w.Code != 200 && w.Code != 401 {
					t.Errorf("fresh during reloads: %d", w.Code)
					return
				}
			}
		})
	}
	for range 20 {
		if err := ts.Reload(); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
	if w := serve(g, "GET", "/SERVER-JOBS", nil, "Authorization", "Bearer "+fresh); w.Code != 200 {
		t.Fatalf("fresh token after Reload: %d", w.Code)
	}

	// A revoked token (its entry removed) stops working on Reload; a file
	// that does not load keeps the set in use.
	if err := os.WriteFile(ts.Path(), []byte("[[token]]\nname = \"fresh\"\nhash = \""+auth.HashToken(fresh)+"\"\nadmin = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reload(); err != nil {
		t.Fatal(err)
	}
	if w := serve(g, "GET", "/SERVER-JOBS", nil, "Authorization", "Bearer "+toks["admin"]); w.Code != 401 {
		t.Errorf("revoked token: %d", w.Code)
	}
	if err := os.WriteFile(ts.Path(), []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reload(); err == nil {
		t.Error("a broken file reloaded")
	}
	if w := serve(g, "GET", "/SERVER-JOBS", nil, "Authorization", "Bearer "+fresh); w.Code != 200 {
		t.Errorf("after a failed Reload: %d", w.Code)
	}
}

// TestGateway_IdempotencyKeysPerToken: two tokens sending the same
// Idempotency-Key reach the broker with different keys, so neither finds
// or takes the other's job.
func TestGateway_IdempotencyKeysPerToken(t *testing.T) {
	ts, toks := testTokens(t)
	fb := authBackend()
	g := newGateway(t, fb, Config{Tokens: ts})
	keys := map[string]bool{}
	for _, name := range []string{"admin", "all"} {
		req := httptest.NewRequest(http.MethodPost, "/STR-REV?str=x", nil)
		req.Header.Set("Authorization", "Bearer "+toks[name])
		req.Header.Set("Idempotency-Key", "order-42")
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Body.String())
		}
		_, sent, _ := fb.last()
		if !strings.HasSuffix(sent.Key, "order-42") || !strings.Contains(sent.Key, name) {
			t.Errorf("%s's key reached the broker as %q", name, sent.Key)
		}
		if sent.Owner != "token:"+name {
			t.Errorf("%s's job is submitted for %q", name, sent.Owner)
		}
		keys[sent.Key] = true
	}
	if len(keys) != 2 {
		t.Errorf("two tokens' keys reached the broker as %v: want two different keys", keys)
	}
}

// TestGateway_ServicesPerToken: SERVER-SERVICES tells a token only of the
// services it may use, as the broker does for a key.
func TestGateway_ServicesPerToken(t *testing.T) {
	ts, toks := testTokens(t)
	fb := authBackend()
	fb.queries[protocol.ServerServices] = `[{"name":"STR-REV"},{"name":"PAYROLL-SECRET"}]`
	g := newGateway(t, fb, Config{Tokens: ts})
	for name, want := range map[string]string{"str": "STR-REV", "admin": "PAYROLL-SECRET"} {
		req := httptest.NewRequest(http.MethodGet, "/SERVER-SERVICES", nil)
		req.Header.Set("Authorization", "Bearer "+toks[name])
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("%s: %d %s, want %s listed", name, rec.Code, rec.Body.String(), want)
		}
		if name == "str" && strings.Contains(rec.Body.String(), "PAYROLL") {
			t.Errorf("a token for STR-* sees %s", rec.Body.String())
		}
	}
}
