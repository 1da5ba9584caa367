package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Errors returned by Job.Write.
var (
	// ErrJobDone is returned by Write once the handler has returned, or once
	// the worker has stopped and abandoned the job.
	ErrJobDone = errors.New("worker: job already finished")
	// ErrNoStream is returned by Write on a Job that was not made by a Worker
	// (for example one built by hand in a test): it has nowhere to stream to.
	ErrNoStream = errors.New("worker: job has no stream")
)

// Job is one unit of work handed to a Handler. Its fields are set by the
// Worker before ServeJob is called and must be treated as read-only.
type Job struct {
	// ID is the zmws job ID (the address frame of the REQUEST). For a stock
	// broker that sends no meta frame it is the address the broker sent
	// (its client's routing id), or "mdp-" and its hex when that is not
	// printable ASCII.
	ID string
	// Service is the service the job was submitted to, as the broker reports
	// it, or Config.Service when the broker does not say.
	Service string
	// Attempt counts dispatches of this job, starting at 1.
	Attempt int
	// Params holds the job's parameters; never nil, empty for a stock broker.
	Params map[string]string
	// Input holds the body frames after the meta frame.
	Input [][]byte

	st        *stream // nil for a Job not made by a Worker
	truncated bool    // see SetOutputTruncated
}

// SetOutputTruncated records that the handler cut the job's output: what
// it wrote and returned is only the first part of what the job made. The
// worker says so in its final reply (output_truncated), and the broker
// marks the job's output truncated in its record. Call it before ServeJob
// returns, from its goroutine (or one it waits for).
func (j *Job) SetOutputTruncated() { j.truncated = true }

// OutputTruncated reports whether SetOutputTruncated was called.
func (j *Job) OutputTruncated() bool { return j.truncated }

// stream is where a Job's partial output goes: a channel the job's slot
// reads. It is behind a pointer so a Job stays a plain copyable value.
type stream struct {
	chunks chan<- []byte
	done   chan struct{} // closed when the slot abandons the job
	nudge  *nudge        // wakes the slot's loop for a chunk
	ended  atomic.Bool   // set when the handler has returned
	once   sync.Once
}

// end marks the handler returned: later Writes fail.
func (st *stream) end() { st.ended.Store(true) }

// abandon unblocks Writes waiting for room: the slot no longer reads.
func (st *stream) abandon() {
	st.end()
	st.once.Do(func() { close(st.done) })
}

// Write sends a copy of p to the broker as a PARTIAL reply, which the broker
// streams to a synchronous caller; the job's output is all partials in order,
// then the handler's result. Write blocks while the broker takes output
// slower than the handler writes it (back pressure). It may be called from
// any goroutine, but not after ServeJob has returned (ErrJobDone). A partial
// written after the worker lost its broker connection is dropped: the broker
// has requeued the job, and the handler's ctx is cancelled.
func (j *Job) Write(p []byte) (int, error) {
	if j.st == nil {
		return 0, ErrNoStream
	}
	if j.st.ended.Load() {
		return 0, ErrJobDone
	}
	if len(p) == 0 {
		return 0, nil
	}
	select {
	case j.st.chunks <- bytes.Clone(p):
		j.st.nudge.nudge()
		return len(p), nil
	case <-j.st.done:
		return 0, ErrJobDone
	}
}

// Handler serves jobs. ServeJob returns the job's final output (sent after
// any partials written with j.Write) and nil for a complete job, or an error
// for a failed one; output returned with an error is sent too. An error that
// wraps an *ExitError also reports its exit code. A panic in ServeJob is
// recovered and reported as a failure.
//
// ctx is not cancelled when the worker starts to shut down: the handler gets
// Config.Grace to finish first. It is cancelled after the grace period, and
// when the worker loses its broker connection (the job's result could no
// longer be delivered).
type Handler interface {
	ServeJob(ctx context.Context, j *Job) ([]byte, error)
}

// HandlerFunc adapts an ordinary function to a Handler.
type HandlerFunc func(ctx context.Context, j *Job) ([]byte, error)

// ServeJob calls f(ctx, j).
func (f HandlerFunc) ServeJob(ctx context.Context, j *Job) ([]byte, error) { return f(ctx, j) }

// ExitError reports that a job ended with a process exit code. A handler
// returns it (possibly wrapped) to have the code reported as the job's
// exit_code.
type ExitError struct {
	Code int   // the process's exit code
	Err  error // optional detail, such as the tail of stderr
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("exit status %d: %v", e.Code, e.Err)
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Unwrap returns e.Err.
func (e *ExitError) Unwrap() error { return e.Err }
