package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxBody           = 1 << 20
	DefaultMaxWait           = 5 * time.Minute
	DefaultRecheck           = time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultShutdownTimeout   = 5 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// chunkWriteTimeout bounds each write of a streamed response: a reader that
// takes no bytes for this long is cut off, while a stream as a whole may run
// for hours (the server has no WriteTimeout).
const chunkWriteTimeout = time.Minute

// pingTimeout bounds the broker query behind /healthz.
const pingTimeout = 2 * time.Second

// Backend is what the handlers need from a broker. Broker implements it
// with a client.Client; tests use a fake. Its methods are called concurrently.
type Backend interface {
	// Submit queues an asynchronous job and returns its ID. A refusal is a
	// *client.Error (see client.Client.Submit).
	Submit(ctx context.Context, service string, req client.Request) (string, error)
	// Call runs a synchronous job, passing each chunk of partial output to
	// onPartial as it arrives; an error from onPartial abandons the call
	// (see client.Client.Call). The Result's Output holds what came with
	// the final reply.
	Call(ctx context.Context, service string, req client.Request, onPartial func([]byte) error) (*client.Result, error)
	// Query asks the broker's SERVER-* service, with body after the meta
	// frame (SERVER-WORKERS "all"), and returns its JSON reply.
	Query(ctx context.Context, service string, body ...[]byte) ([]byte, error)
	// QueryPage asks a paged SERVER-* listing (SERVER-SERVICES,
	// SERVER-JOBS) for one page and returns its JSON and the cursor of
	// the next page, "" after the last (see client.Client.QueryPage).
	QueryPage(ctx context.Context, service string, opt client.PageOptions) (body []byte, next string, err error)
	// Job looks up one job; an unknown ID is an error matching
	// client.ErrNotFound.
	Job(ctx context.Context, id string) (protocol.JobInfo, error)
	// Cancel and Retry change a job (see client.Client.Cancel and Retry).
	Cancel(ctx context.Context, id string) (protocol.JobInfo, error)
	Retry(ctx context.Context, id string) (protocol.JobInfo, error)
	// FailedPage and RetryFailed list and retry failed jobs (see
	// client.Client.FailedPage and RetryFailed).
	FailedPage(ctx context.Context, opt client.FailedOptions) ([]protocol.JobInfo, string, error)
	RetryFailed(ctx context.Context, opt client.FailedOptions) (protocol.RetryReport, string, error)
	// WatchJob returns a channel that is closed when the broker announces
	// that job id has finished (completed or failed), and a func that stops
	// watching. Announcements can be missed, so a waiter re-checks with Job
	// now and then.
	WatchJob(id string) (finished <-chan struct{}, stop func())
	// Ping returns nil when the broker answers a cheap query and can take
	// jobs; an error matching ErrStoreFailing when it answers but its job
	// store is failing.
	Ping(ctx context.Context) error
}

// Config configures a Gateway. Zero values mean the defaults.
type Config struct {
	// Backend reaches the broker. Required.
	Backend Backend
	// MaxBody bounds a request body, in bytes (DefaultMaxBody); past it the
	// answer is 413.
	MaxBody int64
	// CORS lists the origins (scheme://host[:port]) that browsers may call
	// the gateway from, or "*" for any. Empty: no CORS headers.
	CORS []string
	// Hosts lists the names (DNS names or IP addresses, no port) requests
	// may carry in Host besides the address each connection arrived on (and
	// localhost on loopback); other Hosts get 421, except on /healthz. "*"
	// allows any Host. See origin.go: this keeps DNS rebinding out.
	Hosts []string
	// Tokens, when set, closes every route but /healthz (and OPTIONS) to
	// requests without a valid bearer token, and limits each token to its
	// rights (see docs/HTTP.md, "Tokens and TLS"). Nil: everything is open
	// to everyone who can connect. An *auth.TokenSet can be reloaded while
	// the gateway serves.
	Tokens Tokens
	// TLS, when set, makes Serve speak HTTPS with these certificates
	// (TLS 1.2 and later). Nil: plain HTTP.
	TLS *Certs
	// MaxWait caps ?wait= on /jobs/{id} (DefaultMaxWait).
	MaxWait time.Duration
	// Recheck is how often a waiting /jobs/{id}?wait= asks the broker again
	// in case an event was missed (DefaultRecheck).
	Recheck time.Duration
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout configure the
	// http.Server made by Serve (DefaultReadHeaderTimeout, ...). There is no
	// WriteTimeout: synchronous jobs stream for as long as they run.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// when its ctx ends, before it closes their connections
	// (DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// Events relays the broker's job events to the web page's streams
	// (/ui/events). Nil: the page updates by polling. Serve does not close
	// it.
	Events *Events
	// Logger receives the gateway's logs, one debug line per request
	// (default: none).
	Logger zerolog.Logger
	// Metrics, when set, answers GET /metrics (Prometheus' text format:
	// promhttp.HandlerFor the broker's registry). With Tokens, only admin
	// tokens may read it. Nil: /metrics is 404.
	Metrics http.Handler
	// Registry, when set, receives the gateway's own metrics: requests by
	// route and status, sync requests in flight (docs/METRICS.md).
	Registry prometheus.Registerer
	// Limits bound each client's request rate and requests in flight
	// (limit.go). Zero: no bound but the broker's.
	Limits Limits
}

// Gateway is the HTTP front door of a broker: an http.Handler that turns
// requests into jobs and queries (see the package doc and docs/HTTP.md).
type Gateway struct {
	cfg    Config
	b      Backend
	log    zerolog.Logger
	cors   corsPolicy
	hosts  hostPolicy
	tokens Tokens       // nil: no tokens, everything open
	m      *httpMetrics // nil without Config.Registry
	limit  *limiter     // nil without Config.Limits
}

// New checks cfg and returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Backend == nil {
		return nil, errors.New("gateway: a Backend is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	def(&cfg.MaxWait, DefaultMaxWait)
	def(&cfg.Recheck, DefaultRecheck)
	def(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&cfg.ReadTimeout, DefaultReadTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	cors, err := newCORS(cfg.CORS)
	if err != nil {
		return nil, err
	}
	hosts, err := newHostPolicy(cfg.Hosts)
	if err != nil {
		return nil, err
	}
	// A nil pointer in the interface is a mistake, not "no tokens": fail
	// closed rather than open.
	switch t := cfg.Tokens.(type) {
	case *auth.TokenSet:
		if t == nil {
			return nil, errors.New("gateway: Tokens is a nil *auth.TokenSet")
		}
	case *auth.Tokens:
		if t == nil {
			return nil, errors.New("gateway: Tokens is a nil *auth.Tokens")
		}
	}
	if cfg.Limits.Rate < 0 || cfg.Limits.Burst < 0 || cfg.Limits.Concurrent < 0 {
		return nil, fmt.Errorf("gateway: limits must not be negative (rate %g, burst %d, concurrent %d)", cfg.Limits.Rate, cfg.Limits.Burst, cfg.Limits.Concurrent)
	}
	var m *httpMetrics
	if cfg.Registry != nil {
		if m, err = newHTTPMetrics(cfg.Registry); err != nil {
			return nil, fmt.Errorf("gateway: metrics: %w", err)
		}
	}
	return &Gateway{
		cfg:    cfg,
		b:      cfg.Backend,
		log:    cfg.Logger.With().Str("component", "gateway").Logger(),
		cors:   cors,
		hosts:  hosts,
		tokens: cfg.Tokens,
		m:      m,
		limit:  newLimiter(cfg.Limits),
	}, nil
}

// Serve answers HTTP requests on l until ctx ends; with Config.TLS it speaks
// TLS on l. Then it stops accepting connections, waits up to
// Config.ShutdownTimeout for requests in flight (a synchronous job may
// still be streaming), and closes what remains; the handlers of those
// requests see their context cancelled. Serve closes l and returns nil
// after a stop caused by ctx.
func (g *Gateway) Serve(ctx context.Context, l net.Listener) error {
	srv := g.server()
	if g.cfg.TLS != nil {
		srv.TLSConfig = g.cfg.TLS.tlsConfig()
		l = tls.NewListener(l, srv.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	g.log.Info().Str(logging.KeyEndpoint, l.Addr().String()).Bool("tls", g.cfg.TLS != nil).
		Bool("tokens", g.tokens != nil).Msg("http listening")
	select {
	case err := <-errc:
		return fmt.Errorf("gateway: serve %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		g.log.Warn().Err(err).Msg("http requests still running at shutdown, closing them")
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	g.log.Info().Msg("http stopped")
	return nil
}

// server returns the http.Server Serve runs, with the gateway's timeouts.
func (g *Gateway) server() *http.Server {
	return &http.Server{
		Handler:           g,
		ReadHeaderTimeout: g.cfg.ReadHeaderTimeout,
		ReadTimeout:       g.cfg.ReadTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          newStdLogger(g.log),
	}
}

// Methods allowed per kind of route.
const (
	allowJob   = "GET, POST, OPTIONS"
	allowQuery = "GET, HEAD, OPTIONS"
	allowJobID = "GET, HEAD, DELETE, OPTIONS"
	allowRetry = "POST, OPTIONS"
)

type routeKind int

const (
	routeNotFound routeKind = iota
	routeUnknownService
	routeAsync
	routeSync
	routeServer
	routeJob
	routeRetry
	routeHealth
	routeMetrics
	routeUI          // the web page's files (ui.go)
	routeEvents      // /ui/events, the page's event stream
	routeFailed      // GET /jobs?state=failed (failed.go)
	routeRetryFailed // POST /jobs/retry?state=failed&service=S
	routeControl     // POST /services/{name}/pause|resume|drain, /workers/{id}/drain (control.go)
)

// route says what a path is. arg is the service name, the SERVER- name or
// the job ID.
func route(path string) (kind routeKind, arg string) {
	switch {
	case path == "/healthz":
		return routeHealth, ""
	case path == "/metrics":
		return routeMetrics, ""
	case path == "/ui/events":
		return routeEvents, ""
	case path == "/" || strings.HasPrefix(path, "/ui/"):
		// A name with a slash is no service, so /ui/ takes no name away.
		return routeUI, ""
	case strings.HasPrefix(path, "/services/"), strings.HasPrefix(path, "/workers/"):
		if svc, name := control(path); svc != "" {
			return routeControl, svc + "/" + name
		}
		return routeNotFound, ""
	case path == "/jobs":
		return routeFailed, ""
	case path == "/jobs/retry":
		return routeRetryFailed, ""
	case strings.HasPrefix(path, "/jobs/"):
		id := path[len("/jobs/"):]
		if base, ok := strings.CutSuffix(id, "/retry"); ok && base != "" && !strings.Contains(base, "/") {
			return routeRetry, base
		}
		if id == "" || strings.Contains(id, "/") {
			return routeNotFound, ""
		}
		return routeJob, id
	}
	name, ok := strings.CutPrefix(path, "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return routeNotFound, ""
	}
	switch name {
	case protocol.ServerWorkers, protocol.ServerJobs, protocol.ServerActive, protocol.ServerQueue, protocol.ServerServices, protocol.ServerSchedules:
		return routeServer, name
	}
	base, sync := protocol.SplitSync(name)
	// A name no worker may announce cannot have been provided by any: the
	// broker would refuse it anyway (SERVER-JOB, mmi.*, titanic.*, SYNC-).
	if protocol.ValidWorkerService(base) != nil {
		return routeUnknownService, name
	}
	if sync {
		return routeSync, name
	}
	return routeAsync, name
}

func (k routeKind) allow() string {
	switch k {
	case routeAsync, routeSync, routeUnknownService:
		return allowJob
	case routeServer, routeHealth, routeMetrics, routeUI, routeEvents, routeFailed:
		return allowQuery
	case routeJob:
		return allowJobID
	case routeRetry, routeRetryFailed, routeControl:
		return allowRetry
	}
	return ""
}

// allowed reports whether method is in the Allow list allow.
func allowed(allow, method string) bool {
	for m := range strings.SplitSeq(allow, ", ") {
		if m == method {
			return true
		}
	}
	return false
}

// ServeHTTP routes a request (see docs/HTTP.md) and logs it at debug level.
func (g *Gateway) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	var c *caller
	kind, arg := route(r.URL.Path)
	defer func() {
		g.m.request(kind, w.Status())
		ev := g.log.Debug().Str("method", r.Method).Str("path", r.URL.Path).Int("status", w.Status()).
			Dur(logging.KeyElapsed, time.Since(start))
		if c != nil {
			ev = ev.Str(logging.KeyToken, c.name)
		}
		ev.Msg("http request")
	}()
	allow := kind.allow()
	// /healthz answers supervisors and load balancers whatever name they
	// use: it runs nothing and tells only ok or unavailable.
	if kind != routeHealth && !g.hosts.allows(r) {
		g.log.Warn().Str("host", r.Host).Str("method", r.Method).Str("path", r.URL.Path).
			Str("remote", r.RemoteAddr).Msg("http request for another host refused")
		writeError(w, http.StatusMisdirectedRequest, codeWrongHost,
			fmt.Sprintf("Host %q is not a name of this gateway (it answers the address it is reached on, localhost on loopback, and the names of --http-host)", clip(r.Host)))
		return
	}
	g.cors.apply(w.Header(), r)
	if kind == routeNotFound {
		writeError(w, http.StatusNotFound, codeNotFound, "no such path: "+r.URL.Path+
			" (try /NAME, /SYNC-NAME, /jobs/ID, /jobs?state=failed, /SERVER-WORKERS, /SERVER-JOBS, /SERVER-ACTIVE, /SERVER-QUEUE, /SERVER-SERVICES, /services/NAME/pause, /healthz, /metrics, or the page at /)")
		return
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", allow)
		g.cors.preflight(w.Header(), r, allow)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !allowed(allow, r.Method) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, codeMethodNotAllowed,
			fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		return
	}
	if unsafeRequest(r, kind) {
		if o := g.crossOrigin(r); o != "" {
			g.log.Warn().Str("origin", clip(o)).Str("method", r.Method).Str("path", r.URL.Path).
				Str("remote", r.RemoteAddr).Msg("http cross-origin request refused")
			writeError(w, http.StatusForbidden, codeCrossOrigin,
				fmt.Sprintf("%s %s from %q refused: another origin may not run jobs or change them here (allow it with --http-cors)", r.Method, r.URL.Path, clip(o)))
			return
		}
	}
	// Preflights (above) carry no credentials, /healthz is for probes, and
	// the page's files hold no data (a browser sends no token to load it).
	if kind != routeHealth && kind != routeUI {
		var ok bool
		if c, ok = g.authenticate(w, r); !ok || !g.authorize(w, r, c, kind, arg) {
			return
		}
	}
	if g.limit != nil && kind.limited() {
		done, retry, why := g.limit.admit(clientKey(r, c), time.Now())
		if done == nil {
			g.log.Debug().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Msg("http request refused: rate limited")
			refuseLimited(w, retry, why)
			return
		}
		defer done()
	}
	switch kind {
	case routeUnknownService:
		writeError(w, http.StatusNotFound, protocol.CodeUnknownService, "no worker has ever provided service "+arg)
	case routeAsync:
		g.serveAsync(w, r, arg, c)
	case routeSync:
		g.serveSync(w, r, arg, c)
	case routeServer:
		g.serveQuery(w, r, arg, c)
	case routeJob:
		if r.Method == http.MethodDelete {
			g.changeJob(w, r, arg, g.b.Cancel)
			return
		}
		g.serveJob(w, r, arg, c)
	case routeRetry:
		g.retryJob(w, r, arg, c)
	case routeControl:
		g.serveControl(w, r, arg)
	case routeFailed:
		g.serveFailed(w, r, c)
	case routeRetryFailed:
		g.serveRetryFailed(w, r, c)
	case routeHealth:
		g.serveHealth(w, r)
	case routeMetrics:
		g.serveMetrics(w, r)
	case routeUI:
		g.serveUI(w, r)
	case routeEvents:
		g.serveEvents(w, r)
	}
}

// maxKeyLen bounds an Idempotency-Key header.
const maxKeyLen = 255

// serveAsync submits a job: 202, its ID and a Location to poll. With
// tokens, a caller's idempotency keys are its own: the key goes to the
// broker under the token's name.
func (g *Gateway) serveAsync(w http.ResponseWriter, r *http.Request, service string, c *caller) {
	req, err := g.readRequest(w, r)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	// A client that lost the answer resends with the same key and gets
	// the same job (see docs/HTTP.md).
	if err := jobOptions(r.Header, &req); err != nil {
		g.fail(w, r, err)
		return
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if len(key) > maxKeyLen {
			g.fail(w, r, badRequest("Idempotency-Key of %d bytes: at most %d", len(key), maxKeyLen))
			return
		}
		req.Key = key
		if c != nil {
			req.Key = c.owner() + "|" + key
		}
	}
	req.Owner = c.owner()
	id, err := g.b.Submit(r.Context(), service, req)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	g.log.Debug().Str(logging.KeyService, service).Str(logging.KeyJob, id).Msg("job submitted")
	w.Header().Set("Location", "/jobs/"+url.PathEscape(id))
	writeJSON(w, http.StatusAccepted, struct {
		JobID   string `json:"job_id"`
		Service string `json:"service"`
	}{id, service})
}

// serveQuery answers GET /SERVER-...: the broker's JSON, unchanged (a page
// of it for the paged listings: servePage).
func (g *Gateway) serveQuery(w http.ResponseWriter, r *http.Request, service string, c *caller) {
	if paged(service) {
		g.servePage(w, r, service, c)
		return
	}
	var args [][]byte
	if service == protocol.ServerWorkers {
		all, err := allOption(r)
		if err != nil {
			g.fail(w, r, err)
			return
		}
		if all {
			args = [][]byte{[]byte(protocol.WorkersAll)}
		}
	}
	body, err := g.b.Query(r.Context(), service, args...)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	writeRaw(w, body)
}

// serveHealth answers 200 when the broker answers a cheap query in time
// and its job store works; 503 otherwise, with code store_unavailable when
// the store is failing (every submission would be refused).
func (g *Gateway) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), pingTimeout)
	defer cancel()
	err := g.b.Ping(ctx)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case errors.Is(err, ErrStoreFailing):
		g.log.Warn().Err(err).Msg("health check: job store failing")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{
			"status": "unavailable",
			"code":   protocol.CodeStoreUnavailable,
			"error":  "the job journal is failing: submissions are refused (see the zmwsd log)",
		})
	default:
		g.log.Warn().Err(err).Msg("health check: broker not answering")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{
			"status": "unavailable",
			"code":   codeUnavailable,
			"error":  "the broker did not answer in time",
		})
	}
}

// statusWriter remembers the status of a response for the request log.
// Unwrap lets http.ResponseController reach the connection (Flush, write
// deadlines); trailers pass through Header.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status is the status sent, or 200 when the handler wrote nothing.
func (w *statusWriter) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
