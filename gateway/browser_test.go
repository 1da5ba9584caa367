package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// The browser tests drive the page in headless Chromium (Debian's chromium
// package; installed here with apt-get when missing and we are root, as
// scripts/test does). Screenshots go to $ZMWS_ARTIFACTS/TEST_NAME, else to
// zmws-artifacts/TEST_NAME under os.TempDir(); the test log says where.

// findChromium returns the path of Chromium, installing Debian's package
// once per test binary when it is missing. "" and the reason when it cannot
// be had.
var findChromium = sync.OnceValues(func() (string, string) {
	look := func() string {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	if p := look(); p != "" {
		return p, ""
	}
	if os.Geteuid() != 0 {
		return "", "chromium is not installed and this test is not root to apt-get install it (scripts/test installs it)"
	}
	install := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
		return nil
	}
	err := install("install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "chromium")
	if err != nil {
		// The package lists may be stale or missing (a fresh image).
		if uerr := install("update", "-qq"); uerr == nil {
			err = install("install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "chromium")
		}
	}
	if p := look(); p != "" {
		return p, ""
	}
	return "", fmt.Sprintf("chromium could not be installed: %v", err)
})

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// browser is a headless Chromium tab and what its page reported.
type browser struct {
	ctx context.Context
	dir string // artifacts

	mu       sync.Mutex
	problems []string // console errors, exceptions, error log entries
	allow    *regexp.Regexp
}

// newBrowser starts Chromium for t (skipping t when it cannot be had) and
// records every console error, uncaught exception and error log entry of
// the page; at the end of t any such problem fails it (allow: entries that
// match are expected, nil for none).
func newBrowser(t *testing.T, allow *regexp.Regexp) *browser {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: not with -short")
	}
	path, why := findChromium()
	if path == "" {
		t.Skip(why)
	}
	dir := os.Getenv("ZMWS_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "zmws-artifacts")
	}
	dir = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.Headless,
		chromedp.NoSandbox, chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{dir: dir, allow: allow}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.listen))
	b.ctx = ctx
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("browser: %s", p)
		}
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return b
}

func (b *browser) listen(ev any) {
	var p string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var args []string
		for _, a := range ev.Args {
			args = append(args, string(a.Value)+a.Description)
		}
		p = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		p = fmt.Sprintf("exception: %s at %s:%d", d.Text, d.URL, d.LineNumber)
		if d.Exception != nil {
			p += ": " + d.Exception.Description
		}
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level != cdplog.EntryLevelError {
			return
		}
		p = fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.allow != nil && b.allow.MatchString(p) {
		return
	}
	b.problems = append(b.problems, p)
}

// do runs actions, failing t after waitLong.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLong)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLong)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page until it is truthy,
// failing t after timeout; it returns how long it took.
func (b *browser) waitFor(t *testing.T, what, cond string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		t.Fatalf("waiting %v for %s: %v\npage: %s", timeout, what, err, eval[string](t, b, "document.body.innerText"))
	}
	return time.Since(start)
}

// screenshot writes the whole page to name in the artifacts folder.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLong)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// viewShot writes what the window shows to name in the artifacts folder.
func (b *browser) viewShot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLong)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// hold is a worker handler that runs until its job is cancelled.
func hold(ctx context.Context, j *worker.Job) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestBrowser_Page: the page lists the services and workers, shows a job
// submitted meanwhile within a second without a reload (from the event
// stream), and cancels it with its button.
func TestBrowser_Page(t *testing.T) {
	s := newStack(t, Config{})
	s.worker(t, "STR-REV", 2, reverse)
	s.worker(t, "HOLD", 1, hold)
	b := newBrowser(t, nil)
	b.do(t, "open the page", chromedp.Navigate(s.hs.URL+"/"))
	b.waitFor(t, "services and workers listed",
		`document.querySelector('#services tr[data-service="STR-REV"]') && document.querySelector('#services tr[data-service="HOLD"]') &&
		 document.querySelectorAll('#workers tbody tr[data-worker]').length === 3`, waitLong)
	b.waitFor(t, "the event stream", `document.getElementById('status').textContent === 'live'`, waitLong)
	if got := eval[string](t, b, `document.querySelector('#services tr[data-service="STR-REV"]').cells[1].textContent`); got != "2" {
		t.Errorf("STR-REV idle workers on the page: %q, want 2", got)
	}

	// A finished job with its output.
	id, err := s.back.Submit(context.Background(), "STR-REV", client.Request{Params: map[string]string{"str": "olleh"}})
	if err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "the finished job and its output",
		fmt.Sprintf(`(r => r && r.textContent.includes('complete') && r.querySelector('pre').textContent === 'hello')(document.querySelector('#jobs tr[data-job="%s"]'))`, id), waitLong)

	// A job submitted now shows within a second, without a reload.
	start := time.Now()
	id, err = s.back.Submit(context.Background(), "HOLD", client.Request{})
	if err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "the new job on the page within a second",
		fmt.Sprintf(`document.querySelector('#queue tr[data-job="%[1]s"], #active tr[data-job="%[1]s"]')`, id), time.Second)
	t.Logf("job on the page %v after it was submitted", time.Since(start).Round(time.Millisecond))
	if n := eval[int](t, b, "performance.getEntriesByType('navigation').length"); n != 1 {
		t.Errorf("%d navigations, want 1 (no reload)", n)
	}
	b.waitFor(t, "the job running on its worker",
		fmt.Sprintf(`document.querySelector('#active tr[data-job="%s"] button[data-action="cancel"]') &&
		 document.querySelector('#workers tr td a[href="#%[1]s"]')`, id), waitLong)
	b.screenshot(t, "page.png")

	b.do(t, "click cancel", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#active tr[data-job="%s"] button[data-action="cancel"]`, id))))
	b.waitFor(t, "the cancelled job among the finished",
		fmt.Sprintf(`(r => r && r.textContent.includes('failed: cancelled'))(document.querySelector('#jobs tr[data-job="%s"]'))`, id), waitLong)
	info, err := s.back.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != protocol.JobFailed || info.Code != protocol.CodeCancelled {
		t.Errorf("job after cancel: %s %s, want failed %s", info.State, info.Code, protocol.CodeCancelled)
	}
	if notice := eval[string](t, b, `document.getElementById('notice').textContent`); notice != "" {
		t.Errorf("notice %q", notice)
	}
	b.screenshot(t, "cancelled.png")

	// Retry from the finished list: the job runs again under its ID.
	b.do(t, "click retry", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#jobs tr[data-job="%s"] button[data-action="retry"]`, id))))
	b.waitFor(t, "the retried job running again",
		fmt.Sprintf(`document.querySelector('#active tr[data-job="%s"]')`, id), waitLong)
	if info, err := s.back.Job(context.Background(), id); err != nil || info.State == protocol.JobFailed {
		t.Fatalf("job after retry: %+v %v", info, err)
	}
}

// xssPayload would change the title and set a global if the page ran it.
const xssPayload = `<script>window.zmwsPwned = 1; document.title = "pwned"</script>` +
	`<img src="/nope" onerror="window.zmwsPwned = 2; document.title = 'pwned'"><b>bold</b>`

// TestBrowser_OutputIsText: a job's output containing markup is shown as
// text, in the list and in the job's panel, and nothing of it runs.
func TestBrowser_OutputIsText(t *testing.T) {
	s := newStack(t, Config{})
	s.worker(t, "XSS", 1, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		return []byte(xssPayload), nil
	})
	b := newBrowser(t, nil)
	b.do(t, "open the page", chromedp.Navigate(s.hs.URL+"/"))
	b.waitFor(t, "the event stream", `document.getElementById('status').textContent === 'live'`, waitLong)
	id, err := s.back.Submit(context.Background(), "XSS", client.Request{Params: map[string]string{"p": `<img src=x onerror="window.zmwsPwned=3">`}})
	if err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`document.querySelector('#jobs tr[data-job="%s"]')`, id)
	b.waitFor(t, "the output as text", row+` && `+row+`.querySelector('pre').textContent === `+jsString(xssPayload), waitLong)
	// The job's panel, opened by the search box, shows it as text too.
	b.do(t, "search the job",
		chromedp.SendKeys(chromedp.CSS("#search-id"), id),
		chromedp.Click(chromedp.CSS(`#search button[type="submit"]`)))
	b.waitFor(t, "the job's panel", `document.getElementById('job-output').textContent === `+jsString(xssPayload)+
		` && document.getElementById('job-fields').textContent.includes('onerror')`, waitLong)
	b.screenshot(t, "output.png")
	if got := eval[string](t, b, "document.title"); got != "zmws" {
		t.Errorf("title %q: the payload ran", got)
	}
	if pwned := eval[bool](t, b, "window.zmwsPwned !== undefined"); pwned {
		t.Errorf("window.zmwsPwned is set: the payload ran")
	}
	// Not parsed as markup at all: no element of the payload exists.
	if n := eval[int](t, b, "document.querySelectorAll('main script, main img, main b').length"); n != 0 {
		t.Errorf("%d elements of the payload in the page", n)
	}
	if !strings.Contains(eval[string](t, b, "document.body.innerText"), "<script>window.zmwsPwned") {
		t.Errorf("the payload's text is not visible")
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == '<' || r == '>':
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// rawWorkers connects n bare DEALER sockets to ep, worker i announcing
// service names[i%len(names)] with READY, and keeps them (no heartbeats:
// the broker's liveness must outlast the test) until the test ends. One
// goroutine owns them all.
func rawWorkers(t *testing.T, ep string, n int, names []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var socks []*zmq.Socket
		defer func() {
			for _, s := range socks {
				s.Close()
			}
		}()
		for i := range n {
			s, err := zmq.NewSocket(zmq.DEALER)
			if err == nil {
				socks = append(socks, s)
				s.SetLinger(0)
				err = s.Connect(ep)
			}
			if err == nil {
				ready := protocol.EncodeWorker(protocol.Message{Form: protocol.Form{Version: protocol.V2}, Cmd: protocol.CmdReady,
					Service: names[i%len(names)], Body: [][]byte{protocol.EncodeMeta(protocol.Meta{
						Worker: &protocol.WorkerDetails{Host: "raw", PID: i + 1, Name: "load"}})}})
				parts := make([]any, len(ready))
				for j, f := range ready {
					parts[j] = f
				}
				_, err = s.SendMessage(parts...)
			}
			if err != nil {
				errc <- fmt.Errorf("raw worker %d: %w", i, err)
				return
			}
		}
		errc <- nil
		<-ctx.Done()
	}()
	t.Cleanup(func() { cancel(); <-done })
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestBrowser_Load1000Workers times the page with 1,000 workers over 100
// services: from the navigation until both tables are filled. The figure
// is logged (docs/UI.md quotes it); on a shared, noisy machine only a
// generous bound is asserted.
func TestBrowser_Load1000Workers(t *testing.T) {
	const nWorkers, nServices = 1000, 100
	// Workers that never heartbeat stay for liveness × heartbeat: 5 min.
	s := newStackBroker(t, Config{}, BrokerConfig{}, nil, broker.Config{Heartbeat: 5 * time.Second, Liveness: 60})
	names := make([]string, nServices)
	for i := range names {
		names[i] = fmt.Sprintf("LOAD-%03d", i)
	}
	rawWorkers(t, s.srv.WorkerEndpoint(), nWorkers, names)
	var size int
	zmqtest.Eventually(t, "1,000 workers ready", waitLong, func() bool {
		body, err := s.back.Query(context.Background(), protocol.ServerWorkers, []byte(protocol.WorkersAll))
		size = len(body)
		return err == nil && strings.Count(string(body), `"identity"`) == nWorkers
	})
	b := newBrowser(t, nil)
	// A first load warms the browser up (its figure is not counted). Not
	// a bare file: Chromium would then ask for /favicon.ico, a job route.
	b.do(t, "a first load", chromedp.Navigate(s.hs.URL+"/"))
	filled := fmt.Sprintf(`document.querySelectorAll('#workers tbody tr[data-worker]').length === %d &&
		document.querySelectorAll('#services tbody tr[data-service]').length === %d`, nWorkers, nServices)
	var best time.Duration
	for run := range 3 {
		start := time.Now()
		b.do(t, "open the page", chromedp.Navigate(s.hs.URL+"/"))
		b.waitFor(t, "both tables filled", filled, waitLong)
		took := time.Since(start)
		// The page's own clock: from the start of the navigation.
		inPage := eval[float64](t, b, "performance.now()")
		t.Logf("resources: %s", eval[string](t, b, `performance.getEntriesByType('resource').map(e => e.name.replace(location.origin, '') + ' ' + Math.round(e.startTime) + '+' + Math.round(e.duration)).join(', ')`))
		t.Logf("run %d: tables of %d workers and %d services filled %v after the navigation began (page clock %.0f ms); SERVER-WORKERS?all=1 is %d bytes",
			run+1, nWorkers, nServices, took.Round(time.Millisecond), inPage, size)
		if run == 0 || took < best {
			best = took
		}
	}
	b.viewShot(t, "load.png")
	const bound = 5 * time.Second // generous: 2 shared cores; the figure is the point
	if best > bound {
		t.Errorf("page filled in %v at best, want under %v", best, bound)
	}
}

// TestBrowser_Tokens: with HTTP tokens the page loads without one and asks
// for one; a token that is not admin sees its services and its own jobs,
// polls (the event stream is for admins), and gets a clear refusal from
// the cancel button; an admin token follows events and cancels.
func TestBrowser_Tokens(t *testing.T) {
	ts, toks := testTokens(t)
	s := newStack(t, Config{Tokens: ts})
	s.worker(t, "STR-HOLD", 1, hold)
	s.worker(t, "OTHER", 1, reverse)
	// The refusals the page runs into are answers, not errors of the page.
	b := newBrowser(t, regexp.MustCompile(`^log network: Failed to load resource: the server responded with a status of 40[13] `))
	b.do(t, "open the page", chromedp.Navigate(s.hs.URL+"/"))
	b.waitFor(t, "a token asked for", `document.getElementById('notice').textContent.includes('A token is needed')`, waitLong)

	b.do(t, "use the str token", chromedp.SendKeys(chromedp.CSS("#token"), toks["str"]),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)))
	b.waitFor(t, "its services, and the admin lists refused",
		`document.querySelector('#services tr[data-service="STR-HOLD"]') && !document.querySelector('#services tr[data-service="OTHER"]') &&
		 document.getElementById('workers-refusal').textContent.includes('not an admin token') &&
		 document.getElementById('status').textContent.includes('need an admin token') &&
		 document.getElementById('notice').hidden`, waitLong)
	if got := eval[string](t, b, `sessionStorage.getItem('zmws-token')`); got != toks["str"] {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}

	req, _ := http.NewRequest(http.MethodPost, s.hs.URL+"/STR-HOLD", nil)
	req.Header.Set("Authorization", "Bearer "+toks["str"])
	resp, err := s.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sub struct {
		JobID string `json:"job_id"`
	}
	json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || sub.JobID == "" {
		t.Fatalf("submit: %d %+v", resp.StatusCode, sub)
	}
	id := sub.JobID
	b.do(t, "find the job", chromedp.SendKeys(chromedp.CSS("#search-id"), id),
		chromedp.Click(chromedp.CSS(`#search button[type="submit"]`)))
	cancelButton := `#job-actions button[data-action="cancel"]`
	b.waitFor(t, "the job's panel with its cancel button",
		fmt.Sprintf(`document.getElementById('job-id').textContent === %q && document.querySelector(%q)`, id, cancelButton), waitLong)
	b.do(t, "cancel without the right", chromedp.Click(chromedp.CSS(cancelButton)))
	b.waitFor(t, "the refusal", `document.getElementById('notice').textContent.includes('only an admin token may cancel')`, waitLong)
	if info, err := s.back.Job(context.Background(), id); err != nil || info.State == protocol.JobFailed {
		t.Fatalf("job after a refused cancel: %+v %v", info, err)
	}
	b.screenshot(t, "refused.png")

	b.do(t, "use the admin token", chromedp.SetValue(chromedp.CSS("#token"), toks["admin"]),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)))
	b.waitFor(t, "live, with the workers listed",
		`document.getElementById('status').textContent === 'live' && document.querySelectorAll('#workers tbody tr[data-worker]').length === 2 &&
		 document.getElementById('workers-refusal').hidden`, waitLong)
	b.do(t, "cancel as admin", chromedp.Click(chromedp.CSS(cancelButton)))
	b.waitFor(t, "the job cancelled", fmt.Sprintf(
		`(r => r && r.textContent.includes('failed: cancelled'))(document.querySelector('#jobs tr[data-job="%s"]')) &&
		 document.getElementById('job-fields').textContent.includes('cancelled')`, id), waitLong)
	if info, err := s.back.Job(context.Background(), id); err != nil || info.Code != protocol.CodeCancelled {
		t.Fatalf("job after cancel: %+v %v", info, err)
	}
	b.screenshot(t, "admin.png")
}
