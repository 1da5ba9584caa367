package gateway

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// The failed jobs over HTTP: GET /jobs?state=failed lists them a page at a
// time (newest first, from the broker's journal), POST
// /jobs/retry?state=failed&service=S retries one batch of a service's
// (docs/HTTP.md, "Failed jobs"). Any valid token may ask; one that is not
// admin gets its own jobs only, which the gateway asks the broker for on
// its behalf (the owner param, honoured from the trusted gateway).

// failedOptions reads the query of a failed-jobs route: state=failed
// (required), service, since, limit and after (the last of each).
func failedOptions(r *http.Request, c *caller) (client.FailedOptions, error) {
	var opt client.FailedOptions
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return opt, badRequest("malformed query string: %v", err)
	}
	last := func(k string) string {
		if vs := q[k]; len(vs) > 0 {
			return vs[len(vs)-1]
		}
		return ""
	}
	if st := last("state"); st != protocol.JobFailed {
		return opt, badRequest("state=%q: %s %s takes state=failed (the finished jobs of the history are at /SERVER-JOBS)", clip(st), r.Method, r.URL.Path)
	}
	opt.Service, opt.Since, opt.After = last("service"), last("since"), last("after")
	if v := last("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return opt, badRequest("limit %q: want a whole number, 1 or more (the broker caps it; none: its default)", clip(v))
		}
		opt.Limit = n
	}
	if !c.admin() {
		opt.Owner = c.owner()
	}
	return opt, nil
}

// serveFailed answers GET /jobs?state=failed: a page of failed jobs, as
// /jobs/{id} shows a job, and a Link to the next page.
func (g *Gateway) serveFailed(w http.ResponseWriter, r *http.Request, c *caller) {
	opt, err := failedOptions(r, c)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	jobs, next, err := g.b.FailedPage(r.Context(), opt)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	if next != "" {
		w.Header().Set("Link", "</jobs?"+failedQuery(opt, next).Encode()+`>; rel="next"`)
	}
	views := make([]protocol.JobView, 0, len(jobs))
	for _, j := range jobs {
		views = append(views, protocol.NewJobView(j))
	}
	writeJSON(w, http.StatusOK, views)
}

// failedQuery is the query of the page or batch after next.
func failedQuery(opt client.FailedOptions, next string) url.Values {
	q := url.Values{"state": {protocol.JobFailed}, "after": {next}}
	if opt.Service != "" {
		q.Set("service", opt.Service)
	}
	if opt.Since != "" {
		q.Set("since", opt.Since)
	}
	if opt.Limit > 0 {
		q.Set("limit", strconv.Itoa(opt.Limit))
	}
	return q
}

// retryFailedView is the answer to POST /jobs/retry: the broker's report
// and, when more failed jobs may follow, the cursor of the next batch.
type retryFailedView struct {
	protocol.RetryReport
	Next string `json:"next,omitempty"`
}

// serveRetryFailed answers POST /jobs/retry?state=failed&service=S: one
// batch (at most 1,000) of the service's failed jobs queued again; the
// next batch is asked for with after=NEXT (also in a Link header).
func (g *Gateway) serveRetryFailed(w http.ResponseWriter, r *http.Request, c *caller) {
	opt, err := failedOptions(r, c)
	if err == nil && opt.Service == "" {
		err = badRequest("service: POST /jobs/retry needs service=S, the service whose failed jobs to retry")
	}
	if err != nil {
		g.fail(w, r, err)
		return
	}
	rep, next, err := g.b.RetryFailed(r.Context(), opt)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	if next != "" {
		w.Header().Set("Link", "</jobs/retry?"+failedQuery(opt, next).Encode()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, retryFailedView{RetryReport: rep, Next: next})
}
