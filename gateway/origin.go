package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Cross-site defences. The gateway runs jobs for whoever can reach it, and
// with no tokens (the default, on loopback) a browser can reach it for any
// web page. Two checks keep pages out:
//
//   - Host (DNS rebinding): a page at attacker.example whose name is made to
//     resolve to 127.0.0.1 is, to the browser, same-origin with the gateway,
//     and can read its answers. Such requests carry "Host: attacker.example",
//     so the gateway answers only Host names it knows (hostPolicy).
//   - Origin (CSRF): a page may send a form POST, or load an image from
//     /NAME, without reading the answer; the job still runs. A request that
//     changes something (POST, PUT, DELETE, PATCH) or runs a job (a GET of
//     /NAME or /SYNC-NAME too) from a browser page of another origin is
//     refused, unless CORS allows that origin (crossOrigin).
//
// Requests with neither Origin, Referer nor Sec-Fetch-Site (curl, scripts,
// other servers) are not browsers' and pass the Origin check.

// hostPolicy decides which Host headers the gateway answers: an IP
// address the connection arrived on (any loopback address on a loopback
// connection), "localhost" on a loopback connection, and the names of
// Config.Hosts. "*" among them allows any Host.
type hostPolicy struct {
	any   bool
	names map[string]bool // lower case, no port, no trailing dot
}

// newHostPolicy checks a --http-host list: DNS names or IP addresses,
// without a port, or "*".
func newHostPolicy(list []string) (hostPolicy, error) {
	p := hostPolicy{names: map[string]bool{}}
	for _, n := range list {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
			continue
		case n == "*":
			p.any = true
			continue
		}
		h := hostName(n)
		if h == "" || strings.ContainsAny(h, "/@?#: ") && net.ParseIP(h) == nil {
			return p, fmt.Errorf("gateway: host name %q: want a DNS name or an IP address, without a port", n)
		}
		p.names[h] = true
	}
	return p, nil
}

// hostName is the host of a Host header value (or a --http-host name):
// without the port or IPv6 brackets, lower case, no trailing dot.
func hostName(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// allows reports whether r's Host names this gateway. A request without a
// Host (HTTP/1.0) names nothing a browser could have been tricked into.
func (p hostPolicy) allows(r *http.Request) bool {
	if p.any || r.Host == "" {
		return true
	}
	h := hostName(r.Host)
	if p.names[h] {
		return true
	}
	local := localIP(r)
	if local == nil {
		return false
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.Equal(local) || (ip.IsLoopback() && local.IsLoopback())
	}
	return h == "localhost" && local.IsLoopback()
}

// localIP is the address r's connection arrived on, or nil when r came
// through no net/http server (a test's recorder).
func localIP(r *http.Request) net.IP {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return nil
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}

// unsafeRequest reports whether a request changes something or runs a job:
// those are refused from other origins. GETs run jobs here, so a GET of a
// job route is unsafe too.
func unsafeRequest(r *http.Request, kind routeKind) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return kind == routeAsync || kind == routeSync
	}
	return true
}

// crossOrigin returns the foreign origin r was sent from by a browser, or
// "" when r comes from the gateway's own origin, from an origin CORS
// allows, or not from a browser page at all. The origin is Origin, else
// that of Referer; with neither, Sec-Fetch-Site saying cross-site or
// same-site (another port or subdomain) counts as foreign, since the origin
// cannot be checked.
func (g *Gateway) crossOrigin(r *http.Request) string {
	origin := r.Header.Get("Origin")
	if origin == "" {
		if ref := r.Header.Get("Referer"); ref != "" {
			u, err := url.Parse(ref)
			if err != nil || u.Scheme == "" || u.Host == "" {
				return ref
			}
			origin = u.Scheme + "://" + u.Host
		}
	}
	if origin == "" {
		switch site := r.Header.Get("Sec-Fetch-Site"); site {
		case "cross-site", "same-site":
			return "a " + site + " page (Sec-Fetch-Site)"
		}
		return ""
	}
	if sameOrigin(origin, r) || g.cors.allows(origin) {
		return ""
	}
	return origin
}

// sameOrigin reports whether origin (scheme://host[:port]) is the
// gateway's own origin as r reached it: its scheme and Host, default ports
// being implied.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(u.Scheme, scheme) && hostPort(u.Host, scheme) == hostPort(r.Host, scheme)
}

// hostPort is host:port in lower case, with the scheme's default port
// filled in.
func hostPort(hostport, scheme string) string {
	hostport = strings.ToLower(hostport)
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	h := strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	return net.JoinHostPort(h, port)
}
