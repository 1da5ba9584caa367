// Command zmws-run is a zmws worker that wraps command line tools: each job
// of a service runs the service's command, exit 0 completes the job and
// stdout streams back to the caller. docs/RUNNER.md is the reference.
//
//	zmws-run --service STR-REV -- rev
//	zmws-run --jobs-dir examples/jobs.d --only SLEEP --concurrency 4
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/coreos/go-systemd/v22/daemon"
	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmws/zmws/config"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/internal/metrics"
	"github.com/zmws/zmws/internal/version"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/runner"
	"github.com/zmws/zmws/worker"
)

// CLI is zmws-run's command line. Every flag can also come from the
// environment (ZMWS_RUN_...), or from a [[worker]] entry of the
// installation file (BeforeResolve, in config.go).
type CLI struct {
	Version kong.VersionFlag `help:"Print zmws-run's version and exit."`
	Config  string           `help:"The installation file (docs/CONFIG.md): a [[worker]] entry sets these flags, each overridden by the flag or its ZMWS_RUN_ variable. Default: ./zmws.toml, else /etc/zmws/zmws.toml, when one exists; an empty value for none." env:"ZMWS_RUN_CONFIG" placeholder:"FILE"`
	Worker  string           `help:"The [[worker]] entry of --config to run, by its name; needed when the file has more than one." env:"ZMWS_RUN_WORKER" placeholder:"NAME"`

	Service string   `help:"Service name for the command given after --." env:"ZMWS_RUN_SERVICE"`
	JobsDir string   `help:"Folder of NAME.toml templates, one service each." type:"path" env:"ZMWS_RUN_JOBS_DIR"`
	Only    []string `help:"Serve only these services of --jobs-dir (repeatable)." env:"ZMWS_RUN_ONLY"`
	Broker  []string `help:"Broker worker endpoint; repeat (or comma-separate) for failover, tried in order." default:"tcp://127.0.0.1:5556" env:"ZMWS_RUN_BROKER"`

	BrokerKey string `help:"The broker's CURVE public key file: speak CURVE to it, and to nothing that lacks its secret (needs --curve-key)." env:"ZMWS_RUN_BROKER_KEY" placeholder:"FILE"`
	CurveKey  string `help:"This worker's CURVE secret key file (zmws keygen); the broker must authorize its public key for the services." env:"ZMWS_RUN_CURVE_KEY" placeholder:"FILE"`

	Concurrency int           `help:"Jobs of each service run at once, one broker connection each (a template's concurrency wins)." default:"1" env:"ZMWS_RUN_CONCURRENCY"`
	Timeout     time.Duration `help:"Run time limit of a job; 0 for none (a template's timeout wins)." default:"0s" env:"ZMWS_RUN_TIMEOUT"`
	KillGrace   time.Duration `help:"Time between SIGTERM and SIGKILL to a job's process group (a template's grace wins)." default:"5s" env:"ZMWS_RUN_KILL_GRACE"`
	MaxOutput   int           `help:"Stdout bytes kept and sent per job, the rest cut; keep below the broker's --max-output (a template's max_output wins)." default:"258048" env:"ZMWS_RUN_MAX_OUTPUT"`
	Workdir     string        `help:"Working directory of the commands (a template's workdir wins)." type:"path" env:"ZMWS_RUN_WORKDIR"`
	Env         []string      `help:"Extra environment NAME=VALUE for the commands (repeatable; a template's env wins)." sep:"none" env:"ZMWS_RUN_ENV"`
	PassEnv     []string      `help:"Also pass this variable (NAME, or PREFIX*) of zmws-run's environment to the commands (repeatable)." env:"ZMWS_RUN_PASS_ENV"`
	InheritEnv  bool          `help:"Pass zmws-run's whole environment to the commands (default: PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ, TMPDIR)." env:"ZMWS_RUN_INHERIT_ENV"`
	User        string        `help:"Run the --service command as this user; zmws-run must be root (a template says user = \"...\")." env:"ZMWS_RUN_USER"`
	Contain     string        `help:"How a job is contained: process-group (the default), pid-namespace (each in its own: nothing of it outlives zmws-run, not even when it is killed; root only; about 7 ms more per job), or auto (pid-namespace where it works)." default:"process-group" enum:"auto,pid-namespace,process-group" env:"ZMWS_RUN_CONTAIN"`
	Prestart    bool          `help:"Keep one process of the --service command started per slot, waiting for its job: only for commands that read their input before anything else (a template says prestart = true)." env:"ZMWS_RUN_PRESTART"`

	IdleCommand string        `help:"Command line to run when no service of this zmws-run has run a job for --idle-after, and again after each further quiet period; split like a template's command, no shell; a job arriving stops it (SIGTERM, SIGKILL after --kill-grace) and does not wait." env:"ZMWS_RUN_IDLE_COMMAND" placeholder:"CMD"`
	IdleAfter   time.Duration `help:"Quiet time before the --idle-command runs." default:"0s" env:"ZMWS_RUN_IDLE_AFTER"`
	IdleTimeout time.Duration `help:"Run time limit of the --idle-command; 0: --idle-after." default:"0s" env:"ZMWS_RUN_IDLE_TIMEOUT"`

	Prefetch    int           `help:"Jobs each slot takes from the broker ahead of the one it runs, so the next starts at once: for many short jobs; a job may then wait behind a long one here while another worker is free." default:"0" env:"ZMWS_RUN_PREFETCH"`
	Protocol    string        `help:"What to speak to the broker: auto (18/MDP with zmws's meta frame; plain 7/MDP after a broker that took the connection left READY unanswered for 3 heartbeats), zmws, mdp1 (plain 7/MDP) or mdp2 (plain 18/MDP). Against a plain broker jobs get no parameters, TTR, retries or prefetch (docs/PROTOCOL.md)." default:"auto" enum:"auto,zmws,mdp1,mdp2" env:"ZMWS_RUN_PROTOCOL"`
	Grace       time.Duration `help:"On SIGTERM, how long running jobs may finish before they are stopped and requeued." default:"10s" env:"ZMWS_RUN_GRACE"`
	Heartbeat   time.Duration `help:"Heartbeat interval; use the broker's." default:"2500ms" env:"ZMWS_RUN_HEARTBEAT"`
	MetricsBind string        `help:"Address (host:port) to serve this zmws-run's Prometheus metrics on, at /metrics: jobs by exit code, command start times, running commands (docs/METRICS.md); empty: none." env:"ZMWS_RUN_METRICS_BIND"`
	Check       bool          `help:"Load and check the services, print them, and exit."`
	LogLevel    string        `help:"Log level: trace, debug, info, warn, error." default:"info" env:"ZMWS_RUN_LOG_LEVEL"`
	LogFormat   string        `help:"Log format: json or console." default:"json" enum:"json,console" env:"ZMWS_RUN_LOG_FORMAT"`

	Command []string `arg:"" optional:"" help:"The --service's command and its arguments, after --; {{name}} placeholders take job parameters."`

	file  *config.File   // the installation file read, if any
	entry *config.Worker // its [[worker]] run, if any
	// metricsReady, when set (by tests), is told the --metrics-bind
	// listener's address.
	metricsReady func(addr string)
}

func main() {
	if runner.IsInit() {
		runner.Init() // zmws-run re-executed as a contained job's init
	}
	var cli CLI
	k := kong.Must(&cli, options()...)
	kctx, err := k.Parse(os.Args[1:])
	fatalIfParseErrorf(k, err)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cli, os.Stdout, os.Stderr)
	stop()
	// Every socket is closed now; the slots' DISCONNECTs may still be
	// lingering in libzmq's queues, and leave only if the process waits.
	term(termWait)
	kctx.FatalIfErrorf(err)
}

// termWait bounds how long zmws-run waits at exit for messages still
// queued on closed sockets: beyond the worker library's linger of its
// DISCONNECT (1 s).
const termWait = 2 * time.Second

// term ends the ZeroMQ context, which waits for the messages of closed
// sockets to leave (each within its linger), for at most d. zmq.Term blocks
// as long as any socket is open, so it is called only once everything is
// closed, and given up on after d.
func term(d time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		zmq.Term()
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func options() []kong.Option {
	return []kong.Option{
		kong.Name("zmws-run"),
		version.Vars("zmws-run"),
		kong.Description("zmws worker that runs a command for each job: zmws-run --service NAME -- CMD [ARGS...], or zmws-run --jobs-dir DIR."),
		kong.UsageOnError(),
	}
}

// run loads the services and serves them until ctx ends; with --check it
// prints them to stdout instead.
func run(ctx context.Context, cli CLI, stdout, logw io.Writer) error {
	log, err := logging.New(logw, cli.LogLevel, cli.LogFormat)
	if err != nil {
		return err
	}
	if cli.file != nil {
		ev := log.Info().Str("config", cli.file.Path)
		if cli.entry != nil {
			ev = ev.Str("name", cli.entry.Name)
		}
		ev.Msg("installation file read")
	}
	ts, err := load(cli)
	if err != nil {
		return err
	}
	contain, why, err := containment(cli.Contain)
	if err != nil {
		return err
	}
	idle, err := loadIdle(cli, runner.Config{Logger: log, Contain: contain})
	if err != nil {
		return err
	}
	if cli.MetricsBind != "" {
		if err := metrics.CheckAddr(cli.MetricsBind, "--metrics-bind"); err != nil {
			return err
		}
	}
	if cli.Check {
		for _, t := range ts {
			fmt.Fprintf(stdout, "%s\t%s", t.Service(), t.Command())
			if p := t.Params(); len(p) > 0 {
				fmt.Fprintf(stdout, "\tparams: %s", strings.Join(p, ", "))
			}
			if t.Prestart() {
				fmt.Fprint(stdout, "\tprestart")
			}
			if u := t.User(); u != "" {
				fmt.Fprintf(stdout, "\tuser: %s", u)
			}
			fmt.Fprintln(stdout)
		}
		if idle != nil {
			t := idle.Template()
			fmt.Fprintf(stdout, "--idle-command\t%s\tafter %v, timeout %v", t.Command(), cli.IdleAfter, t.Timeout())
			if u := t.User(); u != "" {
				fmt.Fprintf(stdout, "\tuser: %s", u)
			}
			fmt.Fprintln(stdout)
		}
		fmt.Fprintln(stdout, containLine(contain, why))
		return nil
	}
	if contain {
		log.Info().Str("contain", "pid-namespace").Msg("each job runs in a PID namespace of its own")
	} else if cli.Contain != "process-group" {
		log.Warn().Str("contain", "process-group").Str("reason", why).
			Msg("jobs run in process groups only: what a job starts outlives zmws-run killed with SIGKILL")
	}
	if cli.Grace <= 0 || cli.Heartbeat <= 0 {
		return errors.New("--grace and --heartbeat must be positive")
	}
	if cli.Prefetch < 0 || cli.Prefetch > 64 {
		return fmt.Errorf("--prefetch %d: want 0 to 64", cli.Prefetch)
	}
	keys, err := curve.LoadClient(cli.BrokerKey, cli.CurveKey)
	if err != nil {
		return err
	}

	var grace time.Duration
	for _, t := range ts {
		grace = max(grace, t.Grace())
	}
	var (
		m        *runMetrics
		metricsL net.Listener
		reg      *prometheus.Registry
	)
	if cli.MetricsBind != "" {
		if metricsL, err = metrics.Listen(cli.MetricsBind, "--metrics-bind", log); err != nil {
			return err
		}
		defer metricsL.Close()
		reg = metrics.NewRegistry()
		m = newRunMetrics(reg)
	}
	var (
		handlers []*runner.Handler
		workers  []*worker.Worker
		idler    *worker.Idler // all the services' quiet periods, for idle
		services []string
		slots    int
		unready  atomic.Int64 // services whose slots have not all sent READY
	)
	unready.Store(int64(len(ts)))
	// Whatever happens, no child outlives zmws-run: the handlers end their
	// prestarted processes, and the jobs' process groups left after the
	// grace; so does the idle command's.
	defer func() {
		sctx, stop := context.WithTimeout(context.Background(), grace)
		defer stop()
		for _, h := range handlers {
			h.Shutdown(sctx)
		}
		if idle != nil {
			idle.Shutdown(sctx)
		}
	}()
	if idle != nil {
		idler = worker.NewIdler(cli.IdleAfter, func(ctx context.Context) { idle.Run(ctx) })
		log.Info().Str("command", idle.Template().Command().String()).Dur("after", cli.IdleAfter).
			Dur("timeout", idle.Template().Timeout()).Msg("idle command loaded")
	}
	for _, t := range ts {
		rc := runner.Config{Logger: log, Contain: contain}
		if m != nil {
			rc.OnSpawn = m.onSpawn
		}
		h := runner.NewHandler(t, rc)
		handlers = append(handlers, h)
		var wh worker.Handler = h
		if m != nil {
			wh = m.wrap(t.Service(), h)
		}
		w, err := worker.New(worker.Config{
			Brokers:     cli.Broker,
			Service:     t.Service(),
			Handler:     wh,
			Concurrency: t.Concurrency(),
			Heartbeat:   cli.Heartbeat,
			Grace:       cli.Grace,
			Details:     &protocol.WorkerDetails{Name: "zmws-run"},
			Retries:     t.Retries(),
			Prefetch:    cli.Prefetch,
			Protocol:    protocol.Dialect(cli.Protocol),
			Curve:       keys,
			Idler:       idler,
			Logger:      log,
			Ready: func() {
				if unready.Add(-1) == 0 {
					notify(log, daemon.SdNotifyReady, servingStatus(services, slots, cli.Broker))
				}
			},
		})
		if err != nil {
			return err
		}
		workers = append(workers, w)
		services = append(services, t.Service())
		slots += t.Concurrency()
		log.Info().Str(logging.KeyService, t.Service()).Str("command", t.Command().String()).
			Int("concurrency", t.Concurrency()).Bool("prestart", t.Prestart()).Str("source", t.Source()).Msg("service loaded")
	}

	// A worker that cannot start stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// STOPPING=1 as soon as ctx ends; run returns only once it is sent (a
	// context.AfterFunc's goroutine could lose it to the process's exit).
	stopping := make(chan struct{})
	go func() {
		defer close(stopping)
		<-ctx.Done()
		notify(log, daemon.SdNotifyStopping, fmt.Sprintf("STATUS=stopping: running jobs may finish for --grace %v", cli.Grace))
	}()
	defer func() { cancel(); <-stopping }()
	errs := make([]error, len(workers))
	var wg, running sync.WaitGroup
	for i, w := range workers {
		running.Go(func() {
			if errs[i] = w.Run(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	// A worker's Run also returns, with nil, once the broker has drained
	// every slot of it (zmws drain): when all have, zmws-run stops too.
	wg.Go(func() {
		running.Wait()
		if ctx.Err() == nil && errors.Join(errs...) == nil {
			log.Info().Msg("every slot was drained by the broker: stopping")
		}
		cancel()
	})
	if idler != nil {
		wg.Go(func() { idler.Run(ctx) }) // returns once a run in progress is stopped
	}
	var metricsErr error
	if metricsL != nil {
		if cli.metricsReady != nil {
			cli.metricsReady(metricsL.Addr().String())
		}
		wg.Go(func() {
			if metricsErr = metrics.Serve(ctx, metricsL, metrics.Handler(reg, log), log); metricsErr != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	// A worker waits one second for a cancelled job before it gives up on
	// it; the job's process group may still be in its grace period. The
	// deferred Shutdowns give it that, then kill what is left.
	return errors.Join(append(errs, metricsErr)...)
}

// containment decides how jobs are contained, for --contain mode: in a PID
// namespace each, or in process groups only, and then why.
func containment(mode string) (contain bool, why string, err error) {
	switch mode {
	case "process-group":
		return false, "--contain process-group", nil
	case "pid-namespace":
		if err := runner.CheckContain(); err != nil {
			return false, "", fmt.Errorf("--contain pid-namespace: %w", err)
		}
		return true, "", nil
	}
	if err := runner.CheckContain(); err != nil {
		return false, err.Error(), nil
	}
	return true, "", nil
}

// containLine is what --check says of containment.
func containLine(contain bool, why string) string {
	if contain {
		return "contain: pid-namespace"
	}
	return "contain: process-group (" + why + ")"
}

// load builds the services: the inline one and those of the jobs folder.
func load(cli CLI) ([]*runner.Template, error) {
	d, err := defaults(cli)
	if err != nil {
		return nil, err
	}
	var ts []*runner.Template
	cmd, fromFile := command(cli)
	switch {
	case cli.Service != "" && cmd.Line == "" && cmd.Args == nil:
		return nil, fmt.Errorf("--service %s: no command; give it after --: zmws-run --service %s -- CMD [ARGS...]", cli.Service, cli.Service)
	case cli.Service == "" && len(cli.Command) > 0:
		return nil, fmt.Errorf("command %q: no --service to serve it as", cli.Command)
	case cli.Prestart && cli.Service == "":
		return nil, errors.New("--prestart is for the --service command; a template says prestart = true")
	case cli.User != "" && cli.Service == "" && cli.IdleCommand == "":
		return nil, errors.New(`--user is for the --service command and the --idle-command; a template says user = "..."`)
	case cli.Service != "":
		t, err := runner.New(runner.Spec{Service: cli.Service, Command: cmd, Prestart: cli.Prestart, User: cli.User}, d)
		if err != nil && fromFile {
			return nil, &config.Error{Path: cli.file.Path, Line: cli.entry.Lines["command"], Err: fmt.Errorf("service %s: %w", cli.Service, err)}
		}
		if err != nil {
			return nil, fmt.Errorf("--service %s: %w", cli.Service, err)
		}
		ts = append(ts, t)
	}

	if cli.JobsDir == "" {
		if len(cli.Only) > 0 {
			return nil, errors.New("--only needs --jobs-dir")
		}
		if len(ts) == 0 {
			return nil, errors.New("nothing to serve: give --service NAME -- CMD [ARGS...], or --jobs-dir DIR")
		}
		return ts, nil
	}
	dir, err := runner.LoadDir(cli.JobsDir, d)
	if err != nil && cli.entry != nil && cli.entry.Values["jobs_dir"] == cli.JobsDir {
		return nil, &config.Error{Path: cli.file.Path, Line: cli.entry.Lines["jobs_dir"], Err: fmt.Errorf("jobs_dir: %w", err)}
	}
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, t := range dir {
		known[t.Service()] = true
	}
	for _, name := range cli.Only {
		if !known[name] {
			return nil, fmt.Errorf("--only %s: no such service in %s", name, cli.JobsDir)
		}
	}
	for _, t := range dir {
		if len(cli.Only) > 0 && !slices.Contains(cli.Only, t.Service()) {
			continue
		}
		if len(ts) > 0 && ts[0].Service() == t.Service() {
			return nil, fmt.Errorf("service %s: both --service and %s", t.Service(), t.Source())
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// defaults are the flags' settings for what a template leaves unset.
func defaults(cli CLI) (runner.Defaults, error) {
	d := runner.Defaults{
		Timeout:     cli.Timeout,
		Grace:       cli.KillGrace,
		Concurrency: cli.Concurrency,
		MaxOutput:   cli.MaxOutput,
		Workdir:     cli.Workdir,
		InheritEnv:  append(slices.Clone(runner.DefaultInheritEnv), cli.PassEnv...),
	}
	switch {
	case cli.Concurrency < 1:
		return runner.Defaults{}, errors.New("--concurrency must be at least 1")
	case cli.Timeout < 0 || cli.KillGrace <= 0:
		return runner.Defaults{}, errors.New("--timeout must not be negative, --kill-grace must be positive")
	case cli.MaxOutput < 1:
		return runner.Defaults{}, errors.New("--max-output must be positive")
	}
	if cli.InheritEnv {
		d.InheritEnv = []string{"*"}
	}
	if len(cli.Env) > 0 {
		d.Env = map[string]string{}
		for _, kv := range cli.Env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return runner.Defaults{}, fmt.Errorf("--env %q: want NAME=VALUE", kv)
			}
			d.Env[k] = v
		}
	}
	return d, nil
}

// loadIdle checks --idle-command and returns its runner (nil without one).
// It runs as a template's command would, as --user if given, bounded by
// --idle-timeout (default: --idle-after).
func loadIdle(cli CLI, cfg runner.Config) (*runner.Idle, error) {
	switch {
	case cli.IdleCommand == "" && cli.IdleAfter == 0 && cli.IdleTimeout == 0:
		return nil, nil
	case cli.IdleCommand == "":
		return nil, errors.New("--idle-after and --idle-timeout go with --idle-command")
	case cli.IdleAfter <= 0:
		return nil, errors.New("--idle-command needs --idle-after D: how long no job must run before it does")
	case cli.IdleTimeout < 0:
		return nil, errors.New("--idle-timeout must not be negative")
	}
	d, err := defaults(cli)
	if err != nil {
		return nil, err
	}
	timeout := cli.IdleTimeout
	if timeout == 0 {
		timeout = cli.IdleAfter
	}
	i, err := runner.NewIdle(runner.Spec{Command: runner.Command{Line: cli.IdleCommand}, User: cli.User, Timeout: runner.Duration(timeout)}, d, cfg)
	if err != nil && cli.entry != nil && cli.entry.Values["idle_command"] == cli.IdleCommand {
		return nil, &config.Error{Path: cli.file.Path, Line: cli.entry.Lines["idle_command"], Err: fmt.Errorf("idle_command: %w", err)}
	}
	if err != nil {
		return nil, fmt.Errorf("--idle-command: %w", err)
	}
	return i, nil
}
