package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

func metricsGateway(t *testing.T, cfg Config) (*Gateway, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	cfg.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return newGateway(t, authBackend(), cfg), reg
}

func TestGateway_MetricsCountRequests(t *testing.T) {
	g, _ := metricsGateway(t, Config{})
	for _, target := range []string{"/healthz", "/healthz", "/SYNC-STR-REV?x=1", "/STR-REV", "/a/b", "/SERVER-QUEUE"} {
		serve(g, http.MethodGet, target, nil)
	}
	w := serve(g, http.MethodGet, "/metrics", nil)
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	text := w.Body.String()
	for _, want := range []string{
		`zmws_http_requests_total{code="200",route="healthz"} 2`,
		`zmws_http_requests_total{code="200",route="sync"} 1`,
		`zmws_http_requests_total{code="202",route="submit"} 1`,
		`zmws_http_requests_total{code="404",route="not_found"} 1`,
		`zmws_http_requests_total{code="200",route="server"} 1`,
		"zmws_http_sync_in_flight 0",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, text)
		}
	}
	// The scrape itself is counted once it is answered.
	if text = serve(g, http.MethodGet, "/metrics", nil).Body.String(); !strings.Contains(text, `zmws_http_requests_total{code="200",route="metrics"} 1`+"\n") {
		t.Errorf("the first scrape is not counted:\n%s", text)
	}
	if w := serve(g, http.MethodPost, "/metrics", nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", w.Code)
	}
}

func TestGateway_MetricsNeedAnAdminToken(t *testing.T) {
	ts, toks := testTokens(t)
	g, _ := metricsGateway(t, Config{Tokens: ts})
	for _, tc := range []struct {
		token  string
		status int
	}{{"", http.StatusUnauthorized}, {"all", http.StatusForbidden}, {"str", http.StatusForbidden}, {"admin", http.StatusOK}} {
		var headers []string
		if tc.token != "" {
			headers = []string{"Authorization", "Bearer " + toks[tc.token]}
		}
		if w := serve(g, http.MethodGet, "/metrics", nil, headers...); w.Code != tc.status {
			t.Errorf("/metrics with token %q: %d, want %d", tc.token, w.Code, tc.status)
		}
	}
}

func TestGateway_NoMetrics(t *testing.T) {
	g := newGateway(t, authBackend(), Config{})
	wantError(t, serve(g, http.MethodGet, "/metrics", nil), http.StatusNotFound, codeNotFound)
	// Without a registry nothing is counted, and nothing breaks.
	if w := serve(g, http.MethodGet, "/SYNC-STR-REV", nil); w.Code != http.StatusOK {
		t.Errorf("sync without metrics: %d", w.Code)
	}
}

func TestGateway_MetricsSyncInFlight(t *testing.T) {
	fb := authBackend()
	var g *Gateway
	var during float64
	fb.call = func(context.Context, func([]byte) error) (*client.Result, error) {
		during = gaugeValue(t, g.m.sync)
		return &client.Result{Status: protocol.StatusComplete}, nil
	}
	g = newGateway(t, fb, Config{Registry: prometheus.NewRegistry()})
	serve(g, http.MethodGet, "/SYNC-STR-REV", nil)
	if after := gaugeValue(t, g.m.sync); during != 1 || after != 0 {
		t.Errorf("sync requests in flight: %v during the call, %v after, want 1 and 0", during, after)
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
