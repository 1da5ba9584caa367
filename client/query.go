package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Query sends a request to a service that answers at once, such as the
// broker's SERVER-* and mmi.* services, and returns the frames of its reply
// after the meta frame (or the whole reply, from a broker that sends none).
// body follows the request's meta frame. A refusal is an *Error.
//
// Query waits Config.Timeout per attempt and resends up to Config.Retries
// times (Lazy Pirate), so use it only for requests that are safe to repeat;
// then it wraps ErrTimeout. PARTIAL replies are dropped.
func (c *Client) Query(ctx context.Context, service string, body ...[]byte) ([][]byte, error) {
	return c.query(ctx, service, c.cfg.Retries, body...)
}

func (c *Client) query(ctx context.Context, service string, retries int, body ...[]byte) ([][]byte, error) {
	return c.queryWithin(ctx, service, retries, c.timeout(), body...)
}

// queryWithin is query with its own timeout per attempt.
func (c *Client) queryWithin(ctx context.Context, service string, retries int, timeout time.Duration, body ...[]byte) ([][]byte, error) {
	_, frames, err := c.queryMeta(ctx, service, retries, timeout, protocol.Meta{}, body...)
	return frames, err
}

// queryMeta is query with a request meta frame of the caller's (its Ref is
// set here); it returns the reply's meta frame too (zero from a broker that
// sends none).
func (c *Client) queryMeta(ctx context.Context, service string, retries int, timeout time.Duration, req protocol.Meta, body ...[]byte) (protocol.Meta, [][]byte, error) {
	mk := func(ref string) [][]byte {
		m := req
		m.Ref = ref
		return requestBody(m, body...)
	}
	r, err := c.roundTripWithin(ctx, "query", service, mk, retries, timeout)
	if err != nil {
		return protocol.Meta{}, nil, err
	}
	meta, rest := r.meta, r.rest
	switch {
	case r.metaErr != nil:
		return protocol.Meta{}, nil, fmt.Errorf("query %s: %w: %w", service, ErrBadReply, r.metaErr)
	case !r.hasMeta:
		return protocol.Meta{}, rest, nil
	case meta.Status == protocol.StatusRefused, meta.Status == protocol.StatusFailed:
		return protocol.Meta{}, nil, refusal(meta)
	}
	return meta, rest, nil
}

// queryJSON runs a query whose reply is one JSON frame and decodes it.
func queryJSON[T any](ctx context.Context, c *Client, service string, body ...[]byte) (T, error) {
	return requestJSON[T](ctx, c, service, c.cfg.Retries, body...)
}

// requestJSON is queryJSON with a chosen number of resends.
func requestJSON[T any](ctx context.Context, c *Client, service string, retries int, body ...[]byte) (T, error) {
	frames, err := c.query(ctx, service, retries, body...)
	if err != nil {
		var v T
		return v, err
	}
	return decodeJSON[T](service, frames)
}

// decodeJSON decodes a reply that is one JSON frame.
func decodeJSON[T any](service string, frames [][]byte) (T, error) {
	var v T
	if len(frames) != 1 {
		return v, fmt.Errorf("query %s: reply of %d frames, want one JSON frame: %w", service, len(frames), ErrBadReply)
	}
	if err := json.Unmarshal(frames[0], &v); err != nil {
		return v, fmt.Errorf("query %s: %w: %w", service, ErrBadReply, err)
	}
	return v, nil
}

// Workers lists the live workers (SERVER-WORKERS), idle or busy.
func (c *Client) Workers(ctx context.Context) ([]protocol.WorkerInfo, error) {
	return queryJSON[[]protocol.WorkerInfo](ctx, c, protocol.ServerWorkers)
}

// WorkersWithGone lists the live workers and, after those of each
// service, the gone ones the broker keeps (zmwsd --keep-gone a service),
// most recently gone first, with when and why they went (SERVER-WORKERS
// all). A broker from before gone workers lists the live ones.
func (c *Client) WorkersWithGone(ctx context.Context) ([]protocol.WorkerInfo, error) {
	return queryJSON[[]protocol.WorkerInfo](ctx, c, protocol.ServerWorkers, []byte(protocol.WorkersAll))
}

// Jobs lists the jobs that finished most recently, newest first
// (SERVER-JOBS): every one the broker retains, a page at a time (see
// AllJobs).
func (c *Client) Jobs(ctx context.Context) ([]protocol.JobInfo, error) {
	return collect(c.AllJobs(ctx, PageOptions{Limit: protocol.MaxJobsPage}))
}

// Active lists the jobs running on a worker now (SERVER-ACTIVE).
func (c *Client) Active(ctx context.Context) ([]protocol.JobInfo, error) {
	return queryJSON[[]protocol.JobInfo](ctx, c, protocol.ServerActive)
}

// Queue lists each service's queued jobs (SERVER-QUEUE).
func (c *Client) Queue(ctx context.Context) ([]protocol.QueueInfo, error) {
	return queryJSON[[]protocol.QueueInfo](ctx, c, protocol.ServerQueue)
}

// Services lists every service a worker ever offered, with counters, by
// name (SERVER-SERVICES): every one, a page at a time (see AllServices).
// With CURVE, a key that may not administer learns only of the services it
// may use.
func (c *Client) Services(ctx context.Context) ([]protocol.ServiceInfo, error) {
	return collect(c.AllServices(ctx, PageOptions{Limit: protocol.MaxServicesPage}))
}

// Job looks up one job by ID (SERVER-JOB), including its retained output.
// A job the broker does not know (or no longer retains) is an error matching
// ErrNotFound.
func (c *Client) Job(ctx context.Context, id string) (protocol.JobInfo, error) {
	return queryJSON[protocol.JobInfo](ctx, c, protocol.ServerJob, []byte(id))
}

// ForgetService makes the broker forget a service that has no worker and
// no job (SERVER-FORGET, an admin operation): a refusal matching
// ErrNotFound or ErrConflict says why not.
func (c *Client) ForgetService(ctx context.Context, name string) error {
	_, err := c.query(ctx, protocol.ServerForget, c.cfg.Retries, []byte(name))
	return err
}

// Cancel cancels a job (SERVER-CANCEL): a queued job is removed, a running
// one is stopped through its worker; either way it ends failed with code
// protocol.CodeCancelled, as the returned description shows. A finished job
// is an error matching ErrConflict; an unknown one, ErrNotFound. Cancel is
// sent once.
func (c *Client) Cancel(ctx context.Context, id string) (protocol.JobInfo, error) {
	return requestJSON[protocol.JobInfo](ctx, c, protocol.ServerCancel, 0, []byte(id))
}

// Retry queues a failed job again under its ID (SERVER-RETRY), with a fresh
// budget of attempts. A job that is not failed is an error matching
// ErrConflict. Retry is sent once.
func (c *Client) Retry(ctx context.Context, id string) (protocol.JobInfo, error) {
	return requestJSON[protocol.JobInfo](ctx, c, protocol.ServerRetry, 0, []byte(id))
}

// ServiceStatus asks the broker about a service with 8/MMI mmi.service:
// "200" when a worker has offered it, "404" when none has, "501" from a
// broker without MMI.
func (c *Client) ServiceStatus(ctx context.Context, name string) (string, error) {
	frames, err := c.Query(ctx, protocol.MMIService, []byte(name))
	if err != nil {
		return "", err
	}
	if len(frames) != 1 {
		return "", fmt.Errorf("query %s: reply of %d frames, want one: %w", protocol.MMIService, len(frames), ErrBadReply)
	}
	return string(frames[0]), nil
}
