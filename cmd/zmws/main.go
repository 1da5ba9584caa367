// Command zmws is the zmws client: submit jobs, run them synchronously with
// their output streamed, and look at the broker's jobs, workers and services.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/mattn/go-isatty"
	"golang.org/x/term"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/internal/version"
	"github.com/zmws/zmws/protocol"
)

// CLI is zmws' command line.
type CLI struct {
	Version kong.VersionFlag `help:"Print zmws' version and exit."`

	Broker    string        `help:"Broker client endpoint." default:"tcp://127.0.0.1:5555" env:"ZMWS_BROKER"`
	Events    string        `help:"Broker events endpoint (for watch, and submit --each-line --wait)." default:"tcp://127.0.0.1:5557" env:"ZMWS_EVENTS"`
	Timeout   time.Duration `help:"How long to wait: for a submit or a query, for the broker's answer (0: 5s); for run, for the whole job (0: no limit), after which run exits 124 and the job runs on." default:"0" env:"ZMWS_TIMEOUT"`
	Output    string        `help:"Output format for listings: table or json." short:"o" default:"table" enum:"table,json" env:"ZMWS_OUTPUT"`
	LogLevel  string        `help:"Log level for the client's own logs." default:"warn" env:"ZMWS_LOG_LEVEL"`
	BrokerKey string        `help:"The broker's CURVE public key file: speak CURVE to it (needs --curve-key)." env:"ZMWS_BROKER_KEY" placeholder:"FILE"`
	CurveKey  string        `help:"This client's CURVE secret key file (zmws keygen); the broker must authorize its public key." env:"ZMWS_CURVE_KEY" placeholder:"FILE"`
	Protocol  string        `help:"What to speak to the broker: auto (ask it mmi.service in 18/MDP with zmws's meta frame and in 7/MDP, and speak what answers), zmws, mdp1 (plain 7/MDP) or mdp2 (plain 18/MDP). A plain broker runs only run, without parameters (docs/PROTOCOL.md)." default:"auto" enum:"auto,zmws,mdp1,mdp2" env:"ZMWS_PROTOCOL"`

	Submit   SubmitCmd   `cmd:"" help:"Queue a job and print its ID."`
	Run      RunCmd      `cmd:"" help:"Run a job and stream its output; exit with its exit code."`
	Job      JobCmd      `cmd:"" help:"Show one job."`
	Cancel   CancelCmd   `cmd:"" help:"Cancel a job: remove it from its queue, or stop it on its worker."`
	Retry    RetryCmd    `cmd:"" help:"Queue a failed job again under its ID, or every failed job of a service (--failed --service S)."`
	Jobs     JobsCmd     `cmd:"" help:"List finished (default), running, queued or failed (from the journal) jobs."`
	Workers  WorkersCmd  `cmd:"" help:"List connected workers."`
	Services ServicesCmd `cmd:"" help:"List every service a worker ever offered."`
	Pause    PauseCmd    `cmd:"" help:"Pause a service: its jobs are accepted and queue, none is dispatched (an admin operation; kept across broker restarts)."`
	Resume   ResumeCmd   `cmd:"" help:"End a service's pause or drain: its queue is dispatched again."`
	Drain    DrainCmd    `cmd:"" help:"Drain a service or a worker: no new jobs to it, running ones finish, then its workers are told to stop."`
	Watch    WatchCmd    `cmd:"" help:"Follow job events, one line each."`
	Scheds   SchedsCmd   `cmd:"" name:"schedules" help:"List the broker's recurring schedules: next and last tick, last job (an admin query)."`
	Keygen   KeygenCmd   `cmd:"" help:"Make a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub."`
	Keys     KeysCmd     `cmd:"" help:"Manage the broker's authorized keys."`
	Token    TokenCmd    `cmd:"" help:"Add or list the HTTP gateway's bearer tokens (a file zmwsd reads)."`
	Start    StartCmd    `cmd:"" help:"Start the broker and workers the installation file describes, each detached with its log and PID file, and wait until they are ready."`
	Stop     StopCmd     `cmd:"" help:"Stop what zmws start started: the workers first (their jobs finish or are given back), then the broker."`
	Status   StatusCmd   `cmd:"" help:"Show each process of the installation: PID, uptime, services."`
	Top      TopCmd      `cmd:"" help:"Show the services (workers, queues, rates) and workers, refreshed; q quits."`
}

// env is what every command's Run receives.
type env struct {
	ctx    context.Context
	cli    *CLI
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// stdinTerminal tells whether stdin is a terminal (then it is not input).
	stdinTerminal bool
	// stderrTerminal tells whether progress bars can be drawn.
	stderrTerminal bool
	// stderrWidth is the width of stderr's terminal (nil: $COLUMNS, else 80).
	stderrWidth func() int
	// screen is stdout's terminal, for zmws top (nil: not a terminal).
	screen screen
}

// width is the number of columns a live progress view may use.
func (e *env) width() int {
	if e.stderrWidth != nil {
		if w := e.stderrWidth(); w > 0 {
			return w
		}
	}
	if w, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && w > 0 {
		return w
	}
	return 80
}

// client opens a client for the broker.
func (e *env) client() (*client.Client, error) {
	return e.clientWith(client.Config{Timeout: e.answerTimeout()})
}

// clientWith opens a client for the broker with cfg's timings.
func (e *env) clientWith(cfg client.Config) (*client.Client, error) {
	log, err := logging.New(e.stderr, e.cli.LogLevel, "console")
	if err != nil {
		return nil, err
	}
	keys, err := e.curve()
	if err != nil {
		return nil, err
	}
	cfg.Broker, cfg.Curve, cfg.Logger = e.cli.Broker, keys, log
	if cfg.Protocol == "" {
		cfg.Protocol = protocol.Dialect(e.cli.Protocol)
	}
	return client.New(cfg)
}

// answerTimeout is how long to wait for the broker's answer to a submit
// or a query: --timeout, or client.DefaultTimeout.
func (e *env) answerTimeout() time.Duration {
	if e.cli.Timeout > 0 {
		return e.cli.Timeout
	}
	return client.DefaultTimeout
}

// curve loads --broker-key and --curve-key (nil when neither is given).
func (e *env) curve() (*curve.Client, error) {
	return curve.LoadClient(e.cli.BrokerKey, e.cli.CurveKey)
}

// exitError carries the exit status a command wants for the process.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	var cli CLI
	kctx := kong.Parse(&cli,
		kong.Name("zmws"),
		version.Vars("zmws"),
		kong.Description("zmws client: submit and run jobs, inspect the broker."),
		kong.UsageOnError())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{ctx: ctx, cli: &cli, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		stdinTerminal:  isatty.IsTerminal(os.Stdin.Fd()) || isatty.IsCygwinTerminal(os.Stdin.Fd()),
		stderrTerminal: isatty.IsTerminal(os.Stderr.Fd()),
		stderrWidth: func() int {
			w, _, err := term.GetSize(int(os.Stderr.Fd()))
			if err != nil {
				return 0
			}
			return w
		}}
	if isatty.IsTerminal(os.Stdout.Fd()) {
		e.screen = newTTY(os.Stdin, os.Stdout)
	}
	err := kctx.Run(e)
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "zmws:", err)
		os.Exit(1)
	}
}
