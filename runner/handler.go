package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/worker"
)

// Exit codes reported for failures that are not a process's own exit status.
const (
	ExitTimeout    = 124 // as GNU timeout(1): the job ran out of time
	ExitCannotRun  = 126 // as a shell: the program was found but could not be started
	ExitNotFound   = 127 // as a shell: no such program
	ExitSignalBase = 128 // death by signal N is reported as 128+N
)

// drainWait bounds how long a finished job waits for its output pipes to
// close after its process group was killed: a process that left the group
// (setsid) may hold them open, and is not waited for.
const drainWait = 2 * time.Second

var (
	errTimeout = errors.New("runner: job timed out")
	// ErrShutdown is returned for a job that arrives after Shutdown.
	ErrShutdown = errors.New("runner: shutting down")
)

// Log field keys, shared with the rest of zmws.
const (
	keyService  = logging.KeyService
	keyJob      = logging.KeyJob
	keyElapsed  = logging.KeyElapsed
	keyExitCode = logging.KeyExitCode
)

// Config configures a Handler.
type Config struct {
	// Logger receives the handler's logs, stderr lines included (default:
	// none).
	Logger zerolog.Logger
	// Contain runs each command in a PID namespace of its own, under an
	// init that is this program re-executed (IsInit, Init): when the init
	// dies, zmws-run's death included, the kernel kills every process of
	// the job. Check first that it works here (CheckContain). Off, a
	// command runs in a process group of its own only, and what it starts
	// outlives a zmws-run killed with SIGKILL.
	Contain bool
	// OnSpawn, when set, is called with the template's service and the
	// time each command took to start (the fork and exec, and the pipes),
	// a prestarted one's too. It is called concurrently and must be fast:
	// zmws-run's metrics observe a histogram.
	OnSpawn func(service string, d time.Duration)
}

// Handler is a worker.Handler that runs a Template's command for each job.
// It is safe for concurrent use by all of a worker's slots.
type Handler struct {
	t       *Template
	log     zerolog.Logger
	environ func() []string             // zmws-run's own environment (os.Environ); spares read it from NewHandler on
	linger  time.Duration               // LineLinger; tests make it longer
	contain bool                        // Config.Contain
	onSpawn func(string, time.Duration) // Config.OnSpawn

	prog atomic.Pointer[resolved] // where the program was found
	bufs sync.Pool                // *[copyBuf]byte

	mu       sync.Mutex
	closed   bool             // Shutdown was called: no more jobs, no more spares
	killing  bool             // Shutdown's ctx has ended: kill every group
	procs    map[int]struct{} // process groups of running commands
	jobs     sync.WaitGroup   // ServeJob calls in progress
	spares   []*proc          // prestart: started, waiting for a job
	spawning int              // prestart: spares being started
	spawners sync.WaitGroup   // prestart: addSpare calls in progress
}

// NewHandler returns a Handler for t. For a prestart template it starts
// the spares at once, in the background: call Shutdown to end them.
func NewHandler(t *Template, cfg Config) *Handler {
	h := &Handler{
		t:       t,
		log:     cfg.Logger.With().Str("component", "runner").Str(keyService, t.service).Logger(),
		environ: os.Environ,
		linger:  LineLinger,
		contain: cfg.Contain,
		onSpawn: cfg.OnSpawn,
		procs:   map[int]struct{}{},
	}
	if t.prestart {
		h.refill()
	}
	return h
}

// Template returns the handler's template.
func (h *Handler) Template() *Template { return h.t }

// ServeJob runs the command for j: it checks the parameters, starts the
// command in a process group of its own, streams stdout to j.Write and
// waits. See the package documentation for the outcome of each ending.
func (h *Handler) ServeJob(ctx context.Context, j *worker.Job) ([]byte, error) {
	return h.serve(ctx, j, j.Write)
}

func (h *Handler) serve(ctx context.Context, j *worker.Job, sink func([]byte) (int, error)) ([]byte, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrShutdown
	}
	h.jobs.Add(1)
	h.mu.Unlock()
	defer h.jobs.Done()

	log := h.log.With().Str(keyJob, j.ID).Logger()
	given := j.Params
	if given == nil {
		given = map[string]string{}
	}
	vals, err := h.t.resolve(given)
	if err != nil {
		log.Info().Err(err).Msg("parameters refused")
		return nil, err
	}
	argv, err := h.t.args(vals, given)
	if err != nil {
		log.Info().Err(err).Msg("parameters refused")
		return nil, err
	}
	stdin := h.t.stdinFor(j.Input, vals, given)
	if h.t.prestart {
		return h.runPrestarted(ctx, log, j, argv, stdin, sink)
	}
	service := j.Service
	if service == "" {
		service = h.t.service
	}
	env, skipped := h.t.environ(h.environ(), &jobEnv{id: j.ID, service: service, attempt: max(j.Attempt, 1)}, vals)
	if len(skipped) > 0 {
		log.Warn().Strs("params", skipped).Int("max", maxEnvValue).Msg("parameters too long for the environment, left out")
	}
	return h.run(ctx, log, j, argv, env, stdin, sink)
}

// run starts argv and waits for it. The child gets the child ends of three
// pipes made here (so Wait returns as soon as the process exits, whoever
// else holds the pipes).
func (h *Handler) run(ctx context.Context, log zerolog.Logger, j *worker.Job, argv, env []string, stdin [][]byte, sink func([]byte) (int, error)) ([]byte, error) {
	runCtx, cancel := h.jobContext(ctx)
	defer cancel()
	start := time.Now()
	pr, err := h.spawn(runCtx, argv, env)
	if err != nil {
		switch {
		case errors.Is(err, errPipes):
			return nil, err
		case ctx.Err() != nil:
			return nil, fmt.Errorf("runner: job cancelled before start: %w", context.Canceled)
		}
		code := ExitCannotRun
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = ExitNotFound
		}
		log.Warn().Err(err).Str("program", argv[0]).Int(keyExitCode, code).Msg("cannot start command")
		return nil, &worker.ExitError{Code: code, Err: fmt.Errorf("cannot start %s: %w", argv[0], err)}
	}
	h.track(pr)
	log.Debug().Int("pid", pr.pid).Strs("argv", argv).Msg("command started")
	return h.await(runCtx, log, j, pr, stdin, sink, start)
}

// jobContext returns the context of a job's command: ctx, with the
// template's timeout (errTimeout its cause) when it has one.
func (h *Handler) jobContext(ctx context.Context) (context.Context, func()) {
	runCtx, cancel := context.WithCancelCause(ctx)
	if h.t.timeout <= 0 {
		return runCtx, func() { cancel(nil) }
	}
	runCtx, stop := context.WithTimeoutCause(runCtx, h.t.timeout, errTimeout)
	return runCtx, func() { stop(); cancel(nil) }
}

// await feeds stdin to the started command pr and reads its stdout and
// stderr, all at the same time, so no amount of input or output can
// deadlock; it waits for pr to exit, kills what is left of its group, and
// reports the outcome. runCtx is the job's: its cause tells a timeout. Output
// cut at max_output is marked on j (see worker.Job.SetOutputTruncated).
func (h *Handler) await(runCtx context.Context, log zerolog.Logger, j *worker.Job, pr *proc, stdin [][]byte, sink func([]byte) (int, error), start time.Time) ([]byte, error) {
	t := h.t
	p := pr.pipes
	out := newOutput(sink, t.maxOutput)
	out.lineLinger = h.linger
	errs := &stderrSink{log: log}
	done := make(chan struct{}, 3) // one per goroutine below
	copiers := 2
	go func() { h.copyFrom(out, p.outR); done <- struct{}{} }()
	go func() { h.copyFrom(errs, p.errR); done <- struct{}{} }()
	if feed(p.inW, stdin, done) {
		copiers++
	}

	waitErr := pr.wait()
	// The leader has exited: nothing else of its job may outlive it.
	signalGroup(pr.pid, syscall.SIGKILL)
	h.untrack(pr)
	drain := time.NewTimer(drainWait)
	for copiers > 0 {
		select {
		case <-done:
			copiers--
		case <-drain.C:
			log.Warn().Msg("output pipes held open by a process outside the job's group, closing them")
			p.closeParent()
			for ; copiers > 0; copiers-- {
				<-done
			}
		}
	}
	drain.Stop()
	p.closeParent()
	errs.close()

	res, truncated, sinkErr := out.finish()
	elapsed := time.Since(start)
	if truncated {
		j.SetOutputTruncated()
		log.Warn().Int("max_output", t.maxOutput).Msg("output cut")
	}
	if sinkErr != nil {
		log.Warn().Err(sinkErr).Msg("partial output not sent")
	}
	ws, known := pr.exitStatus()
	switch {
	case pr.stopped.Load() && errors.Is(context.Cause(runCtx), errTimeout):
		if !t.idle { // Idle.Run says it its way
			log.Warn().Dur("timeout", t.timeout).Dur(keyElapsed, elapsed).Msg("job timed out, process group stopped")
		}
		return res, &worker.ExitError{Code: ExitTimeout, Err: withTail(fmt.Sprintf("timed out after %v", t.timeout), errs)}
	case pr.stopped.Load():
		if !t.idle {
			log.Info().Dur(keyElapsed, elapsed).Msg("job cancelled, process group stopped")
		}
		return res, fmt.Errorf("runner: job cancelled, process group stopped: %w", context.Canceled)
	case !known:
		return res, fmt.Errorf("runner: wait: %w", waitErr)
	case ws.Exited() && ws.ExitStatus() == 0:
		log.Debug().Dur(keyElapsed, elapsed).Msg("command exited")
		return res, nil
	}
	if ws.Signaled() {
		code := ExitSignalBase + int(ws.Signal())
		log.Debug().Int(keyExitCode, code).Dur(keyElapsed, elapsed).Msg("command killed by a signal")
		return res, &worker.ExitError{Code: code, Err: withTail("killed by signal "+unix.SignalName(ws.Signal()), errs)}
	}
	code := ws.ExitStatus()
	log.Debug().Int(keyExitCode, code).Dur(keyElapsed, elapsed).Msg("command exited")
	return res, &worker.ExitError{Code: code, Err: withTail("", errs)}
}

// track records pr's process group for Shutdown. When Shutdown is already
// killing, the group is killed at once.
func (h *Handler) track(pr *proc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.procs[pr.pid] = struct{}{}
	if h.killing {
		signalGroup(pr.pid, syscall.SIGKILL)
	}
}

func (h *Handler) untrack(pr *proc) {
	h.mu.Lock()
	delete(h.procs, pr.pid)
	h.mu.Unlock()
}

// withTail returns an error saying what, then the tail of stderr; nil when
// both are empty.
func withTail(what string, s *stderrSink) error {
	tail := s.String()
	switch {
	case tail == "" && what == "":
		return nil
	case tail == "":
		return errors.New(what)
	case what == "":
		return fmt.Errorf("stderr: %s", tail)
	}
	return fmt.Errorf("%s; stderr: %s", what, tail)
}

// Shutdown marks the handler closed (later jobs fail with ErrShutdown),
// kills the prestarted spares (SIGKILL to their groups; they are never fed
// EOF) and waits for them, then waits for running jobs to end. When ctx is
// done first it kills their process groups with SIGKILL, waits for the
// handlers to return, and returns ctx.Err(). zmws-run calls it after its
// workers have stopped, because a worker stops waiting for a cancelled
// handler after a second, which may be before the handler's grace has
// ended: Shutdown makes sure no child outlives zmws-run.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.drainSpares()
	done := make(chan struct{})
	go func() { h.jobs.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	h.mu.Lock()
	h.killing = true
	for pgid := range h.procs {
		h.log.Warn().Int("pid", pgid).Msg("killing process group at shutdown")
		signalGroup(pgid, syscall.SIGKILL)
	}
	h.mu.Unlock()
	<-done
	return ctx.Err()
}
