package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
)

// Outcome fields of a synchronous job: ordinary headers when the job ended
// before any output was sent, trailers once output has started.
const (
	HeaderStatus   = "Zmws-Status"    // COMPLETE or FAIL
	HeaderExitCode = "Zmws-Exit-Code" // when the worker reported one
	HeaderJobID    = "Zmws-Job-Id"
	HeaderCode     = "Zmws-Code"  // why it failed: job_failed, worker_lost, shutdown, ...
	HeaderError    = "Zmws-Error" // the reason, for people (one line, at most maxErrorHeader bytes)
)

// Values of HeaderStatus.
const (
	StatusComplete = "COMPLETE"
	StatusFail     = "FAIL"
)

// maxErrorHeader caps the Zmws-Error field.
const maxErrorHeader = 1024

// trailers is the Trailer header of a streamed response.
var trailers = strings.Join([]string{HeaderStatus, HeaderExitCode, HeaderJobID, HeaderCode, HeaderError}, ", ")

// serveSync runs a synchronous job and streams its output. The status line
// is sent with the first output: 200, then each partial is flushed as it
// arrives, and the outcome follows in trailers. A job that ends before any
// output was sent gets its outcome in headers instead: 200 when it
// completed, a JSON error (502, or 503 for shutdown) when it failed.
func (g *Gateway) serveSync(w http.ResponseWriter, r *http.Request, service string, c *caller) {
	defer g.m.syncStarted()()
	req, err := g.readRequest(w, r)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	if err := syncOptions(r.Header, &req); err != nil {
		g.fail(w, r, err)
		return
	}
	req.Owner = c.owner()
	rc := http.NewResponseController(w)
	// The body is read: lift ReadTimeout's deadline, or net/http's
	// background read would time out and cancel r.Context() mid-stream.
	rc.SetReadDeadline(time.Time{})

	started := false
	write := func(p []byte) error {
		if !started {
			h := w.Header()
			setStreamHeaders(h)
			h.Set("Trailer", trailers)
			w.WriteHeader(http.StatusOK)
			started = true
		}
		// Bound each write, not the stream: a reader that stops reading is
		// cut off, a slow job is not. Unsupported on a recorder: ignored.
		rc.SetWriteDeadline(time.Now().Add(chunkWriteTimeout))
		if _, err := w.Write(p); err != nil {
			return err
		}
		return rc.Flush()
	}
	begin := time.Now()
	res, err := g.b.Call(r.Context(), service, req, write)
	if err != nil {
		if !started {
			g.fail(w, r, err)
			return
		}
		// Output started: only the trailers can say it went wrong.
		e := g.classify(err)
		g.log.Debug().Err(err).Str(logging.KeyService, service).Msg("sync stream broken")
		h := w.Header()
		h.Set(HeaderStatus, StatusFail)
		h.Set(HeaderCode, e.code)
		h.Set(HeaderError, headerText(e.msg))
		return
	}
	g.log.Debug().Str(logging.KeyService, service).Str(logging.KeyJob, res.JobID).Str("status", string(res.Status)).
		Dur(logging.KeyElapsed, time.Since(begin)).Msg("sync job done")
	if !started {
		if !res.OK() {
			g.jobFailed(w, res)
			return
		}
		h := w.Header()
		setStreamHeaders(h)
		setOutcome(h, res)
		h.Set("Content-Length", strconv.Itoa(len(res.Output)))
		w.WriteHeader(http.StatusOK)
		w.Write(res.Output)
		return
	}
	if len(res.Output) > 0 {
		if err := write(res.Output); err != nil {
			return
		}
	}
	setOutcome(w.Header(), res)
}

func setStreamHeaders(h http.Header) {
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
}

// setOutcome sets the outcome fields of res in h (headers or trailers).
func setOutcome(h http.Header, res *client.Result) {
	status := StatusComplete
	if !res.OK() {
		status = StatusFail
		code := res.Code
		if code == "" {
			code = protocol.CodeJobFailed
		}
		h.Set(HeaderCode, code)
		if res.Error != "" {
			h.Set(HeaderError, headerText(res.Error))
		}
	}
	h.Set(HeaderStatus, status)
	if res.JobID != "" {
		h.Set(HeaderJobID, res.JobID)
	}
	if res.ExitCode != nil {
		h.Set(HeaderExitCode, strconv.Itoa(*res.ExitCode))
	}
}

// jobFailed answers a synchronous job that failed before any output was
// sent: 503 when the broker stopped, else 502, and a JSON error with the
// job's ID, exit code and output.
func (g *Gateway) jobFailed(w http.ResponseWriter, res *client.Result) {
	status := http.StatusBadGateway
	if res.Code == protocol.CodeShutdown {
		status = http.StatusServiceUnavailable
	}
	body := errorBody{Error: res.Error, Code: res.Code, JobID: res.JobID, ExitCode: res.ExitCode}
	if body.Code == "" {
		body.Code = protocol.CodeJobFailed
	}
	if body.Error == "" {
		body.Error = "the job failed"
	}
	body.Output, body.OutputEncoding = protocol.EncodeOutput(res.Output, false)
	setOutcome(w.Header(), res)
	writeJSON(w, status, body)
}

// headerText makes s safe for a header field: one line of printable text,
// at most maxErrorHeader bytes.
func headerText(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r == unicode.ReplacementChar, r > unicode.MaxASCII, !unicode.IsPrint(r):
			return '?'
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxErrorHeader {
		s = s[:maxErrorHeader]
	}
	return s
}
