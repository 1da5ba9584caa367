package runner

import (
	"context"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/worker"
)

// Prestart (a template's prestart = true) keeps spares: processes of the
// command started ahead of their jobs, with their pipes, each in a process
// group of its own, waiting on their stdin. A job takes a spare, writes
// its stdin and waits for it, so the job does not wait for the spawn; the
// pool is refilled in the background at once, while the job runs and its
// result goes through the broker.
//
// The pool holds up to the template's concurrency spares, one per slot
// (those being started count). It lives under Handler.mu:
//
//	started (spawning) → in the pool (spares) → taken by a job (procs)
//	                                          → discarded: its job found
//	                                            it exited, or Shutdown
//
// A spare is never fed EOF to end it (a filter would then run with empty
// input): it is killed with SIGKILL to its group and waited for.

// prestartExited is logged when a job finds its spare gone.
const prestartExited = "prestarted command exited before its job; prestart is only for commands that read their input first"

// runPrestarted runs a job of a prestart template: on a spare if the pool
// has one, else on a fresh spawn (with the same environment: none of the
// job's variables). The job's timeout counts from the hand-over.
func (h *Handler) runPrestarted(ctx context.Context, log zerolog.Logger, j *worker.Job, argv []string, stdin [][]byte, sink func([]byte) (int, error)) ([]byte, error) {
	pr := h.takeSpare(log)
	h.refill()
	if pr == nil {
		return h.run(ctx, log, j, argv, h.spareEnv(), stdin, sink)
	}
	defer pr.cancel(nil)
	runCtx, cancel := h.jobContext(ctx)
	defer cancel()
	// The spare's command was made with a context of its own; from now
	// on the job's ends it (SIGTERM to the group, SIGKILL after the grace).
	stop := context.AfterFunc(runCtx, func() { pr.cancel(context.Cause(runCtx)) })
	defer stop()
	log.Debug().Int("pid", pr.pid).Msg("prestarted command takes the job")
	return h.await(runCtx, log, j, pr, stdin, sink, time.Now())
}

// spareEnv is the environment of a prestart template's commands.
func (h *Handler) spareEnv() []string {
	env, _ := h.t.environ(h.environ(), nil, nil)
	return env
}

// takeSpare returns a spare from the pool, now tracked as a running
// command, or nil when there is none. A spare that has exited is
// discarded, with a warning, and nil returned: its output is not the
// job's.
func (h *Handler) takeSpare(log zerolog.Logger) *proc {
	h.mu.Lock()
	if len(h.spares) == 0 {
		h.mu.Unlock()
		return nil
	}
	pr := h.spares[0]
	h.spares = append(h.spares[:0], h.spares[1:]...)
	h.mu.Unlock()
	if pr.hasExited() {
		log.Warn().Int("pid", pr.pid).Msg(prestartExited)
		pr.discard()
		return nil
	}
	h.track(pr)
	return pr
}

// hasExited reports whether the spare's process has exited: its waiting
// goroutine says so, or, before that goroutine has run, the kernel does.
func (pr *proc) hasExited() bool {
	select {
	case <-pr.exited:
		return true
	default:
		return childExited(pr.pid)
	}
}

// refill starts, in the background, the spares the pool lacks.
func (h *Handler) refill() {
	h.mu.Lock()
	n := h.t.concurrency - len(h.spares) - h.spawning
	if h.closed || n <= 0 {
		h.mu.Unlock()
		return
	}
	h.spawning += n
	h.spawners.Add(n)
	h.mu.Unlock()
	for range n {
		go h.addSpare()
	}
}

// addSpare starts a spare and puts it in the pool, or discards it when
// Shutdown has begun meanwhile. A spare that cannot start is only logged:
// the next job starts its command itself and reports why it cannot.
func (h *Handler) addSpare() {
	defer h.spawners.Done()
	pr, err := h.startSpare()
	h.mu.Lock()
	h.spawning--
	closed := h.closed
	if err == nil && !closed {
		h.spares = append(h.spares, pr)
	}
	h.mu.Unlock()
	switch {
	case err != nil:
		h.log.Debug().Err(err).Msg("cannot prestart command")
	case closed:
		pr.discard()
	default:
		h.log.Debug().Int("pid", pr.pid).Msg("command prestarted")
	}
}

// startSpare starts the command with a context of its own, and a goroutine
// that waits for it, so a job can tell whether its spare is still alive.
func (h *Handler) startSpare() (*proc, error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	pr, err := h.spawn(ctx, h.t.fixedArgv(), h.spareEnv())
	if err != nil {
		cancel(nil)
		return nil, err
	}
	pr.cancel = cancel
	pr.exited = make(chan struct{})
	go func() {
		pr.waitErr = pr.cmd.Wait()
		close(pr.exited)
	}()
	return pr, nil
}

// discard ends a spare that runs no job: SIGKILL to its group, a wait for
// it, its pipes closed.
func (pr *proc) discard() {
	signalGroup(pr.pid, syscall.SIGKILL)
	<-pr.exited
	signalGroup(pr.pid, syscall.SIGKILL) // what it started before it died
	pr.pipes.closeParent()
	if pr.status != nil {
		pr.status.Close()
	}
	pr.cancel(nil)
}

// drainSpares empties the pool and discards its spares, all killed before
// any is waited for. Called by Shutdown, after closed is set.
func (h *Handler) drainSpares() {
	h.mu.Lock()
	spares := h.spares
	h.spares = nil
	h.mu.Unlock()
	for _, pr := range spares {
		signalGroup(pr.pid, syscall.SIGKILL)
	}
	for _, pr := range spares {
		pr.discard()
	}
	h.spawners.Wait() // each discards what it starts now
}
