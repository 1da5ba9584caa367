// Package client is the Go client library for a zmws broker: submit a job
// and get its ID at once, call a service and stream its output as the
// worker produces it, and ask the broker about its workers, jobs, queues and
// services.
//
// A Client speaks 18/MDP (MDPC02) over one DEALER socket connected to the
// broker's client endpoint, without the empty delimiter frame, and puts a
// zmws meta frame (protocol.Meta) first in every request body, so every
// reply starts with one too. Requests to NAME are asynchronous (the reply is
// the job ID); Call asks for SYNC-NAME and waits for the worker's PARTIAL
// and FINAL replies. Package protocol (and docs/PROTOCOL.md) has the frames.
//
// The examples run against a broker and a worker in the same process:
// ExampleClient_Call streams a synchronous job's output,
// ExampleClient_Submit submits an asynchronous job and looks it up by ID,
// ExampleClient_Submit_unknownService shows the refusal of a service no
// worker ever offered. SubmitMany submits many jobs with a window of them
// in flight, for bulk loads (it is what `zmws submit --each-line` uses);
// outcomes come back in order, matched to their requests by a reference the
// broker echoes (ExampleClient_SubmitMany).
//
// # Errors
//
// A job that ran and failed is not a Go error: Call returns a Result whose
// Status says so. Errors are for requests that got no answer: a refusal by
// the broker is an *Error (test with errors.Is against ErrUnknownService,
// ErrQueueFull, ErrNotFound, ErrBadRequest), a missing reply wraps
// ErrTimeout, a cancelled context is ctx.Err().
//
// # Timeouts and retries
//
// Submits and queries wait Config.Timeout for each attempt. Queries follow
// the Guide's Lazy Pirate pattern: on timeout the request is sent again, up
// to Config.Retries times, with the same reference, so whichever answer
// comes is taken (the socket reconnects by itself to a broker that
// restarted). A Submit is sent once, since a resend could make a
// second job, unless its Request.Key is set (the broker may then recognise
// the resend). Call has no timeout of its own, since jobs may run for hours:
// bound it with ctx.
//
// A request that gives up (timeout, cancelled context, an error from the
// onPartial callback) is forgotten: the replies that come for it later are
// dropped, and the socket and the other requests on it carry on.
//
// # Concurrency
//
// A Client's methods are safe for concurrent use, and a Client carries any
// number of requests in flight at once on its one socket: a sync Call that
// waits an hour for its job does not hold up a Submit or a query made
// meanwhile. Each request puts a reference in its meta frame (Meta.Ref); a
// zmws broker echoes it in every reply to the request, PARTIALs included,
// and the client hands each reply to the request it names (docs/PROTOCOL.md,
// "Addressed replies"). Replies without a reference (a stock MDP broker) go
// to the oldest request in flight for their service, which is right as long
// as such a broker answers one service's requests in order.
//
// One goroutine owns the socket: requests are queued to it (a caller that
// queues one while the loop waits for the socket in the Go netpoller,
// internal/zmqfd, interrupts that wait), and it hands replies to their
// requests, so a slow reader of
// one Call's output never stalls the others (a Call's undelivered output is
// held for it, and bounded by the broker's --max-stream). Close ends every
// request in flight with ErrClosed.
//
// # Plain brokers
//
// With Config.Protocol mdp1 or mdp2 (or auto, which asks the broker
// mmi.service in both versions before the first request) the client
// speaks plain Majordomo: Call runs the service as its workers announced
// it, with the input alone, and its replies are matched by service and
// order; Submit, SubmitMany, the SERVER-* queries and a Request's
// parameters, key, TTR, retries, owner, priority and delay are ErrUnsupported
// (docs/PROTOCOL.md, "Against a plain Majordomo broker").
//
// # Quiet jobs
//
// A zmws broker tells a Call its job's ID at once (CallWith's OnAccepted,
// which also says when no worker is connected for the service). After
// Config.Liveness without a word of the job, Call asks the broker about it:
// see CallWith.
//
// # Security
//
// With Config.Curve (curve.LoadClient(brokerKeyFile, ownKeyFile)) the
// client speaks CURVE: the broker's public key authenticates the broker, and
// the client's key must be one the broker authorizes, with the rights the
// request needs (docs/SECURITY.md). A handshake the broker refuses ends the
// request at once with an error matching curve.ErrRefused; a request
// outside the key's rights is a refusal matching ErrForbidden. WatchCurve
// follows events over CURVE.
package client
