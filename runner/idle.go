package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/worker"
)

// idleService names an idle command's template: it is no service, and its
// command sees no ZMWS_SERVICE.
const idleService = "zmws-run-idle"

// Idle runs zmws-run's idle command (--idle-command): a command run outside
// any job while the worker is quiet (see worker.Idler), under the rules of a
// template's command. Its line is split without a shell; it sees the
// environment the allow-list passes and the extra variables, but none of a
// job's ZMWS_* variables; it runs in the working directory, as the user,
// and in the process group (or, with Config.Contain, the PID namespace) of
// its own that a job's command would; it reads an empty stdin. Its run
// time is bounded by the timeout, and when the context of Run ends
// (a job started, zmws-run stops) its group gets SIGTERM, and SIGKILL after
// the grace. Its stdout (up to max_output) and stderr are logged line by
// line, at most 1,000 lines of 1 KiB each, and how it ended is logged with
// its exit code. An Idle runs one command at a time.
type Idle struct {
	h   *Handler
	log zerolog.Logger
}

// NewIdle checks the idle command s (Command, User, Timeout and Workdir are
// read; what s leaves unset comes from d) and returns its Idle. An idle
// command has no job to fill placeholders: a {{name}} in its words or in
// the environment of d is refused.
func NewIdle(s Spec, d Defaults, cfg Config) (*Idle, error) {
	switch {
	case s.Prestart, s.Stdin != nil, s.Params != nil, s.Concurrency != 0, s.Retries != 0:
		return nil, errors.New("an idle command has only a command, a user, a timeout and a workdir")
	case s.Timeout <= 0 && d.Timeout <= 0:
		return nil, errors.New("no timeout: an idle command must be bounded")
	}
	s.Service = idleService
	t, err := New(s, d)
	if err != nil {
		return nil, err
	}
	if len(t.names) > 0 {
		return nil, fmt.Errorf("{{%s}} is a placeholder, and an idle command has no job to fill it", t.names[0])
	}
	t.idle = true
	log := cfg.Logger.With().Str("component", "idle").Logger()
	h := &Handler{
		t:       t,
		log:     log,
		environ: os.Environ,
		linger:  LineLinger,
		contain: cfg.Contain,
		procs:   map[int]struct{}{},
	}
	return &Idle{h: h, log: log}, nil
}

// Template returns the idle command's template.
func (i *Idle) Template() *Template { return i.h.t }

// Run runs the idle command once and waits for it; see Idle for the rules.
// It returns nil when the command exited 0; a *worker.ExitError when it
// failed (ExitTimeout when it ran out of time; ExitNotFound, ExitCannotRun
// when it could not start); an error wrapping context.Canceled when ctx
// ended first (its cause, such as worker.ErrJobStarted, is in the log);
// ErrShutdown after Shutdown. Each ending is logged.
func (i *Idle) Run(ctx context.Context) error {
	h := i.h
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrShutdown
	}
	h.jobs.Add(1)
	h.mu.Unlock()
	defer h.jobs.Done()

	argv, err := h.t.args(nil, nil)
	if err != nil {
		return err
	}
	env, _ := h.t.environ(h.environ(), nil, nil)
	stdout := &stderrSink{log: i.log, stream: "stdout"}
	sink := func(p []byte) (int, error) { return stdout.Write(p) }
	i.log.Debug().Strs("argv", argv).Msg("idle command starting")
	start := time.Now()
	res, err := h.run(ctx, i.log, &worker.Job{}, argv, env, nil, sink)
	stdout.Write(res)
	stdout.close()
	elapsed := time.Since(start)

	var ee *worker.ExitError
	switch {
	case err == nil:
		i.log.Info().Dur(keyElapsed, elapsed).Msg("idle command done")
	case errors.Is(err, context.Canceled):
		why := "zmws-run stopping"
		if errors.Is(context.Cause(ctx), worker.ErrJobStarted) {
			why = "a job started"
		}
		i.log.Info().Dur(keyElapsed, elapsed).Str("reason", why).Msg("idle command stopped")
	case errors.As(err, &ee) && ee.Code == ExitTimeout:
		i.log.Warn().Int(keyExitCode, ee.Code).Dur("timeout", h.t.timeout).Dur(keyElapsed, elapsed).Err(ee.Err).Msg("idle command timed out")
	case errors.As(err, &ee):
		i.log.Warn().Int(keyExitCode, ee.Code).Dur(keyElapsed, elapsed).Err(ee.Err).Msg("idle command failed")
	default:
		i.log.Error().Err(err).Dur(keyElapsed, elapsed).Msg("idle command")
	}
	return err
}

// Shutdown stops later runs (they return ErrShutdown) and waits for the one
// in progress; when ctx ends first, it kills its process group with
// SIGKILL, as Handler.Shutdown does for jobs.
func (i *Idle) Shutdown(ctx context.Context) error { return i.h.Shutdown(ctx) }
