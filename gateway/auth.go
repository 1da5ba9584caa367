package gateway

import (
	"net/http"
	"strings"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
)

// Tokens finds the name and rights of an HTTP bearer token. *auth.Tokens
// and *auth.TokenSet (which reloads) implement it. Lookup is called
// concurrently and must compare in constant time.
type Tokens interface {
	Lookup(token string) (name string, r auth.Rights, ok bool)
}

// realm is the realm of the WWW-Authenticate challenge.
const realm = `Bearer realm="zmws"`

// caller is who made a request: the name and rights of its token. A nil
// *caller stands for a gateway without tokens, where everything is allowed.
type caller struct {
	name   string
	rights auth.Rights
}

// mayUse reports whether c may submit to service (SYNC- or SYNC: prefix
// allowed) and read its jobs.
func (c *caller) mayUse(service string) bool {
	if c == nil || c.rights.Admin {
		return true
	}
	base, _ := protocol.SplitSync(service)
	return c.rights.Allows(base)
}

func (c *caller) admin() bool { return c == nil || c.rights.Admin }

// owner is how the broker records c's jobs ("token:NAME"), "" without
// tokens.
func (c *caller) owner() string {
	if c == nil {
		return ""
	}
	return "token:" + c.name
}

// mayRead reports whether c may read a job: its own, or any for an admin
// (and everyone without tokens).
func (c *caller) mayRead(info protocol.JobInfo) bool {
	return c.admin() || info.Owner == c.owner()
}

// authenticate finds the caller of r from its Authorization header. It
// returns ok false after answering 401 when tokens are configured and r has
// no valid one; it returns a nil caller when no tokens are configured.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request) (c *caller, ok bool) {
	if g.tokens == nil {
		return nil, true
	}
	token, found := bearer(r.Header.Get("Authorization"))
	if !found {
		g.log.Debug().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
			Msg("http request without a bearer token")
		w.Header().Set("WWW-Authenticate", realm)
		writeError(w, http.StatusUnauthorized, codeUnauthorized,
			"this gateway needs a token: send Authorization: Bearer <token>")
		return nil, false
	}
	name, rights, valid := g.tokens.Lookup(token)
	if !valid {
		g.log.Warn().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
			Msg("http token not accepted")
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "the bearer token is not valid")
		return nil, false
	}
	return &caller{name: name, rights: rights}, true
}

// bearer returns the token of an Authorization header "Bearer <token>"
// (scheme in any case, RFC 9110 §11.1).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// authorize reports whether c may make the request kind/arg. A GET of a job
// is decided once the job's service is known (serveJob). When c may not,
// authorize answers 403.
func (g *Gateway) authorize(w http.ResponseWriter, r *http.Request, c *caller, kind routeKind, arg string) bool {
	var ok bool
	switch kind {
	case routeAsync, routeSync:
		ok = c.mayUse(arg)
	case routeServer:
		ok = arg == protocol.ServerServices || c.admin()
	case routeJob:
		ok = r.Method != http.MethodDelete || c.admin()
	case routeRetry:
		// An admin any job, another token its own: decided once the job
		// is looked up (retryJob), as a bulk retry does.
		ok = true
	case routeMetrics, routeEvents, routeControl:
		// Events name every job, service and worker: the introspection
		// of admins, as SERVER-ACTIVE; so do the metrics.
		ok = c.admin()
	case routeFailed, routeRetryFailed:
		// Any token: one that is not admin gets its own jobs (failed.go).
		ok = true
	default: // routeUnknownService: a valid token learns what the docs say
		ok = true
	}
	if !ok {
		g.forbid(w, r, c)
	}
	return ok
}

// forbid answers 403 and logs the refusal with the token's name.
func (g *Gateway) forbid(w http.ResponseWriter, r *http.Request, c *caller) {
	g.log.Warn().Str(logging.KeyToken, c.name).Str("method", r.Method).Str("path", r.URL.Path).
		Str("remote", r.RemoteAddr).Msg("http token lacks the rights")
	writeError(w, http.StatusForbidden, codeForbidden,
		"this token may not "+r.Method+" "+r.URL.Path)
}
