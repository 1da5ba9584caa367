package client

import (
	"context"

	"github.com/zmws/zmws/protocol"
)

// Pause stops the dispatch of a service's jobs (SERVER-PAUSE, an admin
// operation): submissions are accepted and queue, no worker gets one, until
// Resume. The broker journals it, so a restart keeps it. It returns the
// service as it stands; an unknown service is an error matching
// ErrNotFound.
func (c *Client) Pause(ctx context.Context, service string) (protocol.ServiceInfo, error) {
	return queryJSON[protocol.ServiceInfo](ctx, c, protocol.ServerPause, []byte(service))
}

// Resume ends a service's pause or drain (SERVER-RESUME): its queue is
// dispatched again.
func (c *Client) Resume(ctx context.Context, service string) (protocol.ServiceInfo, error) {
	return queryJSON[protocol.ServiceInfo](ctx, c, protocol.ServerResume, []byte(service))
}

// DrainService drains a service (SERVER-DRAIN): as Pause, and each of its
// workers is told to stop once it holds no job; a worker that says READY
// for it is told the same, until Resume. Journaled, as a pause is.
func (c *Client) DrainService(ctx context.Context, service string) (protocol.ServiceInfo, error) {
	return queryJSON[protocol.ServiceInfo](ctx, c, protocol.ServerDrain, []byte(service))
}

// DrainWorker drains live workers (SERVER-DRAIN): worker is a worker's
// identity, as Workers lists it, or HOST:PID for every connection of one
// process (a zmws-run's slots). Each gets no new job and is told to stop
// once it holds none; a zmws worker's slot then stops for good, and
// zmws-run exits once all of its slots have. It returns the workers
// drained. A name that is also a service's drains the service: use
// DrainService for clarity.
func (c *Client) DrainWorker(ctx context.Context, worker string) ([]protocol.WorkerInfo, error) {
	return queryJSON[[]protocol.WorkerInfo](ctx, c, protocol.ServerDrain, []byte(worker))
}
