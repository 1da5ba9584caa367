package server_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/curvetest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
	"github.com/zmws/zmws/worker"
)

// metric returns the value of the sample of family name whose labels
// include labels (name=value pairs): a counter's or gauge's value, a
// histogram's count; ok false when there is none.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	sample:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue sample
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

// waitMetric polls until the sample is want.
func waitMetric(t *testing.T, g prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	zmqtest.Eventually(t, fmt.Sprintf("%s%v = %v", name, labels, want), wait, func() bool {
		got, ok := metric(t, g, name, labels...)
		return ok && got == want
	})
}

// runWorker serves service until the test ends: a job with param fail
// fails, others echo their input.
func runWorker(t *testing.T, ep, service string) {
	w, err := worker.New(worker.Config{Brokers: []string{ep}, Service: service, Heartbeat: time.Second,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			if j.Params["fail"] != "" {
				return nil, errors.New("asked to fail")
			}
			return []byte("ok"), nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "worker "+service, w.Run)
}

func TestServer_Metrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), store.BoltFile), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the server stops
	// A heartbeat the workers keep on a loaded machine: a worker expired
	// and back would change the counts.
	srv := start(t, server.Config{Metrics: reg, MetricsServices: 2, Store: st, Broker: broker.Config{Heartbeat: time.Second}})
	for _, s := range []string{"A", "B", "C"} {
		runWorker(t, srv.WorkerEndpoint(), s)
	}
	c, err := client.New(client.Config{Broker: srv.ClientEndpoint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// The first scrape gives the label places (2), by name among the
	// services it finds: it must find all three, or B and C could take
	// them before A's READY is in (this test's flake: A under _other).
	zmqtest.Eventually(t, "three workers ready", wait, func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 3
	})
	waitMetric(t, reg, 3, "zmws_broker_workers")
	waitMetric(t, reg, 1, "zmws_broker_up")
	for range 3 {
		if _, err := c.Call(ctx, "A", client.Request{Input: []byte("x")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := c.Call(ctx, "A", client.Request{Params: map[string]string{"fail": "1"}}, nil); err != nil || res.Code != "job_failed" {
		t.Fatalf("a failing job: %+v, %v", res, err)
	}
	if _, err := c.Submit(ctx, "NOPE", client.Request{}); err == nil {
		t.Fatal("a job for an unknown service was accepted")
	}
	for _, s := range []string{"B", "C"} {
		if _, err := c.Submit(ctx, s, client.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	waitMetric(t, reg, 3, "zmws_jobs_completed_total", "service", "A")
	waitMetric(t, reg, 4, "zmws_jobs_submitted_total", "service", "A")
	waitMetric(t, reg, 1, "zmws_jobs_failed_total", "service", "A", "code", "job_failed")
	waitMetric(t, reg, 4, "zmws_job_duration_seconds", "service", "A")
	waitMetric(t, reg, 4, "zmws_job_queue_wait_seconds", "service", "A")
	waitMetric(t, reg, 1, "zmws_jobs_refused_total", "service", "_unknown", "code", "unknown_service")
	if _, ok := metric(t, reg, "zmws_jobs_submitted_total", "service", "_unknown"); ok {
		t.Error("_unknown has other series than its refusals")
	}
	// Services past MetricsServices (2) are summed under _other: A and
	// one of B, C have labels.
	waitMetric(t, reg, 1, "zmws_jobs_completed_total", "service", "_other")
	waitMetric(t, reg, 1, "zmws_workers", "service", "_other", "state", "idle")
	waitMetric(t, reg, 0, "zmws_workers", "service", "A", "state", "busy")
	waitMetric(t, reg, 3, "zmws_broker_services")
	// A paused service, and a job waiting for its time.
	waitMetric(t, reg, 0, "zmws_service_paused", "service", "A")
	if _, err := c.Pause(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(ctx, "A", client.Request{Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, reg, 1, "zmws_service_paused", "service", "A")
	waitMetric(t, reg, 0, "zmws_service_draining", "service", "A")
	waitMetric(t, reg, 1, "zmws_jobs_scheduled", "service", "A")
	waitMetric(t, reg, 3, "zmws_broker_connections", "socket", "worker")
	waitMetric(t, reg, 1, "zmws_broker_connections", "socket", "client")
	c.Close()
	waitMetric(t, reg, 0, "zmws_broker_connections", "socket", "client")
	if n, _ := metric(t, reg, "zmws_broker_messages_received_total", "socket", "client"); n < 7 {
		t.Errorf("client messages received: %v, want at least the 7 requests", n)
	}
	if n, _ := metric(t, reg, "zmws_broker_messages_sent_total", "socket", "worker"); n < 6 {
		t.Errorf("worker messages sent: %v, want at least the 6 REQUESTs", n)
	}
	if n, _ := metric(t, reg, "zmws_broker_loop_turn_seconds"); n == 0 {
		t.Error("no loop turns timed")
	}
	if n, _ := metric(t, reg, "zmws_journal_commit_seconds"); n == 0 {
		t.Error("no journal commits timed")
	}
	if n, _ := metric(t, reg, "zmws_journal_size_bytes"); n <= 0 {
		t.Errorf("journal size %v", n)
	}
}

// A registry gathered after the loop stopped says so, promptly.
func TestServer_MetricsAfterStop(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	waitMetric(t, reg, 1, "zmws_broker_up")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if up, _ := metric(t, reg, "zmws_broker_up"); up != 0 {
		t.Fatalf("zmws_broker_up %v after the loop stopped", up)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a scrape after stop took %v", d)
	}
	if _, ok := metric(t, reg, "zmws_jobs_submitted_total"); ok {
		t.Error("job metrics reported without a loop")
	}
	// Registering twice is refused: one registry per server.
	if _, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", Metrics: reg}); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Errorf("a second server on one registry: %v", err)
	}
}

// With CURVE the worker socket's connections are counted by the monitor
// the loop reads (workersGone), the client socket's by a watch of its own.
func TestServer_MetricsConnectionsCurve(t *testing.T) {
	f := curvetest.New(t, secureEntries)
	reg := prometheus.NewRegistry()
	srv := start(t, server.Config{Metrics: reg, Curve: &server.Curve{Key: f.Broker, Keys: f.Keys(t)}})
	waitMetric(t, reg, 0, "zmws_broker_connections", "socket", "worker")
	w := curveDealer(t, srv.WorkerEndpoint(), f.Client(t, "wall"))
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x01}, b("A1"))
	waitMetric(t, reg, 1, "zmws_broker_workers")
	waitMetric(t, reg, 1, "zmws_broker_connections", "socket", "worker")
	admin := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	if _, err := admin.Workers(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, reg, 1, "zmws_broker_connections", "socket", "client")
	w.Close()
	waitMetric(t, reg, 0, "zmws_broker_connections", "socket", "worker")
	waitMetric(t, reg, 0, "zmws_broker_workers")
}

// A schedule's ticks and its next tick are in the metrics.
func TestServer_MetricsSchedules(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := start(t, server.Config{Metrics: reg, Broker: broker.Config{Heartbeat: time.Second,
		Schedules: []broker.Schedule{{Name: "every", Spec: "@every 1s", Service: "A"}, {Name: "nowhere", Spec: "@every 1s", Service: "NOPE"}}}})
	runWorker(t, srv.WorkerEndpoint(), "A")
	zmqtest.Eventually(t, "a tick fired and one skipped", wait, func() bool {
		fired, _ := metric(t, reg, "zmws_schedule_ticks_total", "schedule", "every", "outcome", "fired")
		skipped, _ := metric(t, reg, "zmws_schedule_ticks_total", "schedule", "nowhere", "outcome", "skipped")
		return fired >= 1 && skipped >= 1
	})
	next, ok := metric(t, reg, "zmws_schedule_next_tick_timestamp_seconds", "schedule", "every")
	if now := float64(time.Now().UnixNano()) / 1e9; !ok || next < now-1 || next > now+2 {
		t.Errorf("next tick %v (%v), want within a second or two of now (%v)", next, ok, now)
	}
}
