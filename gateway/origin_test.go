package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// syncBackend answers every sync job with "secret output".
func syncBackend() *fakeBackend {
	return &fakeBackend{submitID: "J",
		call: func(ctx context.Context, onPartial func([]byte) error) (*client.Result, error) {
			return &client.Result{Status: protocol.StatusComplete, Output: []byte("secret output")}, nil
		},
		job: func(id string) (protocol.JobInfo, error) {
			return protocol.JobInfo{ID: id, State: protocol.JobFailed}, nil
		},
	}
}

// TestGateway_HostChecked (DNS rebinding): over a real connection to
// 127.0.0.1, a request whose Host is a stranger's name is 421 and runs no
// job; loopback names, the address itself and --http-host names pass;
// /healthz answers any Host.
func TestGateway_HostChecked(t *testing.T) {
	fb := syncBackend()
	g := newGateway(t, fb, Config{Hosts: []string{"zmws.example"}})
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = g.server()
	hs.Start()
	defer hs.Close()
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	get := func(host, path string, headers ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("attacker.example:"+port, "/SYNC-S", "Origin", "http://attacker.example:"+port)
	if status != http.StatusMisdirectedRequest || !strings.Contains(body, `\"attacker.example:`+port+`\"`) ||
		!strings.Contains(body, codeWrongHost) {
		t.Errorf("rebound name: %d %s", status, body)
	}
	if _, _, n := fb.last(); n != 0 {
		t.Fatalf("a job ran for a stranger's Host (%d calls)", n)
	}
	for _, host := range []string{"attacker.example", "10.9.8.7:" + port} {
		if status, body := get(host, "/SERVER-SERVICES"); status != http.StatusMisdirectedRequest {
			t.Errorf("Host %s: %d %s", host, status, body)
		}
	}
	if status, body := get("attacker.example", "/healthz"); status != http.StatusOK {
		t.Errorf("healthz with any Host: %d %s", status, body)
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LocalHost.", "[::1]:" + port, "127.0.0.2", "zmws.example:443", "ZMWS.example"} {
		if status, body := get(host, "/SYNC-S"); status != http.StatusOK || body != "secret output" {
			t.Errorf("Host %s: %d %s", host, status, body)
		}
	}
}

// TestHostPolicy_WildcardBind: on a wildcard bind a connection arrives on
// one of the machine's addresses; that address (as an IP) is a valid Host,
// localhost only on a loopback connection.
func TestHostPolicy_WildcardBind(t *testing.T) {
	p, err := newHostPolicy([]string{"zmws.example", ""})
	if err != nil {
		t.Fatal(err)
	}
	on := func(local, host string) bool {
		r := httptest.NewRequest(http.MethodGet, "/S", nil)
		r.Host = host
		if local != "" {
			addr := &net.TCPAddr{IP: net.ParseIP(local), Port: 5580}
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(addr)))
		}
		return p.allows(r)
	}
	for _, tc := range []struct {
		local, host string
		want        bool
	}{
		{"192.168.1.5", "192.168.1.5:5580", true},
		{"192.168.1.5", "192.168.1.6:5580", false},
		{"192.168.1.5", "localhost:5580", false},
		{"192.168.1.5", "127.0.0.1:5580", false},
		{"192.168.1.5", "zmws.example", true},
		{"192.168.1.5", "attacker.example", false},
		{"::ffff:192.168.1.5", "192.168.1.5", true},
		{"2001:db8::1", "[2001:db8::1]:5580", true},
		{"127.0.0.1", "localhost", true},
		{"", "localhost", false}, // no connection: names only
		{"", "zmws.example", true},
		{"192.168.1.5", "", true}, // HTTP/1.0 without Host
	} {
		if got := on(tc.local, tc.host); got != tc.want {
			t.Errorf("Host %q on %s: %v, want %v", tc.host, tc.local, got, tc.want)
		}
	}
	any, _ := newHostPolicy([]string{"*"})
	if !any.allows(httptest.NewRequest(http.MethodGet, "http://attacker.example/S", nil)) {
		t.Error(`"*" refused a Host`)
	}
	for _, bad := range []string{"a/b", "user@host", "a b"} {
		if _, err := newHostPolicy([]string{bad}); err == nil {
			t.Errorf("host name %q accepted", bad)
		}
	}
}

// TestGateway_CrossOrigin (CSRF): a browser request from another origin
// that runs or changes a job is 403 and reaches no backend, unless CORS
// allows the origin; the gateway's own origin, and requests with no
// browser headers (curl), pass; reads pass.
func TestGateway_CrossOrigin(t *testing.T) {
	const evil = "https://attacker.example"
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	for _, tc := range []struct {
		name, method, target string
		cors                 []string
		headers              []string
		status               int
	}{
		{"form POST", "POST", "/S", nil, append([]string{"Origin", evil}, form...), 403},
		{"sync GET", "GET", "/SYNC-S", nil, []string{"Origin", evil}, 403},
		{"async GET, Referer", "GET", "/S", nil, []string{"Referer", evil + "/page?x"}, 403},
		{"GET, Sec-Fetch-Site cross-site", "GET", "/S", nil, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"GET, Sec-Fetch-Site same-site", "GET", "/S", nil, []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"Origin null", "POST", "/S", nil, []string{"Origin", "null"}, 403},
		{"other scheme", "POST", "/S", nil, []string{"Origin", "https://example.com"}, 403},
		{"other port", "POST", "/S", nil, []string{"Origin", "http://example.com:8080"}, 403},
		{"cancel", "DELETE", "/jobs/01J", nil, []string{"Origin", evil}, 403},
		{"retry", "POST", "/jobs/01J/retry", nil, []string{"Origin", evil}, 403},
		{"unknown service POST", "POST", "/mmi.x", nil, []string{"Origin", evil}, 403},
		{"own origin", "POST", "/S", nil, []string{"Origin", "http://example.com"}, 202},
		{"own origin, default port", "POST", "/S", nil, []string{"Origin", "http://EXAMPLE.com:80"}, 202},
		{"own Referer", "GET", "/SYNC-S", nil, []string{"Referer", "http://example.com/app.html"}, 200},
		{"Sec-Fetch-Site same-origin", "GET", "/S", nil, []string{"Sec-Fetch-Site", "same-origin"}, 202},
		{"Sec-Fetch-Site none (typed URL)", "GET", "/S", nil, []string{"Sec-Fetch-Site", "none"}, 202},
		{"curl", "POST", "/S", nil, form, 202},
		{"CORS allows it", "POST", "/S", []string{evil}, []string{"Origin", evil}, 202},
		{"CORS *", "GET", "/SYNC-S", []string{"*"}, []string{"Origin", evil}, 200},
		{"CORS allows another", "POST", "/S", []string{"https://app.example"}, []string{"Origin", evil}, 403},
		{"read a job", "GET", "/jobs/01J", nil, []string{"Origin", evil}, 200},
		{"read a query", "GET", "/SERVER-SERVICES", nil, []string{"Origin", evil}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := syncBackend()
			fb.queries = map[string]string{protocol.ServerServices: "[]"}
			g := newGateway(t, fb, Config{CORS: tc.cors})
			w := serve(g, tc.method, tc.target, body("a=1"), tc.headers...)
			if tc.status == http.StatusForbidden {
				e := wantError(t, w, http.StatusForbidden, codeCrossOrigin)
				if !strings.Contains(e.Error, "refused") {
					t.Errorf("error %q", e.Error)
				}
				if _, _, n := fb.last(); n != 0 {
					t.Errorf("backend called %d times", n)
				}
				return
			}
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d; body %q", w.Code, tc.status, w.Body.String())
			}
		})
	}
}
