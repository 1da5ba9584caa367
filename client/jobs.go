package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Request is what a job gets: parameters and input.
type Request struct {
	// Params are the job's named parameters (a template's {{name}}s).
	Params map[string]string
	// Input is the job's input (a command's stdin), sent as one frame when
	// not empty.
	Input []byte
	// Key is an idempotency key: requests with the same key mean the same
	// job. With a Key set, Submit resends after a timeout; without one it
	// never does. Whether the broker merges resends depends on the broker.
	Key string
	// TTR is the job's time-to-run (rounded to milliseconds; 0: the
	// service's). A job running longer is stopped and queued again.
	TTR time.Duration
	// Retries opts in to retrying the job, with exponential backoff, when
	// its worker says FAIL (0: the service's default). Async jobs only.
	Retries int
	// Owner says on whose behalf the job is submitted; the broker honours
	// it from a trusted in-process client only (the HTTP gateway, for its
	// tokens). Others own their jobs by their CURVE key.
	Owner string
	// Priority is the job's priority: a service's higher priorities are
	// dispatched first, FIFO within one (0: the default; negative is
	// below it).
	Priority int
	// Delay makes an async job wait this long (rounded up to milliseconds)
	// before it is queued; At makes it wait until then (a time past queues
	// it at once). Give one of them; the broker refuses a delayed Call.
	Delay time.Duration
	At    time.Time
}

// bodyRef is body with a submission reference in the meta frame.
func (r Request) bodyRef(ref string) [][]byte {
	meta := protocol.Meta{Params: r.Params, Key: r.Key, Owner: r.Owner, TTRMillis: r.TTR.Milliseconds(), Retries: r.Retries, Ref: ref,
		Priority: r.Priority}
	if r.Delay > 0 {
		meta.DelayMillis = int64((r.Delay + time.Millisecond - 1) / time.Millisecond)
	}
	if !r.At.IsZero() {
		meta.At = r.At.UTC().Format(time.RFC3339Nano)
	}
	if len(r.Input) == 0 {
		return requestBody(meta)
	}
	return requestBody(meta, r.Input)
}

// Result is the outcome of a job that ran (or was given up on by the broker).
type Result struct {
	JobID string
	// Status is protocol.StatusComplete or protocol.StatusFailed.
	Status protocol.Status
	// ExitCode is the job's exit code, when the worker reported one.
	ExitCode *int
	// Code and Error say why a failed job failed: Code is a stable
	// protocol.Code* value (job_failed, worker_lost, shutdown), Error is for
	// people (the worker's reason, a stderr tail).
	Code  string
	Error string
	// Attempt is the attempt that produced the result (1 unless the job was
	// requeued after a worker was lost).
	Attempt int
	// Output is the job's output. When Call streamed PARTIAL replies to an
	// onPartial callback, Output holds only what came with the FINAL reply;
	// with a nil callback it holds everything, partials first.
	Output []byte
	// OutputTruncated says the job's output was cut: by its worker, or by
	// the broker past --max-stream (later partials were not sent).
	OutputTruncated bool
}

// OK reports whether the job completed.
func (r *Result) OK() bool { return r.Status == protocol.StatusComplete }

// Submit queues an asynchronous job for service and returns its ID as soon
// as the broker has accepted it. A refusal is an *Error (errors.Is with
// ErrUnknownService, ErrQueueFull, ErrBadRequest). Submit waits
// Config.Timeout for the answer and is sent once, since a resend could make a
// second job, unless req.Key is set: then it is resent up to Config.Retries
// times. service must not be a SYNC- name: use Call.
func (c *Client) Submit(ctx context.Context, service string, req Request) (string, error) {
	if _, sync := protocol.SplitSync(service); sync {
		return "", fmt.Errorf("submit %s: synchronous service, use Call: %w", service, ErrBadRequest)
	}
	if err := c.plainAllows(ctx, "submit", service); err != nil {
		return "", err
	}
	retries := 0
	if req.Key != "" {
		retries = c.cfg.Retries
	}
	r, err := c.roundTrip(ctx, "submit", service, req.bodyRef, retries)
	if err != nil {
		return "", err
	}
	return c.acceptedID(service, r)
}

// acceptedID reads the broker's answer to a submission: the job ID, or why
// not.
func (c *Client) acceptedID(service string, r reply) (string, error) {
	meta, _, err := replyMeta("submit", r)
	if err != nil {
		return "", err
	}
	switch meta.Status {
	case protocol.StatusAccepted:
		if meta.Job == "" {
			return "", fmt.Errorf("submit %s: accepted without a job ID: %w", service, ErrBadReply)
		}
		c.log.Debug().Str(keyService, service).Str(keyJob, meta.Job).Msg("job accepted")
		return meta.Job, nil
	case protocol.StatusRefused, protocol.StatusFailed:
		return "", refusal(meta)
	}
	return "", fmt.Errorf("submit %s: status %q: %w", service, meta.Status, ErrBadReply)
}

// Accepted is what the broker says when it queues a synchronous job.
type Accepted struct {
	JobID string
	// NoWorker says no worker was connected for the service when the job
	// was queued: it waits until one comes. Notice says so for people.
	NoWorker bool
	Notice   string
}

// CallHooks are the callbacks of CallWith, each optional.
type CallHooks struct {
	// OnAccepted is called once, before any output, when the client learns
	// the job's ID: a zmws broker says so at once when the job waits in its
	// queue (NoWorker: no worker is connected), and otherwise with the job's
	// first output, or once it ran 100 ms without any (within about a third
	// of a second). A job that ends sooner without output may not call it
	// (Result.JobID has the ID); a stock broker never does.
	OnAccepted func(Accepted)
	// OnPartial gets each frame of each PARTIAL reply as it arrives, in
	// order; the callee may keep the slice. An error from it abandons the
	// request (the job itself runs on) and is returned as is. Nil: the
	// partial output is gathered into Result.Output instead.
	OnPartial func([]byte) error
}

// Call runs a job synchronously: it asks for SYNC-service (service may
// already carry a SYNC- or SYNC: prefix) and waits for the worker. It is
// CallWith with only an OnPartial hook (which may be nil).
func (c *Client) Call(ctx context.Context, service string, req Request, onPartial func([]byte) error) (*Result, error) {
	return c.CallWith(ctx, service, req, CallHooks{OnPartial: onPartial})
}

// CallWith runs a job synchronously, passing what happens to hooks.
//
// A job that ran and failed is not an error: Result.Status says so. err is
// set when there is no result: a refusal (*Error), ctx.Err() (returned
// unwrapped, at once), ErrClosed, a malformed reply, a connection failure,
// or a broker that lost track of the job. Call has no timeout of its own
// (jobs may run for hours) and is never resent: bound it with ctx.
//
// When nothing has been heard of the job for Config.Liveness, Call asks the
// broker about it (SERVER-JOB, sent at most twice, each time waiting the
// shorter of Config.Timeout and Config.Liveness for the answer): while
// the job is queued or running it waits on; a job that ended without its
// final reply reaching the client gives its Result from the broker's record
// (output past what was streamed, up to the broker's retained output); a
// job the broker no longer knows (it restarted: sync jobs are not
// journaled) is an error matching ErrLost; a broker that does not answer is
// an error matching ErrTimeout.
func (c *Client) CallWith(ctx context.Context, service string, req Request, hooks CallHooks) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if d, err := c.dialect(ctx, service); err != nil {
		return nil, err
	} else if d.Plain() {
		return c.callPlain(ctx, service, req, hooks)
	}
	if _, sync := protocol.SplitSync(service); !sync {
		service = protocol.SyncPrefixDash + service
	}
	cl, err := c.start(service, req.bodyRef, nil)
	if err != nil {
		return nil, err
	}
	defer c.finish(cl)

	w := &syncWait{c: c, cl: cl, service: service, hooks: hooks, start: time.Now()}
	return w.wait(ctx)
}

// wait takes the replies of the call until its result, asking the broker
// about it (probe) whenever nothing was heard for Config.Liveness.
func (w *syncWait) wait(ctx context.Context) (*Result, error) {
	c := w.c
	for {
		var deadline time.Time
		if c.cfg.Liveness > 0 {
			deadline = time.Now().Add(c.cfg.Liveness)
		}
		r, err := c.next(ctx, w.cl, deadline)
		if errors.Is(err, errNoReply) {
			res, err := w.probe(ctx)
			if res != nil || err != nil {
				return res, err
			}
			continue
		}
		if err != nil {
			return nil, opError("call", w.service, err)
		}
		if res, err := w.take(r); res != nil || err != nil {
			return res, err
		}
	}
}

// syncWait is the state of one CallWith.
type syncWait struct {
	c        *Client
	cl       *call
	service  string
	hooks    CallHooks
	start    time.Time
	plain    bool // to a plain broker: no job ID, nothing to probe, FAIL frames
	jobID    string
	unheard  int    // probes answered by a broker that never named the job
	output   []byte // gathered partial output, without OnPartial
	streamed int    // bytes of partial output passed on
}

// take handles one reply; a final one gives the result (or error).
func (w *syncWait) take(r reply) (*Result, error) {
	if w.plain {
		if r.cmd == protocol.CmdPartial {
			return nil, w.partial(r.rest)
		}
		return w.plainResult(r.rest)
	}
	if r.cmd == protocol.CmdPartial {
		if r.hasMeta && r.meta.Job != "" && w.jobID == "" {
			w.jobID = r.meta.Job
			if w.hooks.OnAccepted != nil {
				w.hooks.OnAccepted(Accepted{JobID: r.meta.Job, NoWorker: r.meta.Code == protocol.CodeNoWorker, Notice: r.meta.Error})
			}
		}
		if r.hasMeta && r.meta.Status == protocol.StatusAccepted {
			return nil, nil
		}
		w.c.log.Debug().Str(keyService, w.service).Int("frames", len(r.rest)).Msg("partial reply")
		return nil, w.partial(r.rest)
	}
	meta, rest, err := replyMeta("call", r)
	if err != nil {
		return nil, err
	}
	switch meta.Status {
	case protocol.StatusComplete, protocol.StatusFailed:
	case protocol.StatusRefused:
		return nil, refusal(meta)
	default:
		return nil, fmt.Errorf("call %s: status %q: %w", w.service, meta.Status, ErrBadReply)
	}
	for _, f := range rest {
		w.output = append(w.output, f...)
	}
	w.c.log.Debug().Str(keyService, w.service).Str(keyJob, meta.Job).Str("status", string(meta.Status)).
		Dur(keyElapsed, time.Since(w.start)).Msg("call done")
	return &Result{
		JobID:           meta.Job,
		Status:          meta.Status,
		ExitCode:        meta.ExitCode,
		Code:            meta.Code,
		Error:           meta.Error,
		Attempt:         meta.Attempt,
		OutputTruncated: meta.OutputTruncated,
		Output:          w.output,
	}, nil
}

// partial passes partial output on, or gathers it.
func (w *syncWait) partial(body [][]byte) error {
	for _, f := range body {
		w.streamed += len(f)
		if w.hooks.OnPartial == nil {
			w.output = append(w.output, f...)
			continue
		}
		if err := w.hooks.OnPartial(f); err != nil {
			return err
		}
	}
	return nil
}

// probe asks the broker about a job it has been quiet about for
// Config.Liveness: (nil, nil) means wait on.
func (w *syncWait) probe(ctx context.Context) (*Result, error) {
	c := w.c
	if w.plain {
		c.log.Warn().Str(keyService, w.service).Dur(keyElapsed, time.Since(w.start)).
			Msg("no reply yet; a plain broker cannot be asked about the request, waiting on")
		return nil, nil
	}
	quiet := c.cfg.Liveness
	if w.jobID == "" {
		return nil, w.probeRequest(ctx)
	}
	info, err := c.probeJob(ctx, w.jobID)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("call %s: the broker no longer knows job %s (it restarted, and sync jobs are not journaled, or it forgot the job): %w",
			w.service, w.jobID, ErrLost)
	case errors.Is(err, ErrTimeout):
		return nil, fmt.Errorf("call %s: job %s: nothing heard for %v and the broker at %s does not answer: %w",
			w.service, w.jobID, quiet, c.cfg.Broker, err)
	case err != nil:
		return nil, err
	}
	switch info.State {
	case "complete", "failed":
	default:
		c.log.Debug().Str(keyService, w.service).Str(keyJob, w.jobID).Str("state", info.State).Msg("quiet job still in hand, waiting on")
		return nil, nil
	}
	if w.cl.pending() {
		return nil, nil // the final reply came before the broker's answer
	}
	// The job ended but its final reply never came (dropped on the way):
	// the broker's record has the outcome.
	c.log.Warn().Str(keyService, w.service).Str(keyJob, w.jobID).Msg("job ended without its final reply: outcome from the broker's record")
	res := &Result{JobID: info.ID, Status: protocol.StatusFailed, ExitCode: info.ExitCode, Code: info.Code, Error: info.Error,
		Attempt: info.Attempts, OutputTruncated: info.OutputTruncated}
	if info.State == "complete" {
		res.Status = protocol.StatusComplete
	}
	if len(info.Output) > w.streamed {
		rest := info.Output[w.streamed:]
		if w.hooks.OnPartial == nil {
			w.output = append(w.output, rest...)
		} else {
			res.Output = rest
		}
	}
	if w.hooks.OnPartial == nil {
		res.Output = w.output
	}
	return res, nil
}

// probeRequest checks on a request the broker never named a job for: a
// zmws broker names it within about a third of a second of queueing it
// (see OnAccepted), so one that answers (echoing references) twice, a
// Liveness apart, without having named it has lost the request; a stock
// broker never names it, and is waited on.
func (w *syncWait) probeRequest(ctx context.Context) error {
	c := w.c
	if !w.cl.wasSent() {
		return nil // still in the outbox: the socket is full
	}
	r, err := c.roundTripWithin(ctx, "query", protocol.ServerHealth, queryBody(), probeRetries, c.probeTimeout())
	switch {
	case errors.Is(err, ErrTimeout):
		return fmt.Errorf("call %s: no answer for %v, and the broker at %s does not answer: %w", w.service, c.cfg.Liveness, c.cfg.Broker, err)
	case err != nil:
		return err
	case r.byRef && !w.cl.pending():
		if w.unheard++; w.unheard >= 2 {
			return fmt.Errorf("call %s: the broker answers but knows nothing of the request (it restarted and lost it): %w", w.service, ErrLost)
		}
	}
	return nil
}

// probeRetries is how many times a probe of a quiet job is sent again: once,
// for a broker that restarted and lost the first.
const probeRetries = 1

// probeTimeout is how long a probe waits for each answer: a broker quiet
// for Liveness already gets at most that long again.
func (c *Client) probeTimeout() time.Duration { return min(c.timeout(), c.cfg.Liveness) }

// probeJob asks SERVER-JOB about a quiet job.
func (c *Client) probeJob(ctx context.Context, id string) (protocol.JobInfo, error) {
	frames, err := c.queryWithin(ctx, protocol.ServerJob, probeRetries, c.probeTimeout(), []byte(id))
	if err != nil {
		return protocol.JobInfo{}, err
	}
	return decodeJSON[protocol.JobInfo](protocol.ServerJob, frames)
}
