package client

import (
	"context"
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
}

func (r Request) body() [][]byte { return r.bodyRef("") }

// bodyRef is body with a submission reference in the meta frame.
func (r Request) bodyRef(ref string) [][]byte {
	meta := protocol.Meta{Params: r.Params, Key: r.Key, Owner: r.Owner, TTRMillis: r.TTR.Milliseconds(), Retries: r.Retries, Ref: ref}
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
// times on a fresh socket. service must not be a SYNC- name: use Call.
func (c *Client) Submit(ctx context.Context, service string, req Request) (string, error) {
	if _, sync := protocol.SplitSync(service); sync {
		return "", fmt.Errorf("submit %s: synchronous service, use Call: %w", service, ErrBadRequest)
	}
	retries := 0
	if req.Key != "" {
		retries = c.cfg.Retries
	}
	m, err := c.request(ctx, "submit", service, req.body(), retries)
	if err != nil {
		return "", err
	}
	return c.acceptedID(service, m)
}

// acceptedID reads the broker's answer to a submission: the job ID, or why
// not.
func (c *Client) acceptedID(service string, m protocol.Message) (string, error) {
	meta, _, err := replyMeta("submit", m)
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

// Call runs a job synchronously: it asks for SYNC-service (service may
// already carry a SYNC- or SYNC: prefix) and waits for the worker.
//
// Each frame of each PARTIAL reply is passed to onPartial as it arrives, in
// order; the callee may keep the slice. An error from onPartial abandons the
// request (the job itself runs on) and is returned as is. With a nil
// onPartial the partial output is gathered into Result.Output instead.
//
// A job that ran and failed is not an error: Result.Status says so. err is
// set when there is no result: a refusal (*Error), ctx.Err() (returned
// unwrapped and within a few tens of milliseconds of cancellation),
// ErrClosed, a malformed reply or a socket failure. Call has no timeout of
// its own and is never resent.
func (c *Client) Call(ctx context.Context, service string, req Request, onPartial func([]byte) error) (*Result, error) {
	if _, sync := protocol.SplitSync(service); !sync {
		service = protocol.SyncPrefixDash + service
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()

	var output []byte
	partial := func(body [][]byte) error {
		for _, f := range body {
			if onPartial == nil {
				output = append(output, f...)
				continue
			}
			if err := onPartial(f); err != nil {
				return err
			}
		}
		return nil
	}
	start := time.Now()
	m, err := c.exchange(ctx, service, req.body(), time.Time{}, partial)
	if err != nil {
		return nil, err
	}
	meta, rest, err := replyMeta("call", m)
	if err != nil {
		return nil, err
	}
	switch meta.Status {
	case protocol.StatusComplete, protocol.StatusFailed:
	case protocol.StatusRefused:
		return nil, refusal(meta)
	default:
		return nil, fmt.Errorf("call %s: status %q: %w", service, meta.Status, ErrBadReply)
	}
	for _, f := range rest {
		output = append(output, f...)
	}
	c.log.Debug().Str(keyService, service).Str(keyJob, meta.Job).Str("status", string(meta.Status)).
		Dur(keyElapsed, time.Since(start)).Msg("call done")
	return &Result{
		JobID:           meta.Job,
		Status:          meta.Status,
		ExitCode:        meta.ExitCode,
		Code:            meta.Code,
		Error:           meta.Error,
		Attempt:         meta.Attempt,
		OutputTruncated: meta.OutputTruncated,
		Output:          output,
	}, nil
}
