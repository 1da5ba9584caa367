package client

import (
	"errors"

	"github.com/zmws/zmws/protocol"
)

// Errors returned by a Client. Refusals by the broker are *Error values that
// match ErrUnknownService, ErrQueueFull, ErrNotFound or ErrBadRequest under
// errors.Is; the others are wrapped with the operation.
var (
	// ErrUnknownService: no worker has ever offered the service.
	ErrUnknownService = errors.New("client: unknown service")
	// ErrQueueFull: the service's queue is at its bound; try again later.
	ErrQueueFull = errors.New("client: queue full")
	// ErrNotFound: SERVER-JOB knows no such job (or no longer retains it).
	ErrNotFound = errors.New("client: not found")
	// ErrBadRequest: the broker found the request malformed.
	ErrBadRequest = errors.New("client: bad request")
	// ErrConflict: the job is in the wrong state (cancel a finished job,
	// retry one that did not fail).
	ErrConflict = errors.New("client: conflict")
	// ErrStoreUnavailable: the broker's job store failed; the job was not
	// accepted.
	ErrStoreUnavailable = errors.New("client: job store unavailable")
	// ErrForbidden: the client's key may not do this (submit to the
	// service, or an admin operation).
	ErrForbidden = errors.New("client: forbidden")

	// ErrTimeout: no reply came within Config.Timeout (on every attempt).
	ErrTimeout = errors.New("client: timeout")
	// ErrLost: the broker no longer knows a synchronous job (or request)
	// that was in hand: it restarted (sync jobs are not journaled).
	ErrLost = errors.New("client: job lost by the broker")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client: closed")
	// ErrUnsupported: the request needs a zmws broker and the client
	// speaks plain Majordomo (Config.Protocol, or what auto found): an
	// asynchronous submission, a SERVER-* query, a job's parameters.
	ErrUnsupported = errors.New("client: not possible with a plain Majordomo broker")
	// ErrBadReply: the broker's reply was not what the request calls for
	// (no or malformed meta frame, unexpected status, undecodable JSON).
	ErrBadReply = errors.New("client: malformed reply")
)

// Error is a refusal from the broker: the request was understood and turned
// down, and no job was made. Code is one of the stable protocol.Code*
// values; Message is the broker's explanation, meant for people.
type Error struct {
	Code    string
	Message string
}

// Error returns the broker's message (or the code, if it sent no message).
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return "client: refused: " + e.Code
}

// Is reports whether target is the sentinel for e's code, so that
// errors.Is(err, ErrUnknownService) holds for a refusal with code
// protocol.CodeUnknownService, and likewise for ErrQueueFull, ErrNotFound and
// ErrBadRequest.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnknownService:
		return e.Code == protocol.CodeUnknownService
	case ErrQueueFull:
		return e.Code == protocol.CodeQueueFull
	case ErrNotFound:
		return e.Code == protocol.CodeNotFound
	case ErrBadRequest:
		return e.Code == protocol.CodeBadRequest
	case ErrConflict:
		return e.Code == protocol.CodeConflict
	case ErrStoreUnavailable:
		return e.Code == protocol.CodeStoreUnavailable
	case ErrForbidden:
		return e.Code == protocol.CodeForbidden
	}
	return false
}

// refusal turns the meta frame of a refused (or failed) reply into an *Error.
func refusal(m protocol.Meta) *Error {
	return &Error{Code: m.Code, Message: m.Error}
}
