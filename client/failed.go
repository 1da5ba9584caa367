package client

import (
	"context"
	"fmt"

	"github.com/zmws/zmws/protocol"
)

// FailedOptions select failed jobs for FailedPage and RetryFailed: the
// failed jobs the broker's journal retains (its history without one),
// newest first by finish time. See docs/PROTOCOL.md, "Failed jobs".
type FailedOptions struct {
	// Service keeps one service's jobs; "" all of them.
	Service string
	// Since keeps the jobs that finished at or after an RFC 3339 time, or
	// within a duration before the broker's clock ("1h"); "" all.
	Since string
	// Owner keeps one owner's jobs (an admin's filter; a key that may not
	// administer gets its own jobs only, whatever it says). The gateway
	// says so on behalf of its tokens.
	Owner string
	// Limit and After page, as PageOptions: at most Limit jobs (0: the
	// broker's default, protocol.DefaultJobsPage for a listing,
	// protocol.DefaultRetryBatch for a retry), after the cursor After.
	Limit int
	After string
}

func (o FailedOptions) meta() protocol.Meta {
	p := map[string]string{protocol.ParamState: protocol.JobFailed}
	for k, v := range map[string]string{protocol.ParamService: o.Service, protocol.ParamSince: o.Since, protocol.ParamOwner: o.Owner} {
		if v != "" {
			p[k] = v
		}
	}
	return protocol.Meta{Params: p, Limit: o.Limit, After: o.After}
}

// FailedPage returns one page of failed jobs (SERVER-JOBS with the param
// state=failed) and the cursor of the next page ("" after the last). A
// broker that does not list failed jobs, which answers with its history
// of finished jobs, is an error matching ErrBadReply. FailedPage is resent
// like Query.
func (c *Client) FailedPage(ctx context.Context, opt FailedOptions) ([]protocol.JobInfo, string, error) {
	meta, frames, err := c.queryMeta(ctx, protocol.ServerJobs, c.cfg.Retries, c.timeout(), opt.meta())
	if err != nil {
		return nil, "", err
	}
	jobs, err := decodeJSON[[]protocol.JobInfo](protocol.ServerJobs, frames)
	if err != nil {
		return nil, "", err
	}
	for _, j := range jobs {
		if j.State != protocol.JobFailed {
			return nil, "", fmt.Errorf("query %s: job %s is %s: this broker does not list failed jobs (an older zmwsd): %w", protocol.ServerJobs, j.ID, j.State, ErrBadReply)
		}
	}
	return jobs, meta.Next, nil
}

// RetryFailed queues one batch of failed jobs again (SERVER-RETRY with the
// param state=failed), each as Retry would, and returns what became of
// them and the cursor of the next batch ("" after the last): call it
// again with After set to it to go on. opt.Limit caps the batch
// (protocol.MaxRetryBatch at most). RetryFailed is sent once.
func (c *Client) RetryFailed(ctx context.Context, opt FailedOptions) (protocol.RetryReport, string, error) {
	meta, frames, err := c.queryMeta(ctx, protocol.ServerRetry, 0, c.timeout(), opt.meta())
	if err != nil {
		return protocol.RetryReport{}, "", err
	}
	rep, err := decodeJSON[protocol.RetryReport](protocol.ServerRetry, frames)
	return rep, meta.Next, err
}
