package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// parseParams turns key=value arguments into parameters.
func parseParams(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	params := make(map[string]string, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("parameter %q: want key=value", a)
		}
		params[k] = v
	}
	return params, nil
}

// readInput reads --input: a file, or - for stdin.
func readInput(e *env, path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	if path == "-" {
		return io.ReadAll(e.stdin)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	return b, nil
}

// SubmitCmd queues a job.
type SubmitCmd struct {
	Service   string        `arg:"" help:"Service name."`
	Params    []string      `arg:"" optional:"" help:"Parameters as key=value."`
	Input     string        `help:"File whose contents are the job's input; - for stdin." placeholder:"FILE|-"`
	Key       string        `help:"Idempotency key: resending with the same key means the same job."`
	TTR       time.Duration `name:"ttr" help:"Time-to-run: a job running longer is stopped and queued again (default: the service's)."`
	Retries   int           `help:"Retry the job this many times, with backoff, if it fails (default: the service's)."`
	Priority  int           `help:"Priority: a service's higher priorities run first, first in first out within one (default 0; negative is below it)." placeholder:"N"`
	Delay     time.Duration `help:"Queue the job only after this long (e.g. 30s, 2h; at most a year): until then it is scheduled." placeholder:"DURATION"`
	At        string        `help:"Queue the job only at this RFC 3339 time (e.g. 2026-12-02T03:00:00Z; a time past queues it now)." placeholder:"TIME"`
	EachLine  bool          `help:"Submit one job per line of the input (stdin, or --input): the line is the job's input, or the parameter named by --line-param."`
	LineParam string        `help:"With --each-line: pass each line as this parameter instead of as input." placeholder:"NAME"`
	Quiet     bool          `short:"q" help:"With --each-line: print only the summary, not each job ID."`
	Window    int           `default:"256" help:"With --each-line: submissions in flight at once (1 to 900); more commit more jobs per disk sync on a durable broker."`
	Wait      bool          `help:"With --each-line: then wait until every job has finished, showing how many completed and failed; exit 1 if any failed."`
	Count     int           `help:"With --each-line: the number of lines to expect, for the progress bar's total and ETA (a regular file is counted without it)." placeholder:"N"`
	Progress  string        `default:"auto" enum:"auto,always,plain,never" help:"With --each-line, progress on stderr: auto (a bar on a terminal, else a line every --progress-every), always (a bar), plain (lines), never (the summary only)."`
	// ProgressEvery: plain progress lines are for logs, so a few a minute.
	ProgressEvery time.Duration `default:"5s" help:"With --each-line: how often a plain progress line is written."`
}

func (c *SubmitCmd) Run(e *env) error {
	if name, sync := protocol.SplitSync(c.Service); sync {
		// The library's refusal says to use Call; a person wants the command.
		return fmt.Errorf("%s is a synchronous name: zmws run %s waits for the job and prints its output, zmws submit %s queues it and prints its ID", c.Service, name, name)
	}
	params, err := parseParams(c.Params)
	if err != nil {
		return err
	}
	at, err := c.when()
	if err != nil {
		return err
	}
	if c.EachLine {
		return c.eachLine(e, params, at)
	}
	if c.LineParam != "" || c.Quiet || c.Wait || c.Count != 0 {
		return fmt.Errorf("--line-param, --quiet, --wait and --count go with --each-line")
	}
	input, err := readInput(e, c.Input)
	if err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	id, err := cl.Submit(e.ctx, c.Service, client.Request{Params: params, Input: input, Key: c.Key, TTR: c.TTR, Retries: c.Retries,
		Priority: c.Priority, Delay: c.Delay, At: at})
	if err != nil {
		return err
	}
	if e.cli.Output == "json" {
		return writeJSON(e.stdout, map[string]string{"job_id": id, "service": c.Service})
	}
	_, err = fmt.Fprintln(e.stdout, id)
	return err
}

// when checks --delay and --at and returns the time of --at (zero
// without it).
func (c *SubmitCmd) when() (time.Time, error) {
	switch {
	case c.Delay < 0 || c.Delay > protocol.MaxDelay:
		return time.Time{}, fmt.Errorf("--delay %v: want a duration from 0 to %v", c.Delay, protocol.MaxDelay)
	case c.Delay > 0 && c.At != "":
		return time.Time{}, fmt.Errorf("--delay and --at: give one of them, not both")
	case c.At == "":
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, c.At)
	if err != nil {
		return time.Time{}, fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-12-02T03:00:00Z", c.At)
	}
	return t, nil
}

// exitTimeout is run's exit status when --timeout passes, as timeout(1)'s.
const exitTimeout = 124

// RunCmd runs a job synchronously.
type RunCmd struct {
	Service string   `arg:"" help:"Service name (SYNC- is added)."`
	Params  []string `arg:"" optional:"" help:"Parameters as key=value."`
	Input   string   `help:"File whose contents are the job's input; - for stdin. Default: stdin when it is not a terminal." placeholder:"FILE|-"`
	// Priority orders the job among its service's queued ones.
	Priority int `help:"Priority: a service's higher priorities run first, first in first out within one (default 0; negative is below it)." placeholder:"N"`
	// Liveness: see client.Config.Liveness.
	Liveness time.Duration `help:"How long to wait without a word of the job before asking the broker about it: a job still in hand is waited for, one the broker lost (it restarted) or a broker that does not answer ends the run with an error." default:"7.5s"`
}

func (c *RunCmd) Run(e *env) error {
	params, err := parseParams(c.Params)
	if err != nil {
		return err
	}
	src := c.Input
	if src == "" && !e.stdinTerminal && e.stdin != nil {
		src = "-"
	}
	input, err := readInput(e, src)
	if err != nil {
		return err
	}
	// --timeout bounds the whole run; each answer the client waits for
	// (a probe of a quiet job) is bounded by the shorter of it and 5 s.
	ctx, answer := e.ctx, client.DefaultTimeout
	if t := e.cli.Timeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
		answer = min(t, answer)
	}
	cl, err := e.clientWith(client.Config{Timeout: answer, Liveness: c.Liveness})
	if err != nil {
		return err
	}
	defer cl.Close()
	jobID := ""
	res, err := cl.CallWith(ctx, c.Service, client.Request{Params: params, Input: input, Priority: c.Priority}, client.CallHooks{
		OnAccepted: func(a client.Accepted) {
			jobID = a.JobID
			if a.NoWorker {
				fmt.Fprintf(e.stderr, "zmws: job %s: %s\n", a.JobID, a.Notice)
			}
		},
		OnPartial: func(chunk []byte) error {
			_, err := e.stdout.Write(chunk)
			return err
		},
	})
	if errors.Is(err, context.DeadlineExceeded) && e.ctx.Err() == nil {
		if jobID == "" {
			fmt.Fprintf(e.stderr, "zmws: %s: no answer within --timeout %v\n", c.Service, e.cli.Timeout)
		} else {
			fmt.Fprintf(e.stderr, "zmws: job %s did not finish within --timeout %v; it runs on (zmws job %s --wait follows it)\n",
				jobID, e.cli.Timeout, jobID)
		}
		return exitError{exitTimeout}
	}
	if err != nil {
		return err
	}
	if _, err := e.stdout.Write(res.Output); err != nil {
		return err
	}
	if res.OK() {
		return nil
	}
	if res.JobID == "" { // a plain broker gives none
		fmt.Fprintf(e.stderr, "zmws: %s failed (%s): %s\n", c.Service, res.Code, res.Error)
	} else {
		fmt.Fprintf(e.stderr, "zmws: job %s failed (%s): %s\n", res.JobID, res.Code, res.Error)
	}
	if res.ExitCode != nil && *res.ExitCode > 0 && *res.ExitCode < 256 {
		return exitError{*res.ExitCode}
	}
	return exitError{1}
}

// JobCmd shows one job.
type JobCmd struct {
	ID   string        `arg:"" help:"Job ID."`
	Wait bool          `help:"Wait until the job has finished."`
	For  time.Duration `help:"With --wait: give up after this long (0: no limit)." default:"0"`
}

func (c *JobCmd) Run(e *env) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := e.ctx
	var deadline time.Time
	if c.For > 0 {
		deadline = time.Now().Add(c.For)
	}
	for {
		j, err := cl.Job(ctx, c.ID)
		if err != nil {
			return err
		}
		finished := j.State == protocol.JobComplete || j.State == protocol.JobFailed
		if finished || !c.Wait || (!deadline.IsZero() && time.Now().After(deadline)) {
			if e.cli.Output == "json" {
				return writeJSON(e.stdout, protocol.NewJobView(j))
			}
			return printJob(e.stdout, j)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printJob(w io.Writer, j protocol.JobInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("id", j.ID)
	row("service", j.Service)
	row("state", j.State)
	if j.Priority != 0 {
		row("priority", fmt.Sprint(j.Priority))
	}
	row("not before", stamp(j.NotBefore))
	row("created", stamp(&j.Created))
	row("started", stamp(j.Started))
	row("finished", stamp(j.Finished))
	row("attempts", fmt.Sprint(j.Attempts))
	row("worker", j.Worker)
	if j.ExitCode != nil {
		row("exit code", fmt.Sprint(*j.ExitCode))
	}
	row("code", j.Code)
	row("error", j.Error)
	if len(j.Params) > 0 {
		p, _ := json.Marshal(j.Params)
		row("params", string(p))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(j.Output) > 0 {
		fmt.Fprintln(w, "output:")
		w.Write(j.Output)
		if j.Output[len(j.Output)-1] != '\n' {
			fmt.Fprintln(w)
		}
		if j.OutputTruncated {
			fmt.Fprintln(w, "(output truncated)")
		}
	}
	return nil
}

// CancelCmd cancels a job.
type CancelCmd struct {
	ID string `arg:"" help:"Job ID."`
}

func (c *CancelCmd) Run(e *env) error {
	return jobChange(e, c.ID, (*client.Client).Cancel)
}

// RetryCmd retries a failed job, or with --failed every failed job of a
// service (failed.go).
type RetryCmd struct {
	ID      string `arg:"" optional:"" help:"Job ID of a failed job (or --failed)."`
	Failed  bool   `help:"Retry every failed job of --service the journal retains (or the broker's history, without one), a batch of at most 1000 at a time; non-admin keys retry their own jobs only."`
	Service string `help:"With --failed: the service whose failed jobs to retry." placeholder:"S"`
	Since   string `help:"With --failed: only the jobs that failed within this duration (1h) or since this RFC 3339 time." placeholder:"D"`
}

func (c *RetryCmd) Run(e *env) error {
	if c.Failed {
		return c.retryFailed(e)
	}
	switch {
	case c.ID == "":
		return fmt.Errorf("retry: give a job ID, or --failed --service S")
	case c.Service != "" || c.Since != "":
		return fmt.Errorf("--service and --since go with --failed, not a job ID")
	}
	return jobChange(e, c.ID, (*client.Client).Retry)
}

// jobChange runs a cancel or retry and shows the job after it.
func jobChange(e *env, id string, op func(*client.Client, context.Context, string) (protocol.JobInfo, error)) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	j, err := op(cl, e.ctx, id)
	if err != nil {
		return err
	}
	if e.cli.Output == "json" {
		return writeJSON(e.stdout, protocol.NewJobView(j))
	}
	return printJob(e.stdout, j)
}

// JobsCmd lists jobs.
type JobsCmd struct {
	Active  bool   `help:"Running jobs instead of finished ones." xor:"which"`
	Queued  bool   `help:"Queued and scheduled jobs per service instead of finished ones." xor:"which"`
	Failed  bool   `help:"Failed jobs, newest first: every one the journal retains, not only the broker's history (non-admin keys see their own)." xor:"which"`
	Service string `help:"With --failed: only this service's jobs." placeholder:"S"`
	Since   string `help:"With --failed: only the jobs that failed within this duration (1h) or since this RFC 3339 time." placeholder:"D"`
	Paging
}

func (c *JobsCmd) Run(e *env) error {
	if (c.Active || c.Queued) && (c.Limit != 0 || c.After != "") {
		return fmt.Errorf("--limit and --after go with the finished jobs, not --active or --queued")
	}
	if c.Failed {
		return c.listFailed(e)
	}
	if c.Service != "" || c.Since != "" {
		return fmt.Errorf("--service and --since go with --failed")
	}
	if c.Queued {
		return list(e, (*client.Client).Queue, []string{"SERVICE", "QUEUED", "OLDEST", "SINCE", "SCHEDULED", "NEXT"},
			func(q protocol.QueueInfo) []string {
				next := ""
				if len(q.ScheduledJobs) > 0 {
					next = stamp(&q.ScheduledJobs[0].At)
				}
				return []string{q.Service, fmt.Sprint(q.Queued), q.Oldest, stamp(&q.Since), fmt.Sprint(q.Scheduled), next}
			})
	}
	jobs := fetchPages(c.Paging, e, "jobs", (*client.Client).JobsPage, protocol.MaxJobsPage)
	if c.Active {
		jobs = (*client.Client).Active
	}
	return list(e, jobs, []string{"ID", "SERVICE", "STATE", "ATTEMPTS", "STARTED", "FINISHED", "EXIT", "ERROR"},
		func(j protocol.JobInfo) []string {
			exit := ""
			if j.ExitCode != nil {
				exit = fmt.Sprint(*j.ExitCode)
			}
			return []string{j.ID, j.Service, j.State, fmt.Sprint(j.Attempts), stamp(j.Started), stamp(j.Finished), exit, oneLine(j.Error)}
		})
}

// WorkersCmd lists workers.
type WorkersCmd struct {
	All bool `help:"Also the workers that left or died (the last ones of each service the broker keeps: zmwsd --keep-gone), with when and why they went."`
}

func (c *WorkersCmd) Run(e *env) error {
	fetch, header := (*client.Client).Workers, []string{"IDENTITY", "SERVICE", "STATE", "JOB", "COMPLETED", "FAILED", "PROTOCOL", "HOST", "LAST HEARTBEAT"}
	if c.All {
		fetch, header = (*client.Client).WorkersWithGone, append(header, "GONE", "WHY")
	}
	return list(e, fetch, header, func(w protocol.WorkerInfo) []string {
		host := ""
		if w.Details != nil {
			host = w.Details.Host
			if w.Details.PID != 0 {
				host += fmt.Sprintf(" (pid %d)", w.Details.PID)
			}
		}
		state := w.State
		if w.Draining {
			state += " (draining)"
		}
		row := []string{w.Identity, w.Service, state, w.Job, fmt.Sprint(w.Completed), fmt.Sprint(w.Failed), w.Protocol, host, stamp(&w.LastHeartbeat)}
		if c.All {
			row = append(row, stamp(&w.GoneAt), w.GoneWhy)
		}
		return row
	})
}

// ServicesCmd lists services (the default) or forgets one.
type ServicesCmd struct {
	List   ServicesListCmd   `cmd:"" default:"withargs" help:"List every service a worker ever offered (the default)."`
	Forget ServicesForgetCmd `cmd:"" help:"Forget a service that has no worker and no job (an admin operation)."`
}

// ServicesForgetCmd forgets a service.
type ServicesForgetCmd struct {
	Name string `arg:"" help:"Service name."`
}

func (c *ServicesForgetCmd) Run(e *env) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ForgetService(e.ctx, c.Name); err != nil {
		return fmt.Errorf("forget %s: %w", c.Name, err)
	}
	fmt.Fprintf(e.stderr, "service %s forgotten\n", c.Name)
	return nil
}

// ServicesListCmd lists services.
type ServicesListCmd struct {
	Paging
}

func (c *ServicesListCmd) Run(e *env) error {
	return list(e, fetchPages(c.Paging, e, "services", (*client.Client).ServicesPage, protocol.MaxServicesPage), []string{"SERVICE", "STATE", "IDLE", "BUSY", "QUEUED", "ACTIVE", "COMPLETED", "FAILED", "LAST SEEN"},
		func(s protocol.ServiceInfo) []string {
			state := "running"
			switch {
			case s.Draining:
				state = "draining"
			case s.Paused:
				state = "paused"
			}
			return []string{s.Name, state, fmt.Sprint(s.WorkersIdle), fmt.Sprint(s.WorkersBusy), fmt.Sprint(s.Queued), fmt.Sprint(s.Active),
				fmt.Sprint(s.Completed), fmt.Sprint(s.Failed), stamp(&s.LastSeen)}
		})
}

// list fetches a listing from the broker and prints it as JSON (-o json) or
// as a table under header.
func list[T any](e *env, fetch func(*client.Client, context.Context) ([]T, error), header []string, row func(T) []string) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	items, err := fetch(cl, e.ctx)
	if err != nil {
		return err
	}
	if e.cli.Output == "json" {
		return writeJSON(e.stdout, items)
	}
	return table(e.stdout, header, len(items), func(i int) []string { return row(items[i]) })
}

// WatchCmd follows events.
type WatchCmd struct {
	Events []string `arg:"" optional:"" help:"Event names to follow (queued, started, completed, failed, requeued); default all."`
	JSON   bool     `help:"Print each event as a JSON line."`
}

func (c *WatchCmd) Run(e *env) error {
	keys, err := e.curve()
	if err != nil {
		return err
	}
	return client.WatchCurve(e.ctx, e.cli.Events, keys, c.Events, func(ev protocol.Event) error {
		if c.JSON || e.cli.Output == "json" {
			return json.NewEncoder(e.stdout).Encode(ev)
		}
		line := fmt.Sprintf("%s %-9s %s %s", ev.Time.Local().Format("15:04:05.000"), ev.Event, ev.Job, ev.Service)
		if ev.Attempt > 1 {
			line += fmt.Sprintf(" attempt=%d", ev.Attempt)
		}
		if ev.Worker != "" {
			line += " worker=" + ev.Worker
		}
		if ev.ExitCode != nil {
			line += fmt.Sprintf(" exit=%d", *ev.ExitCode)
		}
		if ev.Elapsed > 0 {
			line += fmt.Sprintf(" elapsed=%.3fs", ev.Elapsed)
		}
		if ev.Error != "" {
			line += fmt.Sprintf(" error=%q", oneLine(ev.Error))
		}
		_, err := fmt.Fprintln(e.stdout, line)
		return err
	})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // as the gateway: output is not for a web page
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under a header, aligned.
func table(w io.Writer, header []string, n int, row func(int) []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for i := 0; i < n; i++ {
		fmt.Fprintln(tw, strings.Join(row(i), "\t"))
	}
	return tw.Flush()
}

func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05.000")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
