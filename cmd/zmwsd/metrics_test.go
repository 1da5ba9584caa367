package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/promtest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/worker"
)

// metricsWorkers runs two workers on ep until the test ends: ECHO
// completes its jobs, FAIL fails them with exit code 3.
func metricsWorkers(t *testing.T, ep string) {
	for service, h := range map[string]worker.HandlerFunc{
		"ECHO": func(ctx context.Context, j *worker.Job) ([]byte, error) { return []byte("ok"), nil },
		"FAIL": func(ctx context.Context, j *worker.Job) ([]byte, error) {
			return nil, &worker.ExitError{Code: 3, Err: errors.New("boom")}
		},
	} {
		w, err := worker.New(worker.Config{Brokers: []string{ep}, Service: service, Handler: h, Heartbeat: 500 * time.Millisecond,
			Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		if err != nil {
			t.Fatal(err)
		}
		zmqtest.Go(t, "worker "+service, w.Run)
	}
}

// scrapeUntil scrapes url until ok says the families are as expected, and
// returns the last scrape: the loop answers a scrape between turns, and
// a job's counts change when the broker has its reply.
func scrapeUntil(t *testing.T, url string, ok func(map[string]*dto.MetricFamily) bool) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	var text []byte
	var fams map[string]*dto.MetricFamily
	defer func() { // also when Eventually gives up
		if t.Failed() {
			t.Logf("the last scrape of %s:\n%s", url, text)
		}
	}()
	zmqtest.Eventually(t, "the metrics at "+url+" as expected", 10*time.Second, func() bool {
		text = promtest.Scrape(t, url)
		fams = promtest.Families(t, text)
		return ok(fams)
	})
	return text, fams
}

func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	v, _ := promtest.Value(fams, name, labels...)
	return v
}

// TestRun_Metrics: zmwsd with its gateway and two workers; jobs run over
// HTTP; /metrics follows them as they complete and fail, passes promtool,
// and has every metric the Grafana dashboard asks for (but zmws-run's,
// checked in cmd/zmws-run).
func TestRun_Metrics(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--heartbeat=500ms", "--http-bind=127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, httpAddr, done := start(t, ctx, cli, io.Discard)
	defer func() { cancel(); <-done }()
	metricsWorkers(t, srv.WorkerEndpoint())
	base := "http://" + httpAddr
	url := base + "/metrics"
	scrapeUntil(t, url, func(f map[string]*dto.MetricFamily) bool {
		return value(f, "zmws_workers", "service", "ECHO", "state", "idle") == 1 && value(f, "zmws_workers", "service", "FAIL", "state", "idle") == 1
	})

	for i := range 3 {
		if status, body := httpGet(t, base+"/SYNC-ECHO"); status != http.StatusOK || body != "ok" {
			t.Fatalf("SYNC-ECHO %d: %d %s", i, status, body)
		}
	}
	_, fams := scrapeUntil(t, url, func(f map[string]*dto.MetricFamily) bool {
		return value(f, "zmws_jobs_completed_total", "service", "ECHO") == 3
	})
	if v := value(fams, "zmws_jobs_submitted_total", "service", "ECHO"); v != 3 {
		t.Errorf("submitted %v, want 3", v)
	}
	if v := value(fams, "zmws_job_duration_seconds", "service", "ECHO"); v != 3 {
		t.Errorf("duration observations %v, want 3", v)
	}
	if _, ok := promtest.Value(fams, "zmws_jobs_failed_total", "service", "FAIL"); ok {
		t.Error("a failure counted before any job failed")
	}
	if v := value(fams, "zmws_http_requests_total", "route", "sync", "code", "200"); v != 3 {
		t.Errorf("sync HTTP requests %v, want 3", v)
	}

	// Two jobs fail, one async; one submission names no service.
	if status, _ := httpGet(t, base+"/SYNC-FAIL"); status == http.StatusOK {
		t.Fatalf("SYNC-FAIL answered 200")
	}
	if status, _ := httpGet(t, base+"/FAIL"); status != http.StatusAccepted {
		t.Fatalf("FAIL: %d, want 202", status)
	}
	if status, _ := httpGet(t, base+"/SYNC-NOPE"); status != http.StatusNotFound {
		t.Fatalf("SYNC-NOPE: %d, want 404", status)
	}
	text, fams := scrapeUntil(t, url, func(f map[string]*dto.MetricFamily) bool {
		return value(f, "zmws_jobs_failed_total", "service", "FAIL", "code", "job_failed") == 2
	})
	for _, c := range []struct {
		want   float64
		name   string
		labels []string
	}{
		{3, "zmws_jobs_completed_total", []string{"service", "ECHO"}},
		{2, "zmws_jobs_submitted_total", []string{"service", "FAIL"}},
		{0, "zmws_jobs_completed_total", []string{"service", "FAIL"}},
		{0, "zmws_jobs_queued", []string{"service", "FAIL"}},
		{0, "zmws_jobs_active", []string{"service", "FAIL"}},
		{1, "zmws_http_requests_total", []string{"route", "submit", "code", "202"}},
		{0, "zmws_http_sync_in_flight", nil},
		{2, "zmws_broker_workers", nil},
		{2, "zmws_broker_services", nil},
		{1, "zmws_broker_up", nil},
	} {
		if v, ok := promtest.Value(fams, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	// SYNC-NOPE reached the broker (NOPE is a name a worker could offer),
	// which refused it.
	if v := value(fams, "zmws_jobs_refused_total", "service", "_unknown", "code", "unknown_service"); v != 1 {
		t.Errorf("unknown service refusals %v, want 1", v)
	}
	if v := value(fams, "zmws_broker_messages_received_total", "socket", "client"); v < 6 {
		t.Errorf("client messages %v, want at least 6", v)
	}
	for _, name := range []string{"zmws_journal_commit_seconds", "zmws_journal_commit_jobs", "zmws_journal_size_bytes", "zmws_broker_loop_turn_seconds", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s in the scrape", name)
		}
	}
	promtest.Promtool(t, text)

	// Every metric the dashboard shows exists (zmws-run's: cmd/zmws-run).
	for _, name := range promtest.DashboardMetrics(t, "../../examples/grafana/zmws.json") {
		if strings.HasPrefix(name, "zmws_run_") {
			continue
		}
		if _, ok := fams[name]; !ok {
			t.Errorf("examples/grafana/zmws.json queries %s, which zmwsd does not export", name)
		}
	}
}

// TestRun_MetricsBind: --metrics-bind serves /metrics, without the gateway.
func TestRun_MetricsBind(t *testing.T) {
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
		"--events-bind=", "--data-dir=", "--http-bind=", "--metrics-bind=127.0.0.1:0")
	addr := make(chan string, 1)
	cli.metricsReady = func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, _, done := start(t, ctx, cli, io.Discard)
	metricsWorkers(t, srv.WorkerEndpoint())
	var url string
	select {
	case a := <-addr:
		url = "http://" + a + "/metrics"
	case <-time.After(10 * time.Second):
		t.Fatal("no metrics address")
	}
	text, fams := scrapeUntil(t, url, func(f map[string]*dto.MetricFamily) bool {
		return value(f, "zmws_broker_workers") == 2
	})
	if _, ok := fams["zmws_http_requests_total"]; ok {
		t.Error("gateway metrics without a gateway")
	}
	if _, ok := fams["zmws_journal_commit_seconds"]; ok {
		t.Error("journal metrics without a journal")
	}
	promtest.Promtool(t, text)
	if status, _ := httpGet(t, strings.TrimSuffix(url, "/metrics")+"/SYNC-ECHO"); status != http.StatusNotFound {
		t.Errorf("--metrics-bind answers other paths: %d", status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("metrics still served after run returned")
	}
}

func TestRun_MetricsBindRefused(t *testing.T) {
	for _, c := range []struct{ flag, want string }{
		{"--metrics-bind=nonsense", "--metrics-bind nonsense: want host:port"},
		{"--metrics-services=0", "--metrics-services must be positive"},
	} {
		cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind=", "--data-dir=", "--http-bind=", c.flag)
		err := run(context.Background(), cli, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.flag, err, c.want)
		}
	}
}
