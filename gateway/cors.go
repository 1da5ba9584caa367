package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// corsMaxAge is how long (seconds) a browser may cache a preflight answer.
const corsMaxAge = "600"

// corsExpose lists the response headers a browser script may read.
var corsExpose = strings.Join([]string{"Location", "Link", "Retry-After", HeaderStatus, HeaderExitCode, HeaderJobID, HeaderCode, HeaderError}, ", ")

// corsPolicy decides the CORS headers. The zero value sends none.
type corsPolicy struct {
	any     bool            // "*": any origin, answered with "*"
	origins map[string]bool // exact origins, lower case
}

// newCORS checks a --http-cors list: "*" or origins such as
// https://app.example.com or http://localhost:8080 (no path).
func newCORS(list []string) (corsPolicy, error) {
	var p corsPolicy
	for _, o := range list {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
			continue
		case o == "*":
			p.any = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return p, fmt.Errorf("gateway: CORS origin %q: want * or scheme://host[:port], such as https://app.example.com", o)
		}
		if p.origins == nil {
			p.origins = map[string]bool{}
		}
		p.origins[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return p, nil
}

func (p corsPolicy) enabled() bool { return p.any || len(p.origins) > 0 }

// allows reports whether a request from origin may read the answer.
func (p corsPolicy) allows(origin string) bool {
	return origin != "" && (p.any || p.origins[strings.ToLower(origin)])
}

// apply sets the CORS headers of an answer to r.
func (p corsPolicy) apply(h http.Header, r *http.Request) {
	if !p.enabled() {
		return
	}
	if !p.any {
		h.Add("Vary", "Origin")
	}
	origin := r.Header.Get("Origin")
	if !p.allows(origin) {
		return
	}
	if p.any {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	h.Set("Access-Control-Expose-Headers", corsExpose)
}

// preflight adds the answer to a CORS preflight (OPTIONS with
// Access-Control-Request-Method) from an allowed origin.
func (p corsPolicy) preflight(h http.Header, r *http.Request, allow string) {
	if r.Header.Get("Access-Control-Request-Method") == "" || !p.allows(r.Header.Get("Origin")) {
		return
	}
	h.Set("Access-Control-Allow-Methods", allow)
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", corsMaxAge)
	if !p.any {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
	}
}
