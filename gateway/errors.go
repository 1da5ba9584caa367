package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// Error codes the gateway adds to the broker's (protocol.Code*) in JSON
// error bodies. Stable: clients key on them.
const (
	codeNotFound         = protocol.CodeNotFound // no such path or job
	codeBadRequest       = protocol.CodeBadRequest
	codeTooLarge         = "too_large"          // body past Config.MaxBody
	codeRequestTimeout   = "request_timeout"    // the body did not arrive within Config.ReadTimeout (408)
	codeMethodNotAllowed = "method_not_allowed" // see the Allow header
	codeUnavailable      = "unavailable"        // the broker did not answer in time
	codeBusy             = "busy"               // --http-max-sync synchronous requests in flight
	codeJobLost          = "job_lost"           // the broker lost a sync job (it restarted): submit it again
	codeBadGateway       = "bad_gateway"        // the broker's reply made no sense
	codeInternal         = "internal"           // a bug or a socket failure; see the log
	codeUnauthorized     = "unauthorized"       // no valid bearer token (401)
	codeForbidden        = "forbidden"          // a valid token without the rights (403)
	codeWrongHost        = "wrong_host"         // Host is not a name of the gateway (421)
	codeCrossOrigin      = "cross_origin"       // a page of another origin may not do this (403)
)

// apiError is an error with the HTTP status and code it is answered with.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, codeBadRequest, fmt.Sprintf(format, args...)}
}

// classify maps an error from reading a request or from the Backend to the
// status and code it is answered with. Input from users never maps to 500.
func (g *Gateway) classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		msg := ce.Message
		if msg == "" {
			msg = "refused by the broker: " + ce.Code
		}
		switch ce.Code {
		case protocol.CodeUnknownService, protocol.CodeNotFound:
			return &apiError{http.StatusNotFound, ce.Code, msg}
		case protocol.CodeConflict:
			return &apiError{http.StatusConflict, ce.Code, msg}
		case protocol.CodeQueueFull, protocol.CodeRateLimited:
			return &apiError{http.StatusTooManyRequests, ce.Code, msg}
		case protocol.CodeBadRequest:
			return &apiError{http.StatusBadRequest, ce.Code, msg}
		case protocol.CodeShutdown, protocol.CodeStoreUnavailable:
			return &apiError{http.StatusServiceUnavailable, ce.Code, msg}
		}
		return &apiError{http.StatusBadGateway, ce.Code, msg}
	}
	switch {
	case errors.Is(err, client.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusServiceUnavailable, codeUnavailable, "the broker did not answer in time"}
	case errors.Is(err, client.ErrClosed), errors.Is(err, ErrClosed):
		return &apiError{http.StatusServiceUnavailable, protocol.CodeShutdown, "the gateway is shutting down"}
	case errors.Is(err, ErrBusy):
		return &apiError{http.StatusServiceUnavailable, codeBusy, "too many synchronous requests in flight; try again"}
	case errors.Is(err, client.ErrLost):
		return &apiError{http.StatusServiceUnavailable, codeJobLost, "the broker lost the job (it restarted before the job ended); submit it again"}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &apiError{http.StatusServiceUnavailable, codeUnavailable, "request cancelled"}
	case errors.Is(err, client.ErrBadReply):
		return &apiError{http.StatusBadGateway, codeBadGateway, "the broker's reply could not be understood"}
	}
	return &apiError{http.StatusInternalServerError, codeInternal, "internal error; see the zmwsd log"}
}

// fail answers a request with the JSON error for err.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := g.classify(err)
	switch {
	case e.status >= 500 && !errors.Is(err, context.Canceled):
		g.log.Warn().Err(err).Str("path", r.URL.Path).Int("status", e.status).Msg("request failed")
	default:
		g.log.Debug().Err(err).Str("path", r.URL.Path).Int("status", e.status).Msg("request refused")
	}
	if e.status == http.StatusRequestTimeout {
		// The rest of a late body may still come: not on this connection.
		w.Header().Set("Connection", "close")
	}
	if e.status == http.StatusTooManyRequests || e.code == codeBusy {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, e.status, e.code, e.msg)
}

// errorBody is the JSON of every error answer. Job fields are set for a
// synchronous job that failed before it produced output.
type errorBody struct {
	Error          string  `json:"error"`
	Code           string  `json:"code"`
	JobID          string  `json:"job_id,omitempty"`
	ExitCode       *int    `json:"exit_code,omitempty"`
	Output         *string `json:"output,omitempty"`
	OutputEncoding string  `json:"output_encoding,omitempty"`
}

// clip bounds a peer's string quoted in an error or a log line.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // a write error means the client left
}

// newStdLogger routes net/http's own complaints (bad TLS, panics, ...) to
// the gateway's log at warn level.
func newStdLogger(l zerolog.Logger) *log.Logger {
	return log.New(stdWriter{l.With().Str("component", "http").Logger()}, "", 0)
}

type stdWriter struct{ l zerolog.Logger }

func (w stdWriter) Write(p []byte) (int, error) {
	w.l.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
