// Package metrics is what zmwsd and zmws-run share of their Prometheus
// metrics: a registry of their own (never the global one: tests run
// several servers in one process), and the HTTP listener of --metrics-bind.
// The metrics themselves live with what they measure (server, gateway,
// cmd/zmws-run); docs/METRICS.md lists them.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/logging"
)

// Path is where metrics are served.
const Path = "/metrics"

// NewRegistry returns a registry with the Go runtime's and the process's
// metrics (go_*, process_*) in it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler answers a scrape with reg's metrics, in the text format (or
// what the scraper asks for). An error gathering them is a 500.
func Handler(reg *prometheus.Registry, log zerolog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: errorLog{log}, Registry: reg})
}

type errorLog struct{ log zerolog.Logger }

func (e errorLog) Println(v ...any) { e.log.Error().Msg(fmt.Sprint(v...)) }

// Listen opens the --metrics-bind listener (host:port), warning when it is
// reachable beyond this machine: metrics need no token, and name the
// services (never a job's data).
func Listen(addr, flag string, log zerolog.Logger) (net.Listener, error) {
	if err := CheckAddr(addr, flag); err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Warn().Str(logging.KeyEndpoint, l.Addr().String()).
			Msg("metrics served beyond loopback: anyone who reaches the address sees the service names and counts")
	}
	return l, nil
}

// CheckAddr checks a --metrics-bind address (host:port) without opening it.
func CheckAddr(addr, flag string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s %s: want host:port: %w", flag, addr, err)
	}
	return nil
}

// Serve answers GET /metrics on l with h until ctx ends; other paths are
// 404. It closes l and returns nil after a stop caused by ctx.
func Serve(ctx context.Context, l net.Listener, h http.Handler, log zerolog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info().Str(logging.KeyEndpoint, l.Addr().String()).Msg("metrics listening")
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
