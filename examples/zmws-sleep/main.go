// Command zmws-sleep is an example zmws worker for the SLEEP service: it sleeps
// for the job's "seconds" parameter (default 1, at most 3600) and answers
// "slept Ns".
//
//	go run ./examples/zmws-sleep --broker tcp://127.0.0.1:5556
//	zmws run SYNC-SLEEP seconds=2   # or curl 'localhost:5580/SYNC-SLEEP?seconds=2'
package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/examples/internal/workercmd"
	"github.com/zmws/zmws/worker"
)

// CLI is the command line.
type CLI struct {
	workercmd.Flags `embed:""`
	Service         string `help:"Service name to offer." default:"SLEEP" env:"ZMWS_WORKER_SERVICE"`
}

func main() {
	var cli CLI
	kctx := kong.Parse(&cli, kong.Name("zmws-sleep"),
		kong.Description("Example zmws worker: sleeps for the job's seconds parameter."), kong.UsageOnError())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.FatalIfErrorf(workercmd.Run(ctx, cli.Flags, cli.Service, "zmws-example-sleep", worker.HandlerFunc(serve), os.Stderr))
}

// maxSeconds bounds a sleep, so a typo cannot hold a worker for days.
const maxSeconds = 3600

// serve sleeps for the "seconds" parameter; a cancelled ctx ends the sleep
// early and fails the job.
func serve(ctx context.Context, j *worker.Job) ([]byte, error) {
	raw, ok := j.Params["seconds"]
	if !ok {
		raw = "1"
	}
	secs, err := parseSeconds(raw)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(time.Duration(secs * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, fmt.Errorf("sleep interrupted: %w", ctx.Err())
	}
	return []byte("slept " + strconv.FormatFloat(secs, 'f', -1, 64) + "s"), nil
}

// parseSeconds parses a number of seconds from 0 to maxSeconds.
func parseSeconds(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > maxSeconds {
		return 0, fmt.Errorf("seconds must be a number from 0 to %d, got %q", maxSeconds, s)
	}
	return v, nil
}
