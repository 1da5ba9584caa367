package main

import (
	"context"
	"fmt"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// checkSince checks --since before it goes to the broker: a positive
// duration or an RFC 3339 time, as the broker reads it.
func checkSince(since string) error {
	if since == "" {
		return nil
	}
	if _, err := time.Parse(time.RFC3339Nano, since); err == nil {
		return nil
	}
	if d, err := time.ParseDuration(since); err == nil && d >= 0 {
		return nil
	}
	return fmt.Errorf("--since %q: want a duration such as 1h or 30m, or an RFC 3339 time such as 2026-01-02T15:04:05Z", since)
}

// listFailed answers zmws jobs --failed: the failed jobs, a page at a time.
func (c *JobsCmd) listFailed(e *env) error {
	if err := checkSince(c.Since); err != nil {
		return err
	}
	page := func(cl *client.Client, ctx context.Context, opt client.PageOptions) ([]protocol.JobInfo, string, error) {
		return cl.FailedPage(ctx, client.FailedOptions{Service: c.Service, Since: c.Since, Limit: opt.Limit, After: opt.After})
	}
	return list(e, fetchPages(c.Paging, e, "failed jobs", page, protocol.MaxJobsPage),
		[]string{"ID", "SERVICE", "FINISHED", "CODE", "ERROR", "EXIT", "ATTEMPTS"},
		func(j protocol.JobInfo) []string {
			exit := ""
			if j.ExitCode != nil {
				exit = fmt.Sprint(*j.ExitCode)
			}
			return []string{j.ID, j.Service, stamp(j.Finished), j.Code, oneLine(j.Error), exit, fmt.Sprint(j.Attempts)}
		})
}

// retryFailed answers zmws retry --failed: batch after batch, until the
// broker gives no next cursor, then what became of them all.
func (c *RetryCmd) retryFailed(e *env) error {
	switch {
	case c.ID != "":
		return fmt.Errorf("retry: give a job ID or --failed, not both")
	case c.Service == "":
		return fmt.Errorf("--failed needs --service S: the service whose failed jobs to retry")
	}
	if err := checkSince(c.Since); err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	// The refusals kept, to show; past maxShown only counted.
	const maxShown = 10_000
	refused := 0
	total := protocol.RetryReport{Jobs: []string{}, Refused: []protocol.RetryRefusal{}}
	opt := client.FailedOptions{Service: c.Service, Since: c.Since}
	for {
		rep, next, err := cl.RetryFailed(e.ctx, opt)
		if err != nil {
			if total.Requeued > 0 {
				fmt.Fprintf(e.stderr, "zmws: %d failed jobs of %s were queued again before this error\n", total.Requeued, c.Service)
			}
			return err
		}
		total.Requeued += rep.Requeued
		total.Jobs = append(total.Jobs, rep.Jobs...)
		refused += len(rep.Refused)
		total.Refused = append(total.Refused, rep.Refused[:min(len(rep.Refused), maxShown-len(total.Refused))]...)
		total.Stopped = rep.Stopped
		if next == "" {
			break
		}
		if next == opt.After {
			return fmt.Errorf("the broker gave cursor %q for the batch after %q again: %w", next, opt.After, client.ErrBadReply)
		}
		opt.After = next
	}
	if e.cli.Output == "json" {
		if err := writeJSON(e.stdout, total); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "%d failed jobs of %s queued again", total.Requeued, c.Service)
		if refused > 0 {
			fmt.Fprintf(e.stdout, "; %d refused:", refused)
		}
		fmt.Fprintln(e.stdout)
		for _, r := range total.Refused {
			fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", r.ID, r.Code, oneLine(r.Error))
		}
		if refused > len(total.Refused) {
			fmt.Fprintf(e.stdout, "(and %d more refused)\n", refused-len(total.Refused))
		}
	}
	if total.Stopped != "" {
		return fmt.Errorf("retry --failed stopped: %s", total.Stopped)
	}
	return nil
}
