package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
)

// Defaults for the zero values of Config.
const (
	DefaultHeartbeat    = 2500 * time.Millisecond // as in 7/MDP and the broker
	DefaultLiveness     = 3
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
	DefaultGrace        = 10 * time.Second
	DefaultName         = "zmws-worker"
)

// Log field keys, shared with the rest of zmws.
const (
	keyService  = logging.KeyService
	keyWorker   = logging.KeyWorker
	keyJob      = logging.KeyJob
	keyEndpoint = logging.KeyEndpoint
	keyElapsed  = logging.KeyElapsed
	keyExitCode = logging.KeyExitCode
)

// ErrRunning is returned by Run when the Worker is already running.
var ErrRunning = errors.New("worker: already running")

// Config configures a Worker. Zero values take the defaults noted.
type Config struct {
	// Brokers lists broker worker endpoints (such as tcp://127.0.0.1:5556).
	// A slot connects to the first; when a broker stays silent for
	// Heartbeat*Liveness the slot moves to the next, wrapping around.
	Brokers []string
	// Service is the service name announced in READY.
	Service string
	// Handler serves the jobs.
	Handler Handler
	// Concurrency is the number of slots (default 1). Each slot has its own
	// DEALER socket and routing id, announces itself with its own READY and
	// runs one job at a time.
	Concurrency int
	// Heartbeat is the interval between heartbeats to the broker (default
	// 2.5s). Heartbeats are sent while a handler runs too.
	Heartbeat time.Duration
	// Liveness is how many heartbeat intervals of silence mark the broker
	// dead (default 3).
	Liveness int
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// connection attempts (defaults 100ms and 5s). The first connection is
	// immediate; each further attempt without hearing from a broker doubles
	// the delay, up to ReconnectMax, plus up to 20% jitter. The delay resets
	// when a broker answers.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// Grace is how long Run waits, after ctx is cancelled, for running
	// handlers to finish before cancelling their contexts (default 10s).
	Grace time.Duration
	// Idle and OnIdle: when all slots have been without a job for Idle,
	// OnIdle is called, and again after every further quiet Idle (counted
	// from when the previous call returned). Calls happen on one goroutine
	// of their own, so never concurrently with each other, and not after ctx
	// is cancelled. Both must be set to have an effect. Run runs this
	// Worker's own Idler for them.
	Idle   time.Duration
	OnIdle func()
	// Idler, instead of Idle and OnIdle, is an idle hook shared with other
	// Workers (those of one process, say), which count as one: see Idler.
	// The Worker reports its jobs to it; the caller runs it (Idler.Run).
	Idler *Idler
	// Ready, when set, is called once per Run, when every slot has sent its
	// first READY, on the goroutine of the slot that sent the last one; it
	// must not block. ZeroMQ connects in the background, so it says that the
	// worker has set up its connections and announced itself, not that a
	// broker has heard it: zmws-run tells systemd READY=1 from it, and must
	// start while its broker is away.
	Ready func()
	// Details are announced in READY. Empty fields default to the hostname,
	// the process ID and "zmws-worker".
	Details *protocol.WorkerDetails
	// TTR and Retries, when set, are announced in READY as the service's
	// defaults: the broker stops (and requeues) a job running longer than
	// TTR, and retries a job that FAILs up to Retries times with backoff.
	// Jobs may set their own.
	TTR     time.Duration
	Retries int
	// Prefetch asks the broker to send each slot up to this many jobs
	// beyond the one it runs (a zmws broker caps it at 64; 0, the default,
	// is one job at a time, as 7/MDP and 18/MDP have it). A slot then
	// starts its next job as soon as it has sent a result, without waiting
	// for a trip to the broker: more jobs per second for short jobs, at the
	// cost of jobs waiting behind a long one at this worker while another
	// worker may be free. Jobs waiting at a slot that stops or loses its
	// broker go back to the broker's queue, their attempt not counted.
	Prefetch int
	// Curve, when set, speaks CURVE to the brokers: their public key
	// authenticates them (a process that took a broker's port gets no
	// READY and no output), and the worker's own key pair must be one the
	// broker authorizes for the service (curve.LoadClient reads both from
	// files). A refused handshake or READY is logged as an error and tried
	// again after the reconnect backoff. nil: no security.
	Curve *curve.Client
	// Protocol says what the slots speak to their brokers (docs/PROTOCOL.md,
	// "Against a plain Majordomo broker"). DialectAuto (or ""), the
	// default, starts with 18/MDP and the zmws meta frame, and switches an
	// endpoint to plain 7/MDP when its broker completes the ZeroMQ
	// handshake and then stays silent for Heartbeat*Liveness after READY
	// (and back, if that is silent too), logging what it tries and what
	// answers. DialectZMWS, DialectMDP1 and DialectMDP2 fix it: the plain
	// ones send no meta frame and so no TTR, Retries, Prefetch or Details;
	// 7/MDP has no PARTIAL, so a job's output goes in one REPLY.
	Protocol protocol.Dialect
	Logger   zerolog.Logger
}

// Worker connects to brokers and serves jobs for one service. Make one with
// New and start it with Run.
type Worker struct {
	cfg     Config
	ready   []byte // the READY meta frame
	log     zerolog.Logger
	running atomic.Bool
	idle    *Idler // Config.Idler, or one of its own
	ownIdle bool   // idle is its own, run by Run
	sndhwm  int    // DEALER send high-water mark if not 0 (tests lower it)
	// unready counts the slots of this Run that have not yet sent their
	// first READY; the one that brings it to 0 calls Config.Ready.
	unready atomic.Int64
}

// New checks cfg, fills in defaults and returns a Worker.
func New(cfg Config) (*Worker, error) {
	if err := protocol.ValidWorkerService(cfg.Service); err != nil {
		return nil, fmt.Errorf("worker: service: %w", err)
	}
	if cfg.Handler == nil {
		return nil, errors.New("worker: no handler")
	}
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("worker: no broker endpoint")
	}
	cfg.Brokers = append([]string(nil), cfg.Brokers...)
	for _, ep := range cfg.Brokers {
		if !strings.Contains(ep, "://") {
			return nil, fmt.Errorf("worker: broker endpoint %q: want transport://address", ep)
		}
	}
	switch {
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("worker: negative concurrency %d", cfg.Concurrency)
	case cfg.Heartbeat < 0, cfg.Liveness < 0, cfg.ReconnectMin < 0, cfg.ReconnectMax < 0,
		cfg.Grace < 0, cfg.Idle < 0:
		return nil, errors.New("worker: negative duration or liveness")
	case cfg.Prefetch < 0:
		return nil, fmt.Errorf("worker: negative prefetch %d", cfg.Prefetch)
	case cfg.Idler != nil && cfg.OnIdle != nil:
		return nil, errors.New("worker: both Idler and OnIdle")
	}
	if cfg.Protocol == "" {
		cfg.Protocol = protocol.DialectAuto
	}
	if _, err := protocol.ParseDialect(string(cfg.Protocol)); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Liveness == 0 {
		cfg.Liveness = DefaultLiveness
	}
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin = DefaultReconnectMin
	}
	if cfg.ReconnectMax == 0 {
		cfg.ReconnectMax = max(DefaultReconnectMax, cfg.ReconnectMin)
	}
	if cfg.ReconnectMin > cfg.ReconnectMax {
		return nil, fmt.Errorf("worker: reconnect min %v exceeds max %v", cfg.ReconnectMin, cfg.ReconnectMax)
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	d := protocol.WorkerDetails{}
	if cfg.Details != nil {
		d = *cfg.Details
	}
	if d.Host == "" {
		d.Host, _ = os.Hostname()
	}
	if d.PID == 0 {
		d.PID = os.Getpid()
	}
	if d.Name == "" {
		d.Name = DefaultName
	}
	cfg.Details = &d
	w := &Worker{
		cfg:   cfg,
		ready: protocol.EncodeMeta(protocol.Meta{Worker: &d, TTRMillis: cfg.TTR.Milliseconds(), Retries: cfg.Retries, Prefetch: cfg.Prefetch}),
		log:   cfg.Logger.With().Str("component", "worker").Str(keyService, cfg.Service).Logger(),
		idle:  cfg.Idler,
	}
	if w.idle == nil {
		var fn func(context.Context)
		if cfg.OnIdle != nil && cfg.Idle > 0 {
			onIdle := cfg.OnIdle
			fn = func(context.Context) { onIdle() }
		}
		w.idle, w.ownIdle = NewIdler(cfg.Idle, fn), true
	}
	return w, nil
}

// Run connects every slot to a broker and serves jobs until ctx is
// cancelled. Then each slot stops taking jobs, waits up to Config.Grace for
// a running handler (whose result is still sent), cancels the handler's
// context, sends DISCONNECT and closes its socket. Run returns nil after a
// shutdown that ctx started, or an error if it could not set up its sockets.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer w.running.Store(false)

	slots := make([]*slot, w.cfg.Concurrency)
	for i := range slots {
		s, err := newSlot(w, i)
		if err != nil {
			for _, s := range slots[:i] {
				s.close()
			}
			return fmt.Errorf("worker: slot %d: %w", i, err)
		}
		slots[i] = s
	}
	if w.ownIdle {
		w.idle.reset(time.Now())
	}
	w.unready.Store(int64(len(slots)))
	w.log.Info().Int("slots", len(slots)).Strs(keyEndpoint, w.cfg.Brokers).Msg("worker starting")

	var wg sync.WaitGroup
	if w.ownIdle {
		wg.Go(func() { w.idle.Run(ctx) }) // returns at once without OnIdle
	}
	errs := make([]error, len(slots))
	for i, s := range slots {
		wg.Go(func() { errs[i] = s.run(ctx) })
	}
	wg.Wait()
	w.log.Info().Msg("worker stopped")
	return errors.Join(errs...)
}
