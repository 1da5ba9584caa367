package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// nextLink returns the target of a response's Link rel="next", or "".
func nextLink(t *testing.T, h http.Header) string {
	t.Helper()
	link := h.Get("Link")
	if link == "" {
		return ""
	}
	m := regexp.MustCompile(`^<([^>]*)>; rel="next"$`).FindStringSubmatch(link)
	if m == nil {
		t.Fatalf("Link %q: want <target>; rel=\"next\"", link)
	}
	return m[1]
}

// pagedServices is a fake broker's SERVER-SERVICES over names (sorted
// here), perPage a page whatever the limit asked, as a broker whose pages
// are cut by their size.
func pagedServices(names []string, perPage int) func(string, client.PageOptions) (string, string, error) {
	names = slices.Clone(names)
	sort.Strings(names)
	return func(service string, opt client.PageOptions) (string, string, error) {
		i := sort.SearchStrings(names, opt.After)
		for i < len(names) && names[i] <= opt.After {
			i++
		}
		n := min(perPage, len(names)-i)
		if opt.Limit > 0 {
			n = min(n, opt.Limit)
		}
		page := []protocol.ServiceInfo{}
		for _, name := range names[i : i+n] {
			page = append(page, protocol.ServiceInfo{Name: name})
		}
		b, _ := json.Marshal(page)
		next := ""
		if i+n < len(names) {
			next = names[i+n-1]
		}
		return string(b), next, nil
	}
}

func serviceNamesOf(t *testing.T, body string) []string {
	t.Helper()
	var list []protocol.ServiceInfo
	if err := json.Unmarshal([]byte(body), &list); err != nil || list == nil {
		t.Fatalf("body %q: %v", body, err)
	}
	var out []string
	for _, s := range list {
		out = append(out, s.Name)
	}
	return out
}

func TestGateway_PageParameters(t *testing.T) {
	fb := &fakeBackend{pages: func(service string, opt client.PageOptions) (string, string, error) {
		if opt.After == "last" {
			return "[]", "", nil
		}
		return `[{"name":"X"}]`, "a b&c>é", nil
	}}
	g := newGateway(t, fb, Config{})
	for _, service := range []string{protocol.ServerServices, protocol.ServerJobs} {
		w := serve(g, http.MethodGet, "/"+service+"?limit=7&after=B%2BC", nil)
		if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `[{"name":"X"}]` {
			t.Fatalf("%s: %d %q", service, w.Code, w.Body.String())
		}
		if got := fb.pageOpts[len(fb.pageOpts)-1]; got != (client.PageOptions{Limit: 7, After: "B+C"}) {
			t.Errorf("%s: asked the broker for %+v", service, got)
		}
		next := nextLink(t, w.Header())
		u, err := url.Parse(next)
		if err != nil || u.Path != "/"+service || u.Query().Get("after") != "a b&c>é" || u.Query().Get("limit") != "7" {
			t.Fatalf("%s: next %q (%v)", service, next, err)
		}
		if strings.ContainsAny(next, " >") {
			t.Errorf("next %q is not escaped", next)
		}
		// The last page has no Link; without ?limit the link has none.
		if w := serve(g, http.MethodGet, "/"+service+"?after=last", nil); w.Code != 200 || w.Header().Get("Link") != "" {
			t.Errorf("%s last page: %d, Link %q", service, w.Code, w.Header().Get("Link"))
		}
		w = serve(g, http.MethodGet, "/"+service, nil)
		if next := nextLink(t, w.Header()); strings.Contains(next, "limit") || fb.pageOpts[len(fb.pageOpts)-1] != (client.PageOptions{}) {
			t.Errorf("%s without parameters: next %q, asked %+v", service, next, fb.pageOpts[len(fb.pageOpts)-1])
		}
		if w := serve(g, http.MethodHead, "/"+service, nil); w.Code != 200 || w.Header().Get("Link") == "" {
			t.Errorf("HEAD %s: %d, Link %q", service, w.Code, w.Header().Get("Link"))
		}
	}
	asked := len(fb.pageOpts)
	for _, q := range []string{"limit=0", "limit=-1", "limit=ten", "limit=1.5", "limit=", "limit=99999999999999999999", "after=%zz"} {
		e := wantError(t, serve(g, http.MethodGet, "/SERVER-SERVICES?"+q, nil), http.StatusBadRequest, codeBadRequest)
		if !strings.Contains(e.Error, "limit") && !strings.Contains(e.Error, "query") {
			t.Errorf("?%s: %q does not say what is wrong", q, e.Error)
		}
	}
	if len(fb.pageOpts) != asked {
		t.Error("a bad page parameter reached the broker")
	}
	// The broker's refusal of a cursor is the client's 400.
	fb.pages = func(string, client.PageOptions) (string, string, error) {
		return "", "", &client.Error{Code: protocol.CodeBadRequest, Message: "SERVER-JOBS: after \"x\" is not a cursor"}
	}
	wantError(t, serve(g, http.MethodGet, "/SERVER-JOBS?after=x", nil), http.StatusBadRequest, codeBadRequest)
}

// TestGateway_ServicesPagesPerToken: a token's pages hold only the
// services it may use, and are full, however the broker's pages fall; no
// Link names a service it may not see.
func TestGateway_ServicesPagesPerToken(t *testing.T) {
	ts, toks := testTokens(t)
	var names, mine []string
	for _, n := range []string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J"} {
		names = append(names, "PAY-"+n, "STR-"+n, "ZZZ-"+n)
		mine = append(mine, "STR-"+n)
	}
	fb := authBackend()
	fb.pages = pagedServices(names, 4)
	g := newGateway(t, fb, Config{Tokens: ts})
	get := func(token, target string) (*http.Response, []string) {
		t.Helper()
		w := serve(g, http.MethodGet, target, nil, "Authorization", "Bearer "+toks[token])
		if w.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", token, target, w.Code, w.Body.String())
		}
		return w.Result(), serviceNamesOf(t, w.Body.String())
	}
	var walked []string
	var sizes []int
	for target := "/SERVER-SERVICES?limit=3"; target != ""; {
		resp, got := get("str", target)
		walked, sizes = append(walked, got...), append(sizes, len(got))
		target = nextLink(t, resp.Header)
		if strings.Contains(target, "PAY") || strings.Contains(target, "ZZZ") {
			t.Fatalf("Link %q names a service the token may not see", target)
		}
		if len(sizes) > 10 {
			t.Fatal("the walk does not end")
		}
	}
	if !slices.Equal(walked, mine) || !slices.Equal(sizes, []int{3, 3, 3, 1}) {
		t.Fatalf("token str, pages of 3: %v in pages of %v, want %v", walked, sizes, mine)
	}
	// An exact multiple: the last page is full and has no Link.
	resp, got := get("str", "/SERVER-SERVICES?limit=5&after=STR-E")
	if !slices.Equal(got, mine[5:]) || resp.Header.Get("Link") != "" {
		t.Fatalf("the last 5: %v, Link %q", got, resp.Header.Get("Link"))
	}
	// The admin's pages are the broker's.
	resp, got = get("admin", "/SERVER-SERVICES?limit=3")
	if !slices.Equal(got, []string{"PAY-A", "PAY-B", "PAY-C"}) || nextLink(t, resp.Header) != "/SERVER-SERVICES?after=PAY-C&limit=3" {
		t.Fatalf("admin: %v, Link %q", got, resp.Header.Get("Link"))
	}
	// None of the token's services: an empty page, no Link.
	fb.pages = pagedServices([]string{"PAY-A", "PAY-B", "PAY-C"}, 1)
	if resp, got := get("str", "/SERVER-SERVICES"); len(got) != 0 || resp.Header.Get("Link") != "" {
		t.Fatalf("no services of its own: %v, Link %q", got, resp.Header.Get("Link"))
	}
}

// TestGateway_E2E_Pages: the pages of a real broker, followed by their
// Link headers.
func TestGateway_E2E_Pages(t *testing.T) {
	s := newStack(t, Config{})
	echo := func(ctx context.Context, j *worker.Job) ([]byte, error) { return []byte("ok"), nil }
	names := []string{"PAGE-A", "PAGE-B", "PAGE-C"}
	for _, n := range names {
		s.worker(t, n, 1, echo)
	}
	var walked []string
	pages := 0
	for target := "/SERVER-SERVICES?limit=2"; target != "" && pages < 5; pages++ {
		resp, body := s.get(t, target)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", target, resp.StatusCode, body)
		}
		walked = append(walked, serviceNamesOf(t, body)...)
		target = nextLink(t, resp.Header)
	}
	if !slices.Equal(walked, names) || pages != 2 {
		t.Fatalf("walk of pages of 2: %v in %d pages", walked, pages)
	}
	for range 3 {
		if resp, body := s.get(t, "/SYNC-PAGE-A"); resp.StatusCode != http.StatusOK {
			t.Fatalf("SYNC-PAGE-A: %d %s", resp.StatusCode, body)
		}
	}
	resp, body := s.get(t, "/SERVER-JOBS?limit=2")
	var jobs []protocol.JobInfo
	if err := json.Unmarshal([]byte(body), &jobs); err != nil || len(jobs) != 2 || nextLink(t, resp.Header) == "" {
		t.Fatalf("SERVER-JOBS?limit=2: %s (%v), Link %q", body, err, resp.Header.Get("Link"))
	}
	resp, body = s.get(t, nextLink(t, resp.Header))
	if err := json.Unmarshal([]byte(body), &jobs); err != nil || len(jobs) != 1 || resp.Header.Get("Link") != "" {
		t.Fatalf("SERVER-JOBS, page 2: %s (%v), Link %q", body, err, resp.Header.Get("Link"))
	}
	if resp, body := s.get(t, "/SERVER-JOBS?after=nonsense"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "first page") {
		t.Fatalf("a bad cursor: %d %s", resp.StatusCode, body)
	}
}
