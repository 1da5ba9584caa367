// Command zmwsd is the zmws broker: a Majordomo broker that hands out job IDs
// for asynchronous jobs, streams output of synchronous ones, and remembers
// every service any worker ever offered.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/server"
)

// CLI is zmwsd's command line. Every flag can also come from the environment.
type CLI struct {
	ClientBind  string        `help:"Endpoint clients connect to (ROUTER)." default:"tcp://127.0.0.1:5555" env:"ZMWSD_CLIENT_BIND"`
	WorkerBind  string        `help:"Endpoint workers connect to (ROUTER)." default:"tcp://127.0.0.1:5556" env:"ZMWSD_WORKER_BIND"`
	EventsBind  string        `help:"Endpoint job events are published on (PUB); empty disables." default:"tcp://127.0.0.1:5557" env:"ZMWSD_EVENTS_BIND"`
	Heartbeat   time.Duration `help:"Heartbeat interval, both ways." default:"2500ms" env:"ZMWSD_HEARTBEAT"`
	Liveness    int           `help:"Heartbeats missed before a worker is dropped and its job requeued." default:"3" env:"ZMWSD_LIVENESS"`
	History     int           `help:"Finished jobs kept for SERVER-JOBS and lookups." default:"100" env:"ZMWSD_HISTORY"`
	MaxQueue    int           `help:"Queued jobs per service before submissions are refused." default:"100000" env:"ZMWSD_MAX_QUEUE"`
	MaxAttempts int           `help:"Dispatches per job before it fails when its workers keep dying." default:"3" env:"ZMWSD_MAX_ATTEMPTS"`
	MaxMsgSize  int64         `help:"Largest frame accepted from a peer, in bytes (ZMQ_MAXMSGSIZE); -1 for none." default:"16777216" env:"ZMWSD_MAX_MSG_SIZE"`
	MaxOutput   int           `help:"Output bytes kept per job (and sent at once to 7/MDP sync clients)." default:"262144" env:"ZMWSD_MAX_OUTPUT"`
	LogLevel    string        `help:"Log level: trace, debug, info, warn, error." default:"info" env:"ZMWSD_LOG_LEVEL"`
	LogFormat   string        `help:"Log format: json or console." default:"json" enum:"json,console" env:"ZMWSD_LOG_FORMAT"`
}

func main() {
	var cli CLI
	kctx := kong.Parse(&cli,
		kong.Name("zmwsd"),
		kong.Description("zmws broker: queues named jobs and hands them to workers."),
		kong.UsageOnError())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.FatalIfErrorf(run(ctx, cli, os.Stderr, nil))
}

// run starts the broker and serves until ctx ends. ready, when not nil,
// receives the server once its sockets are bound.
func run(ctx context.Context, cli CLI, logw io.Writer, ready func(*server.Server)) error {
	log, err := logging.New(logw, cli.LogLevel, cli.LogFormat)
	if err != nil {
		return err
	}
	if cli.Heartbeat <= 0 || cli.Liveness <= 0 || cli.History <= 0 || cli.MaxQueue <= 0 || cli.MaxAttempts <= 0 || cli.MaxOutput <= 0 {
		return fmt.Errorf("--heartbeat, --liveness, --history, --max-queue, --max-attempts and --max-output must be positive")
	}
	srv, err := server.New(server.Config{
		ClientBind: cli.ClientBind,
		WorkerBind: cli.WorkerBind,
		EventsBind: cli.EventsBind,
		MaxMsgSize: cli.MaxMsgSize,
		Broker: broker.Config{
			Heartbeat:   cli.Heartbeat,
			Liveness:    cli.Liveness,
			History:     cli.History,
			MaxQueue:    cli.MaxQueue,
			MaxAttempts: cli.MaxAttempts,
			MaxOutput:   cli.MaxOutput,
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info().Str("client", srv.ClientEndpoint()).Str("worker", srv.WorkerEndpoint()).
		Str("events", srv.EventsEndpoint()).Dur("heartbeat", cli.Heartbeat).Int("liveness", cli.Liveness).Msg("zmwsd started")
	if ready != nil {
		ready(srv)
	}
	return srv.Run(ctx)
}
