package gateway

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are the gateway's own instruments (Config.Registry): requests
// by route and status, and the synchronous requests in flight. The route
// label is the kind of path, never the path, so its values are few.
type httpMetrics struct {
	requests *prometheus.CounterVec
	sync     prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmws_http_requests_total",
			Help: "HTTP requests the gateway answered, by route (the kind of path) and status code.",
		}, []string{"route", "code"}),
		sync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zmws_http_sync_in_flight",
			Help: "Synchronous HTTP requests (/SYNC-NAME) waiting for or streaming their job's output.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.sync} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// request counts one answered request.
func (m *httpMetrics) request(kind routeKind, status int) {
	if m != nil {
		m.requests.WithLabelValues(kind.String(), strconv.Itoa(status)).Inc()
	}
}

// syncStarted counts a sync request in flight; the func it returns ends it.
func (m *httpMetrics) syncStarted() func() {
	if m == nil {
		return func() {}
	}
	m.sync.Inc()
	return m.sync.Dec
}

// String is the route label of k.
func (k routeKind) String() string {
	switch k {
	case routeUnknownService:
		return "unknown_service"
	case routeAsync:
		return "submit"
	case routeSync:
		return "sync"
	case routeServer:
		return "server"
	case routeJob:
		return "job"
	case routeRetry:
		return "retry"
	case routeControl:
		return "control"
	case routeFailed:
		return "failed"
	case routeRetryFailed:
		return "retry_failed"
	case routeHealth:
		return "healthz"
	case routeMetrics:
		return "metrics"
	}
	return "not_found"
}

// serveMetrics answers GET /metrics with Config.Metrics, or 404 when the
// gateway has none.
func (g *Gateway) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, codeNotFound, "this gateway serves no metrics")
		return
	}
	g.cfg.Metrics.ServeHTTP(w, r)
}
