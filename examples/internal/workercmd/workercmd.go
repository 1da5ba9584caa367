// Package workercmd holds what the example workers share: their common
// command-line flags and the wiring from flags to a running worker.Worker.
package workercmd

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// Flags are the flags every example worker takes (kong tags). Embed them with
// `embed:""`.
type Flags struct {
	Broker      []string      `help:"Broker worker endpoint; repeat (or comma-separate) for failover, tried in order." default:"tcp://127.0.0.1:5556" env:"ZMWS_WORKER_BROKER"`
	Concurrency int           `help:"Jobs run at once, one broker connection each." default:"1" env:"ZMWS_WORKER_CONCURRENCY"`
	Heartbeat   time.Duration `help:"Heartbeat interval; use the broker's." default:"2500ms" env:"ZMWS_WORKER_HEARTBEAT"`
	LogLevel    string        `help:"Log level: trace, debug, info, warn, error." default:"info" env:"ZMWS_WORKER_LOG_LEVEL"`
	LogFormat   string        `help:"Log format: console or json." default:"console" enum:"console,json" env:"ZMWS_WORKER_LOG_FORMAT"`
}

// Run builds the logger (writing to logw) and a worker for service from f,
// and serves with h until ctx is cancelled. name is announced in READY.
func Run(ctx context.Context, f Flags, service, name string, h worker.Handler, logw io.Writer) error {
	log, err := logging.New(logw, f.LogLevel, f.LogFormat)
	if err != nil {
		return err
	}
	if f.Concurrency < 1 || f.Heartbeat <= 0 {
		return errors.New("--concurrency and --heartbeat must be positive")
	}
	w, err := worker.New(worker.Config{
		Brokers:     f.Broker,
		Service:     service,
		Handler:     h,
		Concurrency: f.Concurrency,
		Heartbeat:   f.Heartbeat,
		Details:     &protocol.WorkerDetails{Name: name},
		Logger:      log,
	})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
