package main

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmws/zmws/worker"
)

// runMetrics are zmws-run's own metrics (--metrics-bind; docs/METRICS.md).
// The service label takes the names of zmws-run's own templates, so its
// values are few; exit codes are 0 to 255 at most, and "none".
type runMetrics struct {
	jobs    *prometheus.CounterVec
	spawn   *prometheus.HistogramVec
	running *prometheus.GaugeVec
}

// exitNone is the exit_code label of a job that ended without a command's
// exit code: its parameters refused, cancelled before its command started,
// or zmws-run shutting down.
const exitNone = "none"

func newRunMetrics(reg prometheus.Registerer) *runMetrics {
	m := &runMetrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmws_run_jobs_total",
			Help: "Jobs zmws-run ran, per service and exit code (0: complete; none: no command exit, e.g. parameters refused).",
		}, []string{"service", "exit_code"}),
		spawn: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zmws_run_spawn_seconds",
			Help:    "Time a command took to start (pipes, fork, exec), per service.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"service"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zmws_run_commands_running",
			Help: "Jobs running now (from the check of their parameters to their command's exit), per service.",
		}, []string{"service"}),
	}
	reg.MustRegister(m.jobs, m.spawn, m.running)
	return m
}

// onSpawn is runner.Config.OnSpawn.
func (m *runMetrics) onSpawn(service string, d time.Duration) {
	m.spawn.WithLabelValues(service).Observe(d.Seconds())
}

// wrap counts the jobs h serves for service. The series of service exist
// from the start, at zero, so a dashboard shows the service before its
// first job.
func (m *runMetrics) wrap(service string, h worker.Handler) worker.Handler {
	running := m.running.WithLabelValues(service)
	m.spawn.WithLabelValues(service)
	m.jobs.WithLabelValues(service, "0")
	return worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
		running.Inc()
		defer running.Dec()
		res, err := h.ServeJob(ctx, j)
		m.jobs.WithLabelValues(service, exitLabel(err)).Inc()
		return res, err
	})
}

// exitLabel is the exit_code label of a job that ended with err.
func exitLabel(err error) string {
	if err == nil {
		return "0"
	}
	var ee *worker.ExitError
	if errors.As(err, &ee) && ee.Code >= 0 && ee.Code <= 255 {
		return strconv.Itoa(ee.Code)
	}
	return exitNone
}
