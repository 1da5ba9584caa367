package gateway

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// maxJobID bounds a job ID the gateway asks the broker about: ULIDs have 26
// characters, and longer IDs cannot be known.
const maxJobID = 128

func finished(j protocol.JobInfo) bool {
	return j.State == protocol.JobComplete || j.State == protocol.JobFailed
}

// parseWait reads ?wait=: a Go duration ("30s", "1m30s") or a number of
// seconds ("30"). Absent is 0. Longer than max is max.
func parseWait(q url.Values, max time.Duration) (time.Duration, error) {
	vs, ok := q["wait"]
	if !ok {
		return 0, nil
	}
	s := ""
	if len(vs) > 0 {
		s = vs[len(vs)-1]
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		secs, nerr := strconv.ParseFloat(s, 64)
		if nerr != nil || secs != secs { // NaN
			return 0, badRequest("wait=%q: want a duration such as 30s or 2m, or seconds", s)
		}
		d = time.Duration(min(secs, max.Seconds()) * float64(time.Second))
	}
	if d < 0 {
		return 0, badRequest("wait=%q: must not be negative", s)
	}
	return min(d, max), nil
}

// changeJob answers DELETE /jobs/{id} (cancel) and POST /jobs/{id}/retry:
// the job as it is afterwards; 409 when it is in the wrong state.
func (g *Gateway) changeJob(w http.ResponseWriter, r *http.Request, id string,
	op func(context.Context, string) (protocol.JobInfo, error)) {
	if len(id) > maxJobID {
		writeError(w, http.StatusNotFound, codeNotFound, "no job with this ID is known")
		return
	}
	info, err := op(r.Context(), id)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.NewJobView(info))
}

// retryJob answers POST /jobs/{id}/retry: for an admin any failed job, for
// another token one it submitted (a refusal shows nothing of the job).
func (g *Gateway) retryJob(w http.ResponseWriter, r *http.Request, id string, c *caller) {
	if !c.admin() && len(id) <= maxJobID {
		info, err := g.b.Job(r.Context(), id)
		if err != nil {
			g.fail(w, r, err)
			return
		}
		if !c.mayRead(info) {
			g.forbid(w, r, c)
			return
		}
	}
	g.changeJob(w, r, id, g.b.Retry)
}

// jobOptions reads the job options a submission may carry in headers:
// Zmws-Ttr (a duration such as 30s), Zmws-Retries (a count), Zmws-Priority
// (an integer), Zmws-Delay (a duration) or Zmws-At (an RFC 3339 time).
func jobOptions(h http.Header, req *client.Request) error {
	if err := priorityOption(h, req); err != nil {
		return err
	}
	delay, at := h.Get("Zmws-Delay"), h.Get("Zmws-At")
	if delay != "" && at != "" {
		return badRequest("Zmws-Delay and Zmws-At: give one of them, not both")
	}
	if delay != "" {
		d, err := time.ParseDuration(delay)
		if err != nil || d < 0 || d > protocol.MaxDelay {
			return badRequest("Zmws-Delay %q: want a duration such as 30s or 2h, from 0 to %v", delay, protocol.MaxDelay)
		}
		req.Delay = d
	}
	if at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return badRequest("Zmws-At %q: want an RFC 3339 time such as 2026-12-02T03:00:00Z", at)
		}
		if time.Until(t) > protocol.MaxDelay {
			return badRequest("Zmws-At %q: more than %v ahead", at, protocol.MaxDelay)
		}
		req.At = t
	}
	if v := h.Get("Zmws-Ttr"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return badRequest("Zmws-Ttr %q: want a positive duration such as 30s or 5m", v)
		}
		req.TTR = d
	}
	if v := h.Get("Zmws-Retries"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return badRequest("Zmws-Retries %q: want a number from 0 to 100", v)
		}
		req.Retries = n
	}
	return nil
}

// priorityOption reads Zmws-Priority, which sync and async submissions may
// carry.
func priorityOption(h http.Header, req *client.Request) error {
	v := h.Get("Zmws-Priority")
	if v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return badRequest("Zmws-Priority %q: want an integer from %d to %d", v, math.MinInt32, math.MaxInt32)
	}
	req.Priority = int(n)
	return nil
}

// syncOptions reads the job options a sync submission may carry: its
// priority. A sync job cannot wait for a time: its caller waits for it.
func syncOptions(h http.Header, req *client.Request) error {
	for _, name := range []string{"Zmws-Delay", "Zmws-At"} {
		if h.Get(name) != "" {
			return badRequest("%s: a synchronous job cannot be delayed; submit it with POST /NAME for a job ID", name)
		}
	}
	return priorityOption(h, req)
}

// serveJob answers GET /jobs/{id}: the job's state, and with ?wait= it first
// waits for the job to finish (or the wait to end; the answer is then the
// state at that time, still 200). A caller whose rights do not cover the
// job's service gets 403, before any wait.
func (g *Gateway) serveJob(w http.ResponseWriter, r *http.Request, id string, c *caller) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		g.fail(w, r, badRequest("malformed query string: %v", err))
		return
	}
	wait, err := parseWait(q, g.cfg.MaxWait)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	if len(id) > maxJobID {
		writeError(w, http.StatusNotFound, codeNotFound, "no job with this ID is known")
		return
	}
	info, err := g.b.Job(r.Context(), id)
	if err == nil && !c.mayRead(info) {
		g.forbid(w, r, c)
		return
	}
	if err == nil && wait > 0 && !finished(info) {
		// A long wait outlives ReadTimeout; see serveSync.
		http.NewResponseController(w).SetReadDeadline(time.Time{})
		info, err = g.waitJob(r.Context(), id, wait, info)
	}
	if err != nil {
		g.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.NewJobView(info))
}

// waitJob waits until job id has finished or wait has passed, and returns
// its latest state. It wakes when the broker announces the job finished
// (Backend.WatchJob) and, in case that announcement was missed, re-checks
// every Config.Recheck. It starts watching before it looks again, so an end
// between the caller's look and this one is not missed.
func (g *Gateway) waitJob(ctx context.Context, id string, wait time.Duration, last protocol.JobInfo) (protocol.JobInfo, error) {
	done, stop := g.b.WatchJob(id)
	defer stop()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(g.cfg.Recheck)
	defer tick.Stop()
	for {
		info, err := g.b.Job(ctx, id)
		if err != nil {
			return last, err
		}
		if finished(info) {
			return info, nil
		}
		last = info
		select {
		case <-done:
			done = nil // closed for good: from now on, the ticker
		case <-tick.C:
		case <-deadline.C:
			return last, nil
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
}
