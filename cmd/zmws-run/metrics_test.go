package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/promtest"
	"github.com/zmws/zmws/internal/testbroker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/worker"
)

// TestRun_Metrics: --metrics-bind serves zmws-run's jobs by exit code,
// start times and running commands, which pass promtool and are all the
// zmws-run metrics the Grafana dashboard asks for.
func TestRun_Metrics(t *testing.T) {
	dir := t.TempDir()
	for name, cmd := range map[string]string{"OK": "true", "BAD": "false", "NAP": "sleep {{seconds}}"} {
		if err := os.WriteFile(filepath.Join(dir, name+".toml"), []byte("command = "+`"`+cmd+`"`+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv, c := testbroker.Start(t)
	addr := make(chan string, 1)
	cli := parse(t, "--broker", srv.WorkerEndpoint(), "--heartbeat", "200ms", "--jobs-dir", dir, "--metrics-bind", "127.0.0.1:0")
	cli.metricsReady = func(a string) { addr <- a }
	startCLI(t, c, zerolog.NewTestWriter(t), cli, "OK", "BAD", "NAP")
	var url string
	select {
	case a := <-addr:
		url = "http://" + a + "/metrics"
	case <-time.After(wait):
		t.Fatal("no metrics address")
	}
	fams := promtest.Families(t, promtest.Scrape(t, url))
	if v, ok := promtest.Value(fams, "zmws_run_jobs_total", "service", "OK", "exit_code", "0"); !ok || v != 0 {
		t.Errorf("before any job: zmws_run_jobs_total{OK,0} = %v (found %v), want a 0", v, ok)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, s := range []string{"OK", "OK", "BAD"} {
		if _, err := c.Call(ctx, s, client.Request{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	nap, err := c.Submit(ctx, "NAP", client.Request{Params: map[string]string{"seconds": "30"}})
	if err != nil {
		t.Fatal(err)
	}
	text, fams := scrapeUntil(t, url, func(f map[string]*dto.MetricFamily) bool {
		running, _ := promtest.Value(f, "zmws_run_commands_running", "service", "NAP")
		spawned, _ := promtest.Value(f, "zmws_run_spawn_seconds", "service", "NAP")
		return running == 1 && spawned == 1
	})
	for _, c := range []struct {
		want   float64
		name   string
		labels []string
	}{
		{2, "zmws_run_jobs_total", []string{"service", "OK", "exit_code", "0"}},
		{1, "zmws_run_jobs_total", []string{"service", "BAD", "exit_code", "1"}},
		{2, "zmws_run_spawn_seconds", []string{"service", "OK"}},
		{1, "zmws_run_spawn_seconds", []string{"service", "NAP"}},
		{0, "zmws_run_commands_running", []string{"service", "OK"}},
	} {
		if v, ok := promtest.Value(fams, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	promtest.Promtool(t, text)
	for _, name := range promtest.DashboardMetrics(t, "../../examples/grafana/zmws.json") {
		if _, ok := fams[name]; strings.HasPrefix(name, "zmws_run_") && !ok {
			t.Errorf("examples/grafana/zmws.json queries %s, which zmws-run does not export", name)
		}
	}
	// A cancelled job ends its command: it is no longer running, and
	// had no exit code of its own.
	if _, err := c.Cancel(ctx, nap); err != nil {
		t.Fatal(err)
	}
	scrapeUntil(t, url, func(f map[string]*dto.MetricFamily) bool {
		v, _ := promtest.Value(f, "zmws_run_commands_running", "service", "NAP")
		return v == 0
	})
}

// scrapeUntil scrapes url until ok, and returns the last scrape.
func scrapeUntil(t *testing.T, url string, ok func(map[string]*dto.MetricFamily) bool) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	var text []byte
	var fams map[string]*dto.MetricFamily
	defer func() { // also when Eventually gives up
		if t.Failed() {
			t.Logf("the last scrape of %s:\n%s", url, text)
		}
	}()
	zmqtest.Eventually(t, "the metrics at "+url+" as expected", wait, func() bool {
		text = promtest.Scrape(t, url)
		fams = promtest.Families(t, text)
		return ok(fams)
	})
	return text, fams
}

func TestExitLabel(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "0"},
		{fmt.Errorf("job: %w", &worker.ExitError{Code: 3}), "3"},
		{&worker.ExitError{Code: 300}, exitNone},
		{context.Canceled, exitNone},
	} {
		if got := exitLabel(c.err); got != c.want {
			t.Errorf("exitLabel(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
