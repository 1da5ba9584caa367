package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

func TestGateway_UIFiles(t *testing.T) {
	ts, toks := testTokens(t)
	for _, tokens := range []bool{false, true} {
		cfg := Config{}
		if tokens {
			cfg.Tokens = ts // the page itself needs none: it asks for one
		}
		g := newGateway(t, &fakeBackend{}, cfg)
		for path, ctype := range map[string]string{
			"/":               "text/html; charset=utf-8",
			"/ui/":            "text/html; charset=utf-8",
			"/ui/app.js":      "text/javascript; charset=utf-8",
			"/ui/app.css":     "text/css; charset=utf-8",
			"/ui/favicon.svg": "image/svg+xml",
		} {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				w := serve(g, method, path, nil)
				if w.Code != http.StatusOK || w.Header().Get("Content-Type") != ctype {
					t.Errorf("tokens %v: %s %s: %d %q, want 200 %q", tokens, method, path, w.Code, w.Header().Get("Content-Type"), ctype)
				}
				if csp := w.Header().Get("Content-Security-Policy"); csp != contentSecurityPolicy || !strings.Contains(csp, "script-src 'self';") {
					t.Errorf("%s: CSP %q", path, csp)
				}
				if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("ETag") == "" {
					t.Errorf("%s: headers %v", path, w.Header())
				}
				if method == http.MethodGet && w.Body.Len() != len(uiAssets[path].body) {
					t.Errorf("%s: %d bytes, want %d", path, w.Body.Len(), len(uiAssets[path].body))
				}
			}
		}
		w := serve(g, http.MethodGet, "/", nil)
		if r := serve(g, http.MethodGet, "/", nil, "If-None-Match", w.Header().Get("ETag")); r.Code != http.StatusNotModified {
			t.Errorf("If-None-Match: %d, want 304", r.Code)
		}
		wantError(t, serve(g, http.MethodPost, "/", nil), http.StatusMethodNotAllowed, codeMethodNotAllowed)
		wantError(t, serve(g, http.MethodGet, "/ui/nope.js", nil), http.StatusNotFound, codeNotFound)
		// Data routes stay closed with tokens.
		if tokens {
			wantError(t, serve(g, http.MethodGet, "/SERVER-WORKERS", nil), http.StatusUnauthorized, codeUnauthorized)
			wantError(t, serve(g, http.MethodGet, "/ui/events", nil), http.StatusUnauthorized, codeUnauthorized)
			wantError(t, serve(g, http.MethodGet, "/ui/events", nil, "Authorization", "Bearer "+toks["all"]), http.StatusForbidden, codeForbidden)
		}
		// Without a hub there are no events to relay: the page polls.
		hdr := []string{}
		if tokens {
			hdr = []string{"Authorization", "Bearer " + toks["admin"]}
		}
		wantError(t, serve(g, http.MethodGet, "/ui/events", nil, hdr...), http.StatusServiceUnavailable, codeUnavailable)
	}
}

// TestUI_NoInlineScript keeps the page within its CSP: no inline script,
// no event handler attributes, no innerHTML or similar in the script.
func TestUI_NoInlineScript(t *testing.T) {
	page := string(uiAssets["/"].body)
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(m, `src="/ui/`) {
			t.Errorf("inline script: %s", m)
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+=`).MatchString(page) || strings.Contains(page, "style=") {
		t.Errorf("index.html has an inline handler or style")
	}
	js := string(uiAssets["/ui/app.js"].body)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

// TestEvents_SlowListener: a listener whose queue is full loses events and
// is told to resync; the others get every event, and publishing never
// waits.
func TestEvents_SlowListener(t *testing.T) {
	e, err := NewEvents(EventsConfig{Endpoint: "inproc://nobody-" + rand.Text(), Buffer: 2, MaxListeners: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	slow, cancelSlow, err := e.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	fast, cancelFast, err := e.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Subscribe(); err != ErrTooManyListeners {
		t.Fatalf("third Subscribe: %v, want ErrTooManyListeners", err)
	}
	for i := range 2 {
		e.publish(protocol.Event{Event: protocol.EventQueued, Job: string(rune('a' + i))})
		if got := (<-fast.C).Job; got != string(rune('a'+i)) {
			t.Fatalf("fast got %q", got)
		}
	}
	select {
	case <-slow.Resync:
		t.Fatal("resync before any loss")
	default:
	}
	e.publish(protocol.Event{Event: protocol.EventQueued, Job: "c"}) // slow is full: lost
	if got := (<-fast.C).Job; got != "c" {
		t.Fatalf("fast got %q", got)
	}
	select {
	case <-slow.Resync:
	default:
		t.Fatal("the slow listener was not told to resync")
	}
	if got := []string{(<-slow.C).Job, (<-slow.C).Job}; got[0] != "a" || got[1] != "b" || len(slow.C) != 0 {
		t.Fatalf("slow got %v and %d more", got, len(slow.C))
	}
	cancelSlow()
	cancelSlow() // twice is harmless
	if n := e.Listeners(); n != 1 {
		t.Fatalf("%d listeners, want 1", n)
	}
	cancelFast()
	if n := e.Listeners(); n != 0 {
		t.Fatalf("%d listeners, want 0", n)
	}
	// A new listener after the last left gets a subscription again.
	if _, cancel, err := e.Subscribe(); err != nil {
		t.Fatal(err)
	} else {
		cancel()
	}
	e.Close()
	if _, _, err := e.Subscribe(); err != ErrClosed {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	name string
	data string
}

// readSSE parses Server-Sent Events from r onto a channel until r ends.
func readSSE(r *bufio.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		var ev sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	return ch
}

// TestE2E_EventStream follows /ui/events of a real broker: ready first,
// then a job's queued, started and completed, as the broker published
// them; the SUB goes when the last stream does.
func TestE2E_EventStream(t *testing.T) {
	s := newStack(t, Config{})
	s.worker(t, "STR-REV", 1, reverse)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.hs.URL+"/ui/events", nil)
	resp, err := s.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if h, err := s.hs.Client().Head(s.hs.URL + "/ui/events"); err != nil || h.StatusCode != 200 || h.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("HEAD: %v %v", h, err)
	} else {
		h.Body.Close()
	}
	events := readSSE(bufio.NewReader(resp.Body))
	next := func() sseEvent {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return ev
		case <-time.After(waitLong):
			t.Fatal("no event")
		}
		return sseEvent{}
	}
	if ev := next(); ev.name != "ready" {
		t.Fatalf("first event %+v, want ready", ev)
	}
	// The broker learns of the subscription a moment after ready: submit
	// until the first queued event shows it has.
	var id string
	var got []string
	zmqtest.Eventually(t, "a queued event", waitLong, func() bool {
		_, err := s.back.Submit(ctx, "STR-REV", client.Request{Params: map[string]string{"str": "abc"}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-events:
			var e protocol.Event
			if err := json.Unmarshal([]byte(ev.data), &e); err != nil || e.Event != ev.name {
				t.Fatalf("event %+v: %v", ev, err)
			}
			if ev.name == protocol.EventQueued {
				id = e.Job
				got = append(got, ev.name)
			}
		case <-time.After(100 * time.Millisecond):
		}
		return id != ""
	})
	for len(got) < 3 {
		ev := next()
		var e protocol.Event
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
			t.Fatal(err)
		}
		if e.Job == id {
			got = append(got, ev.name)
		}
	}
	if strings.Join(got, " ") != "queued started completed" {
		t.Fatalf("events of %s: %v", id, got)
	}
	if n := s.gw.cfg.Events.Listeners(); n != 1 {
		t.Fatalf("%d listeners, want 1", n)
	}
	cancel()
	zmqtest.Eventually(t, "the stream's listener gone", waitLong, func() bool { return s.gw.cfg.Events.Listeners() == 0 })
}

// TestE2E_EventStreamTokens: only an admin token follows the events.
func TestE2E_EventStreamTokens(t *testing.T) {
	ts, toks := testTokens(t)
	s := newStack(t, Config{Tokens: ts})
	s.worker(t, "STR-REV", 1, worker.HandlerFunc(reverse))
	for name, want := range map[string]int{"": 401, "str": 403, "all": 403, "admin": 200} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.hs.URL+"/ui/events", nil)
		if name != "" {
			req.Header.Set("Authorization", "Bearer "+toks[name])
		}
		resp, err := s.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Errorf("token %q: %d, want %d", name, resp.StatusCode, want)
		}
		cancel()
		resp.Body.Close()
	}
}

// stuckWriter is a ResponseWriter whose writes after the first wait until
// release is closed: a browser that stopped reading.
type stuckWriter struct {
	h       http.Header
	release chan struct{}
	mu      sync.Mutex
	buf     strings.Builder
	writes  int
}

func (w *stuckWriter) Header() http.Header { return w.h }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Flush()              {}
func (w *stuckWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	first := w.writes == 0
	w.writes++
	w.mu.Unlock()
	if !first {
		<-w.release
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *stuckWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestGateway_EventsSlowReader: a stream whose reader stopped holds up
// neither the hub nor another stream; when it reads again it is told to
// resync.
func TestGateway_EventsSlowReader(t *testing.T) {
	hub, err := NewEvents(EventsConfig{Endpoint: "inproc://nobody-" + rand.Text(), Buffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	g := newGateway(t, &fakeBackend{}, Config{Events: hub})
	sw := &stuckWriter{h: http.Header{}, release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan struct{})
	go func() {
		defer close(served)
		g.ServeHTTP(sw, httptest.NewRequest(http.MethodGet, "/ui/events", nil).WithContext(ctx))
	}()
	zmqtest.Eventually(t, "the stuck stream subscribed", waitLong, func() bool { return hub.Listeners() == 1 })
	other, stop, err := hub.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	const n = 1000
	start := time.Now()
	got := 0
	for i := range n {
		hub.publish(protocol.Event{Event: protocol.EventQueued, Job: fmt.Sprint(i)})
		for len(other.C) > 0 {
			<-other.C
			got++
		}
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("publishing %d events took %v with a stuck reader", n, elapsed)
	}
	if got != n {
		t.Errorf("the other listener got %d of %d events", got, n)
	}
	close(sw.release)
	zmqtest.Eventually(t, "the stuck stream told to resync", waitLong, func() bool { return strings.Contains(sw.String(), "event: resync\n") })
	cancel()
	<-served
	out := sw.String()
	if !strings.HasPrefix(out, "retry: 2000\nevent: ready\n") || strings.Count(out, "event: queued\n") >= n {
		t.Errorf("stream %d bytes, %d queued events: %.300q", len(out), strings.Count(out, "event: queued\n"), out)
	}
}
