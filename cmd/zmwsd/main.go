// Command zmwsd is the zmws broker: a Majordomo broker that hands out job IDs
// for asynchronous jobs, streams output of synchronous ones, and remembers
// every service any worker ever offered.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/config"
	"github.com/zmws/zmws/gateway"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/internal/memory"
	"github.com/zmws/zmws/internal/metrics"
	"github.com/zmws/zmws/internal/version"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
)

// CLI is zmwsd's command line. Every flag can also come from the environment,
// or from the installation file's [broker] (BeforeResolve, in config.go).
type CLI struct {
	Config            string        `help:"The installation file (docs/CONFIG.md): its [broker] table sets these flags, each overridden by the flag or its ZMWSD_ variable. Default: ./zmws.toml, else /etc/zmws/zmws.toml, when one exists; an empty value for none." env:"ZMWSD_CONFIG" placeholder:"FILE"`
	ClientBind        string        `help:"Endpoint clients connect to (ROUTER)." default:"tcp://127.0.0.1:5555" env:"ZMWSD_CLIENT_BIND"`
	WorkerBind        string        `help:"Endpoint workers connect to (ROUTER)." default:"tcp://127.0.0.1:5556" env:"ZMWSD_WORKER_BIND"`
	EventsBind        string        `help:"Endpoint job events are published on (PUB); empty disables." default:"tcp://127.0.0.1:5557" env:"ZMWSD_EVENTS_BIND"`
	Heartbeat         time.Duration `help:"Heartbeat interval, both ways." default:"2500ms" env:"ZMWSD_HEARTBEAT"`
	Liveness          int           `help:"Heartbeats missed before a worker is dropped and its job requeued." default:"3" env:"ZMWSD_LIVENESS"`
	History           int           `help:"Finished jobs kept for SERVER-JOBS and lookups." default:"100" env:"ZMWSD_HISTORY"`
	MaxQueue          int           `help:"Queued jobs per service before submissions are refused." default:"100000" env:"ZMWSD_MAX_QUEUE"`
	Rate              []string      `help:"Jobs a second a service takes: SERVICE=N or SERVICE=N/BURST (comma-separated or repeated; SERVICE * for every service without its own); past it a submission is refused rate_limited (HTTP 429), never queued." env:"ZMWSD_RATE"`
	Schedule          []string      `help:"A recurring job: NAME=CRONSPEC=SERVICE, one async job of SERVICE at each tick (docs/SCHEDULES.md); CRONSPEC has five fields, six with seconds first, or @every 10s, @hourly ..., after an optional CRON_TZ=ZONE. Repeatable; several in ZMWSD_SCHEDULE are separated by ;. [[broker.schedule]] tables in the file add more." sep:";" env:"ZMWSD_SCHEDULE" placeholder:"NAME=SPEC=SERVICE"`
	MaxAttempts       int           `help:"Dispatches per job before it fails when its workers keep dying." default:"3" env:"ZMWSD_MAX_ATTEMPTS"`
	MaxMsgSize        int64         `help:"Largest frame accepted from a peer, in bytes (ZMQ_MAXMSGSIZE); -1 for none." default:"16777216" env:"ZMWSD_MAX_MSG_SIZE"`
	MaxMsgFrames      int           `help:"Most frames in one message from a peer; a longer message is read to its end but not kept, a client's request refused (bad_request), a worker dropped. -1 for none." default:"1024" env:"ZMWSD_MAX_MSG_FRAMES"`
	MaxMsgBytes       int64         `help:"Most bytes in one message from a peer (all its frames), at least --max-msg-size; past it as past --max-msg-frames. -1 for none." default:"67108864" env:"ZMWSD_MAX_MSG_BYTES"`
	MaxOutput         int           `help:"Output bytes kept per job (and sent at once to 7/MDP sync clients)." default:"262144" env:"ZMWSD_MAX_OUTPUT"`
	MaxStream         int           `help:"Partial output bytes forwarded to the caller of one sync job; past it later partials are dropped and the result says output_truncated." default:"67108864" env:"ZMWSD_MAX_STREAM"`
	MaxServices       int           `help:"Services the broker knows at most; a READY for a new one past it is refused (service_limit)." default:"10000" env:"ZMWSD_MAX_SERVICES"`
	ForgetAfter       time.Duration `help:"Forget a service with no worker and no job after this long (0: never); zmws services forget NAME does it at once." default:"168h" env:"ZMWSD_FORGET_AFTER"`
	KeepGone          int           `help:"Workers that left or died kept per service for zmws workers --all (SERVER-WORKERS all), the newest; 0 keeps none." default:"10" env:"ZMWSD_KEEP_GONE"`
	HTTPBind          string        `name:"http-bind" help:"Address the HTTP gateway listens on (host:port); empty disables it." default:"127.0.0.1:5580" env:"ZMWSD_HTTP_BIND"`
	HTTPMaxBody       int64         `name:"http-max-body" help:"Largest HTTP request body, in bytes; larger ones get 413." default:"1048576" env:"ZMWSD_HTTP_MAX_BODY"`
	HTTPCORS          []string      `name:"http-cors" help:"Origins browsers may call the HTTP gateway from (scheme://host[:port], comma-separated), or *; none by default." env:"ZMWSD_HTTP_CORS"`
	HTTPMaxSync       int           `name:"http-max-sync" help:"Synchronous HTTP requests in flight at once; past it a sync request gets 503 busy (others are still answered)." default:"4096" env:"ZMWSD_HTTP_MAX_SYNC"`
	ClientRate        string        `name:"client-rate" help:"Jobs a second one ZeroMQ client may submit: N or N/BURST (a client is its CURVE key, else its network address; the in-process HTTP gateway has --http-rate); past it a submission is refused rate_limited, never queued. Empty: no bound." env:"ZMWSD_CLIENT_RATE"`
	ClientConcurrency int           `name:"client-concurrency" help:"Sync jobs one ZeroMQ client may have unfinished at once (as --client-rate counts clients); past it refused rate_limited. 0: no bound." default:"0" env:"ZMWSD_CLIENT_CONCURRENCY"`
	HTTPRate          int           `name:"http-rate" help:"Requests a second one HTTP client may make on average (its token, else its IP address; jobs and queries count); past it 429 rate_limited with Retry-After. 0: no bound." default:"0" env:"ZMWSD_HTTP_RATE"`
	HTTPBurst         int           `name:"http-burst" help:"Requests one HTTP client may make at once within --http-rate (0: as many as --http-rate)." default:"0" env:"ZMWSD_HTTP_BURST"`
	HTTPConcurrency   int           `name:"http-concurrency" help:"Requests one HTTP client may have in flight (sync jobs held open count); past it 429 rate_limited. 0: no bound." default:"0" env:"ZMWSD_HTTP_CONCURRENCY"`
	HTTPHost          []string      `name:"http-host" help:"A name (DNS name or IP, no port) the HTTP gateway answers besides the address it is reached on and, on loopback, localhost; repeatable or comma-separated; * for any. Other Host headers get 421 (DNS rebinding)." env:"ZMWSD_HTTP_HOST" placeholder:"NAME"`
	HTTPTokens        string        `name:"http-tokens" help:"Tokens file (TOML; zmws token add writes it): every HTTP route but /healthz then needs a bearer token. Reloaded on SIGHUP." env:"ZMWSD_HTTP_TOKENS" placeholder:"FILE"`
	HTTPTLSCert       string        `name:"http-tls-cert" help:"PEM certificate (chain) for HTTPS on --http-bind; needs --http-tls-key. Reloaded on SIGHUP." env:"ZMWSD_HTTP_TLS_CERT" placeholder:"FILE"`
	HTTPTLSKey        string        `name:"http-tls-key" help:"PEM private key of --http-tls-cert." env:"ZMWSD_HTTP_TLS_KEY" placeholder:"FILE"`
	TTR               time.Duration `name:"ttr" help:"Default time-to-run of a job (0: none); services and jobs may set their own." default:"0" env:"ZMWSD_TTR"`
	RetryBackoff      time.Duration `help:"First delay before an opt-in retry of a failed job; doubles per attempt." default:"1s" env:"ZMWSD_RETRY_BACKOFF"`
	RetryBackoffMax   time.Duration `help:"Longest delay between retries of a failed job." default:"5m" env:"ZMWSD_RETRY_BACKOFF_MAX"`
	DedupeWindow      time.Duration `help:"A stock MDP client's resend (the same body to the same service, from the same CURVE key or none) within this long of the first request gets the first's job and its result instead of running again (docs/PROTOCOL.md, Resends); 0: every request is a job." default:"0" env:"ZMWSD_DEDUPE_WINDOW"`
	DataDir           string        `help:"Folder of the durable job journal (zmws.db); empty keeps jobs in memory only (lost when zmwsd stops)." default:"zmws-data" env:"ZMWSD_DATA_DIR"`
	Retain            time.Duration `help:"How long finished jobs stay in the journal for lookups by ID; 0 keeps them until --retain-count prunes them." default:"168h" env:"ZMWSD_RETAIN"`
	RetainCount       int           `help:"How many finished jobs the journal keeps at most; 0 for no limit." default:"100000" env:"ZMWSD_RETAIN_COUNT"`
	RetainBytes       int64         `help:"How many bytes of finished jobs' records (params, input, output and about 110 bytes more each) the journal keeps at most, the oldest pruned first; 0 for no limit. The file is about 1.4 to 2.1 times as large (docs/DURABILITY.md)." default:"1073741824" env:"ZMWSD_RETAIN_BYTES"`
	CompactFree       int64         `help:"At start, compact the journal (zmwsd journal compact) when more than this many bytes of its file, and more than half of it, are free; 0 never." default:"1073741824" env:"ZMWSD_COMPACT_FREE"`
	CommitDelay       time.Duration `help:"How long journal records no reply waits for (a job dispatched or finished) may wait to share a disk sync with later ones; 0 syncs at once. Accepting a job never waits for it." default:"20ms" env:"ZMWSD_COMMIT_DELAY"`
	CurveKey          string        `name:"curve-key" help:"The broker's CURVE secret key file (zmws keygen): CURVE on the client, worker and events sockets, only authorized keys admitted." env:"ZMWSD_CURVE_KEY"`
	Keys              string        `help:"TOML file of authorized keys, each with its role and rights (see docs/SECURITY.md)." env:"ZMWSD_KEYS"`
	ClientKeys        string        `help:"Folder of client public keys (*.pub), each with every client right." env:"ZMWSD_CLIENT_KEYS"`
	WorkerKeys        string        `help:"Folder of worker public keys (*.pub), each may offer every service." env:"ZMWSD_WORKER_KEYS"`
	Insecure          bool          `help:"Allow binding the client, worker, events or HTTP endpoint beyond loopback without CURVE (or HTTP tokens): anyone who reaches it may run every command." env:"ZMWSD_INSECURE"`
	MemTrim           time.Duration `help:"How often zmwsd looks at its memory and gives back to the system what a burst left: the Go heap's garbage when no collection ran since the last look, glibc's free pages once libzmq freed a peer's frames. 0: never (Go then keeps it for minutes, glibc for good)." default:"5s" env:"ZMWSD_MEM_TRIM"`
	MetricsBind       string        `help:"Address (host:port) of an HTTP listener that serves only /metrics (Prometheus), without tokens: for a broker without the gateway, or to keep scrapes off it; empty: none (the gateway serves /metrics too, to admin tokens). docs/METRICS.md." env:"ZMWSD_METRICS_BIND"`
	MetricsServices   int           `help:"Services with a label of their own in the metrics, the first seen; the rest are summed under service=\"_other\"." default:"1000" env:"ZMWSD_METRICS_SERVICES"`
	LogLevel          string        `help:"Log level: trace, debug, info, warn, error." default:"info" env:"ZMWSD_LOG_LEVEL"`
	LogFormat         string        `help:"Log format: json or console." default:"json" enum:"json,console" env:"ZMWSD_LOG_FORMAT"`
	Check             bool          `help:"Check the flags, the installation file, the keys, the tokens and the TLS certificate, print ok and exit, binding nothing and leaving the journal closed (zmws start runs it before it starts anything)."`

	file *config.File // the installation file read, if any
	// metricsReady, when set (by tests), is told the --metrics-bind
	// listener's address.
	metricsReady func(addr string)
}

func main() {
	var a app
	k := kong.Must(&a, options()...)
	kctx, err := k.Parse(os.Args[1:])
	fatalIfParseErrorf(k, err)
	switch kctx.Command() {
	case "journal check":
		kctx.FatalIfErrorf(a.Journal.Check.run(os.Stdout))
	case "journal recover":
		kctx.FatalIfErrorf(a.Journal.Recover.run(os.Stdout))
	case "journal compact":
		kctx.FatalIfErrorf(a.Journal.Compact.run(os.Stdout))
	default:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		kctx.FatalIfErrorf(run(ctx, a.Serve, os.Stderr, nil))
		if a.Serve.Check {
			fmt.Println("ok")
		}
	}
}

func options() []kong.Option {
	return []kong.Option{
		kong.Name("zmwsd"),
		version.Vars("zmwsd"),
		kong.Description("zmws broker: queues named jobs and hands them to workers."),
		kong.UsageOnError(),
	}
}

// run starts the broker and the HTTP gateway and serves until ctx ends.
// ready, when not nil, receives the server once its sockets are bound, and
// the gateway's address (host:port, "" when --http-bind is empty).
//
// The gateway is a broker client over inproc endpoints. When ctx ends, the
// gateway stops first (requests in flight get a few seconds), then the
// broker, so no HTTP request loses its broker midway.
func run(ctx context.Context, cli CLI, logw io.Writer, ready func(srv *server.Server, httpAddr string)) error {
	log, err := logging.New(logw, cli.LogLevel, cli.LogFormat)
	if err != nil {
		return err
	}
	if cli.file != nil {
		log.Info().Str("config", cli.file.Path).Msg("installation file read")
	}
	if cli.Heartbeat <= 0 || cli.Liveness <= 0 || cli.History <= 0 || cli.MaxQueue <= 0 || cli.MaxAttempts <= 0 || cli.MaxOutput <= 0 {
		return fmt.Errorf("--heartbeat, --liveness, --history, --max-queue, --max-attempts and --max-output must be positive")
	}
	if cli.HTTPMaxBody <= 0 || cli.HTTPMaxSync <= 0 {
		return fmt.Errorf("--http-max-body and --http-max-sync must be positive")
	}
	rates := map[string]broker.Rate{}
	for _, v := range cli.Rate {
		svc, r, err := broker.ParseRate(v)
		if err != nil {
			return fmt.Errorf("--rate: %w", err)
		}
		if _, dup := rates[svc]; dup {
			return fmt.Errorf("--rate: service %s has two rates", svc)
		}
		rates[svc] = r
	}
	schedules, err := schedules(cli)
	if err != nil {
		return err
	}
	var clientRate broker.Rate
	if cli.ClientRate != "" {
		r, err := broker.ParseClientRate(cli.ClientRate)
		if err != nil {
			return fmt.Errorf("--client-rate: %w", err)
		}
		clientRate = r
	}
	if cli.ClientConcurrency < 0 {
		return fmt.Errorf("--client-concurrency must not be negative (0: no bound)")
	}
	if cli.HTTPRate < 0 || cli.HTTPBurst < 0 || cli.HTTPConcurrency < 0 {
		return fmt.Errorf("--http-rate, --http-burst and --http-concurrency must not be negative (0: no bound)")
	}
	if cli.RetainBytes < 0 || cli.CompactFree < 0 {
		return fmt.Errorf("--retain-bytes and --compact-free must not be negative")
	}
	if cli.MemTrim < 0 {
		return fmt.Errorf("--mem-trim must not be negative")
	}
	if cli.DedupeWindow < 0 {
		return fmt.Errorf("--dedupe-window must not be negative (0: off), not %v", cli.DedupeWindow)
	}
	if cli.MetricsServices <= 0 {
		return fmt.Errorf("--metrics-services must be positive")
	}
	if cli.MetricsBind != "" {
		if err := metrics.CheckAddr(cli.MetricsBind, "--metrics-bind"); err != nil {
			return err
		}
	}
	if cli.MaxMsgFrames == 0 || cli.MaxMsgFrames < -1 || cli.MaxMsgBytes == 0 || cli.MaxMsgBytes < -1 {
		return fmt.Errorf("--max-msg-frames and --max-msg-bytes must be positive, or -1 for none")
	}
	if cli.MaxMsgBytes > 0 && cli.MaxMsgSize > cli.MaxMsgBytes {
		return fmt.Errorf("--max-msg-bytes (%d) must be at least --max-msg-size (%d)", cli.MaxMsgBytes, cli.MaxMsgSize)
	}
	// Big frames go back to the system as soon as libzmq frees them.
	if !memory.Setup() {
		log.Debug().Msg("glibc's mmap threshold left as it is (set in the environment, or not glibc)")
	}
	if cli.MemTrim > 0 {
		tctx, stopTrim := context.WithCancel(ctx)
		trimmed := make(chan struct{})
		go func() {
			defer close(trimmed)
			(&memory.Trimmer{Every: cli.MemTrim, Logger: log}).Run(tctx)
		}()
		defer func() { stopTrim(); <-trimmed }()
	}
	sec, err := loadSecurity(cli, log)
	if err != nil {
		return err
	}
	tokens, certs, httpReloaders, err := httpSecurity(cli, log)
	if err != nil {
		return err
	}
	sec.reloaders = append(sec.reloaders, httpReloaders...)
	if cli.Check {
		return checkRest(cli)
	}
	// The gateway comes first: its errors (bad --http-cors, address in use)
	// must not leave bound broker sockets behind.
	var (
		gw       *gateway.Gateway
		backend  *gateway.Broker
		ln       net.Listener
		inproc   [2]string // client and events endpoints
		httpAddr string
		reg      = metrics.NewRegistry()
		scrape   = metrics.Handler(reg, log)
		metricsL net.Listener // --metrics-bind
	)
	if cli.HTTPBind != "" {
		// Unique names: inproc endpoints are process-wide, and tests run
		// several brokers in one process.
		name := rand.Text()
		inproc = [2]string{"inproc://zmwsd-clients-" + name, "inproc://zmwsd-events-" + name}
		backend, err = gateway.NewBroker(gateway.BrokerConfig{Broker: inproc[0], Events: inproc[1], MaxSync: cli.HTTPMaxSync, Logger: log})
		if err != nil {
			return err
		}
		defer backend.Close()
		// The page's event streams share one subscription to the inproc
		// events endpoint, which the broker trusts (no CURVE in-process).
		events, err := gateway.NewEvents(gateway.EventsConfig{Endpoint: inproc[1], Logger: log})
		if err != nil {
			return err
		}
		defer events.Close()
		gw, err = gateway.New(gateway.Config{Backend: backend, Events: events, MaxBody: cli.HTTPMaxBody, CORS: cli.HTTPCORS,
			Hosts: cli.HTTPHost, Tokens: tokens, TLS: certs, Logger: log, Metrics: scrape, Registry: reg,
			Limits: gateway.Limits{Rate: float64(cli.HTTPRate), Burst: cli.HTTPBurst, Concurrent: cli.HTTPConcurrency}})
		if err != nil {
			return fmt.Errorf("--http-cors or --http-host: %w", err)
		}
		if ln, err = net.Listen("tcp", cli.HTTPBind); err != nil {
			return fmt.Errorf("http gateway: listen on --http-bind %s: %w", cli.HTTPBind, err)
		}
		httpAddr = ln.Addr().String()
	}
	if cli.MetricsBind != "" {
		if metricsL, err = metrics.Listen(cli.MetricsBind, "--metrics-bind", log); err != nil {
			if ln != nil {
				ln.Close()
			}
			return err
		}
		defer metricsL.Close()
	}
	var (
		st      store.Store
		journal *store.Bolt // st, when it is durable
	)
	if cli.DataDir != "" {
		path := filepath.Join(cli.DataDir, store.BoltFile)
		notify(log, "STATUS=opening the journal "+path)
		b, err := openJournal(path, cli.CompactFree, log)
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrMissing) {
				return fmt.Errorf("--data-dir: %w\nzmwsd will not start on this journal: %s", err, journalHint(cli.DataDir, err))
			}
			return fmt.Errorf("--data-dir: %w", err)
		}
		defer b.Close()
		st, journal = b, b
		log.Info().Str("journal", path).Msg("durable job journal open")
	} else {
		log.Warn().Msg("no --data-dir: jobs are kept in memory only and lost when zmwsd stops")
	}
	if err := checkRest(cli); err != nil {
		return err
	}
	forgetAfter := cli.ForgetAfter
	if forgetAfter == 0 {
		forgetAfter = -1 // broker.Config: negative keeps services for ever, zero is its default
	}
	commitDelay := cli.CommitDelay
	if commitDelay == 0 {
		commitDelay = -1 // server.Config: negative commits at once, zero is its default
	}
	alive, aliveEvery := watchdog(log)
	// The broker counts for metrics only when someone can read them.
	var counted prometheus.Registerer
	if gw != nil || metricsL != nil {
		counted = reg
	}
	srv, err := server.New(server.Config{
		ClientBind:   cli.ClientBind,
		WorkerBind:   cli.WorkerBind,
		EventsBind:   cli.EventsBind,
		ClientInproc: inproc[0],
		EventsInproc: inproc[1],
		MaxMsgSize:   cli.MaxMsgSize,
		MaxFrames:    cli.MaxMsgFrames,
		MaxBytes:     cli.MaxMsgBytes,
		Broker: broker.Config{
			Heartbeat:         cli.Heartbeat,
			Liveness:          cli.Liveness,
			History:           cli.History,
			MaxQueue:          cli.MaxQueue,
			Rates:             rates,
			Schedules:         schedules,
			ClientRate:        clientRate,
			ClientConcurrency: cli.ClientConcurrency,
			MaxAttempts:       cli.MaxAttempts,
			MaxOutput:         cli.MaxOutput,
			TTR:               cli.TTR,
			RetryBackoff:      cli.RetryBackoff,
			RetryBackoffMax:   cli.RetryBackoffMax,
			DedupeWindow:      cli.DedupeWindow,
			MaxServices:       cli.MaxServices,
			MaxStream:         cli.MaxStream,
			ForgetAfter:       forgetAfter,
			KeepGone:          cmp.Or(cli.KeepGone, -1), // broker.Config: negative keeps none, zero is its default
			Reload:            sec.reload,
		},
		Logger:      log,
		Store:       st,
		Retain:      cli.Retain,
		RetainCount: cli.RetainCount,
		RetainBytes: cli.RetainBytes,
		CommitDelay: commitDelay,
		Curve:       sec.curve,
		Alive:       alive,
		AliveEvery:  aliveEvery,
		Metrics:     counted,

		MetricsServices: cli.MetricsServices,
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	log.Info().Str("client", srv.ClientEndpoint()).Str("worker", srv.WorkerEndpoint()).
		Str("events", srv.EventsEndpoint()).Str("http", httpAddr).
		Dur("heartbeat", cli.Heartbeat).Int("liveness", cli.Liveness).Msg("zmwsd started")
	defer reloadOnHUP(ctx, log, sec.reloaders...)()
	defer backupOnUSR1(ctx, log, journal, filepath.Join(cli.DataDir, backupDir, store.BoltFile))()
	if ready != nil {
		ready(srv, httpAddr)
	}
	// The sockets are bound (and probed), the journal loaded, the gateway
	// listening: what they receive waits for the loops started below, and
	// systemd may start the units ordered after zmwsd (its workers).
	notify(log, daemon.SdNotifyReady, fmt.Sprintf("STATUS=serving: clients %s, workers %s, http %s",
		srv.ClientEndpoint(), srv.WorkerEndpoint(), cmp.Or(httpAddr, "off")))
	defer context.AfterFunc(ctx, func() { notify(log, daemon.SdNotifyStopping, "STATUS=stopping") })()

	// The broker outlives ctx until the gateway has stopped; the gateway
	// stops early if the broker fails.
	brokerCtx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBroker()
	httpCtx, stopHTTP := context.WithCancel(ctx)
	defer stopHTTP()
	brokerDone := make(chan error, 1)
	go func() {
		err := srv.Run(brokerCtx)
		stopHTTP()
		brokerDone <- err
	}()
	metricsDone := make(chan error, 1)
	if metricsL != nil {
		if cli.metricsReady != nil {
			cli.metricsReady(metricsL.Addr().String())
		}
		go func() { metricsDone <- metrics.Serve(httpCtx, metricsL, scrape, log) }()
	} else {
		metricsDone <- nil
	}
	var httpErr error
	if gw != nil {
		httpErr = gw.Serve(httpCtx, ln)
		backend.Close() // ends requests the shutdown cut off
	} else {
		<-httpCtx.Done()
	}
	stopHTTP()
	metricsErr := <-metricsDone
	stopBroker()
	return errors.Join(httpErr, metricsErr, <-brokerDone)
}

// checkRest checks the ranges of the flags the journal and the broker take.
func checkRest(cli CLI) error {
	if cli.Retain < 0 || cli.RetainCount < 0 || cli.TTR < 0 || cli.CommitDelay < 0 || cli.RetryBackoff <= 0 || cli.RetryBackoffMax < cli.RetryBackoff {
		return fmt.Errorf("--retain, --retain-count, --ttr and --commit-delay must not be negative; --retry-backoff must be positive and at most --retry-backoff-max")
	}
	if cli.MaxServices <= 0 || cli.MaxStream <= 0 || cli.ForgetAfter < 0 {
		return fmt.Errorf("--max-services and --max-stream must be positive, --forget-after not negative")
	}
	return nil
}
