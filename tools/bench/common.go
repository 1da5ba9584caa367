package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/worker"
)

func numCPU() int { return runtime.NumCPU() }

// payload is the anchors' job input; want is what rev (and the echo
// workers) make of it.
var (
	payload = []byte("hello zmws 12345\n")
	want    = string(reverse(payload))
)

// reverse mimics rev on one line: the bytes before a trailing newline are
// reversed, the newline stays last (as the anchors' gmbench worker does).
func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		out[n] = '\n'
	}
	for i := range n {
		out[n-1-i] = b[i]
	}
	return out
}

// echoHandler answers every job with its reversed input (no process).
var echoHandler = worker.HandlerFunc(func(_ context.Context, j *worker.Job) ([]byte, error) {
	var in []byte
	if len(j.Input) > 0 {
		in = j.Input[0]
	}
	return reverse(in), nil
})

// startEchoWorkers runs k echo worker slots for svc (one worker.Worker with
// Concurrency k: k broker connections). stop waits until they are gone.
func startEchoWorkers(ctx context.Context, ep, svc string, k int) (stop func(), err error) {
	return startEchoWorkersPrefetch(ctx, ep, svc, k, 0)
}

// startEchoWorkersPrefetch is startEchoWorkers with worker.Config.Prefetch.
func startEchoWorkersPrefetch(ctx context.Context, ep, svc string, k, prefetch int) (stop func(), err error) {
	w, err := worker.New(worker.Config{Brokers: []string{ep}, Service: svc, Handler: echoHandler, Concurrency: k, Grace: time.Second, Prefetch: prefetch})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	return func() { cancel(); <-done }, nil
}

// newClients opens n clients of the broker at ep.
func newClients(ep string, n int) ([]*client.Client, error) {
	cs := make([]*client.Client, n)
	for i := range cs {
		c, err := client.New(client.Config{Broker: ep, Timeout: 20 * time.Second, Retries: -1})
		if err != nil {
			closeClients(cs[:i])
			return nil, err
		}
		cs[i] = c
	}
	return cs, nil
}

func closeClients(cs []*client.Client) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// waitWorkers waits until svcs (all services when nil) have n live workers
// in total.
func waitWorkers(ctx context.Context, q *client.Client, svcs map[string]bool, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	got := 0
	for time.Now().Before(deadline) {
		ss, err := q.Services(ctx)
		if err == nil {
			got = 0
			for _, s := range ss {
				if svcs == nil || svcs[s.Name] {
					got += s.WorkersIdle + s.WorkersBusy
				}
			}
			if got >= n {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%d of %d workers registered after %v", got, n, timeout)
}

// finished is the number of jobs of svcs (all when nil) that have completed
// or failed, and how many are queued or active.
func finished(ctx context.Context, q *client.Client, svcs map[string]bool) (done uint64, open int, err error) {
	ss, err := q.Services(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, s := range ss {
		if svcs == nil || svcs[s.Name] {
			done += s.Completed + s.Failed
			open += s.Queued + s.Active
		}
	}
	return done, open, nil
}

// waitFinished polls every poll until target jobs of svcs have finished.
func waitFinished(ctx context.Context, q *client.Client, svcs map[string]bool, target uint64, poll time.Duration, deadline time.Time) (time.Time, error) {
	for {
		done, open, err := finished(ctx, q, svcs)
		if err != nil {
			return time.Time{}, err
		}
		if done >= target {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("timeout: %d of %d jobs finished, %d open", done, target, open)
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		time.Sleep(poll)
	}
}

// parallel runs jobs jobs on len(workers) goroutines: each calls one(g, i)
// for the next free index i; the per-job latencies make the run.
func parallel(ctx context.Context, g int, jobs int, deadline time.Time, one func(g, i int) error) (run, error) {
	lat := make([]time.Duration, jobs)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for k := range g {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= jobs || time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				s := time.Now()
				if err := one(k, i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = time.Since(s)
			}
		})
	}
	wg.Wait()
	el := time.Since(t0)
	if e := firstErr.Load(); e != nil {
		return run{}, e.(error)
	}
	if ctx.Err() != nil {
		return run{}, ctx.Err()
	}
	r := newRun(lat, el)
	if r.Jobs < jobs {
		return r, fmt.Errorf("only %d of %d jobs before the deadline", r.Jobs, jobs)
	}
	return r, nil
}

var errBadOutput = errors.New("bad output")

// syncCall is one sync job through the Go client, output checked.
func syncCall(ctx context.Context, c *client.Client, svc string) error {
	res, err := c.Call(ctx, svc, client.Request{Input: payload}, nil)
	if err != nil {
		return err
	}
	if !res.OK() {
		return fmt.Errorf("job %s %s: %s %s", res.JobID, res.Status, res.Code, res.Error)
	}
	if string(res.Output) != want {
		return fmt.Errorf("%w %q, want %q", errBadOutput, res.Output, want)
	}
	return nil
}

// syncRun: the clients call svcOf(i) one job at a time each.
func syncRun(ctx context.Context, cs []*client.Client, svcOf func(i int) string, jobs int, deadline time.Time) (run, error) {
	return parallel(ctx, len(cs), jobs, deadline, func(g, i int) error { return syncCall(ctx, cs[g], svcOf(i)) })
}

// asyncRun: the clients submit jobs to svcOf(i), each waiting for its job
// ID (the submit phase), then q polls until all have finished.
func asyncRun(ctx context.Context, cs []*client.Client, q *client.Client, svcs map[string]bool, svcOf func(i int) string, jobs int, poll time.Duration, deadline time.Time) (run, error) {
	base, _, err := finished(ctx, q, svcs)
	if err != nil {
		return run{}, err
	}
	t0 := time.Now()
	r, err := parallel(ctx, len(cs), jobs, deadline, func(g, i int) error {
		_, err := cs[g].Submit(ctx, svcOf(i), client.Request{Input: payload})
		return err
	})
	if err != nil {
		return r, err
	}
	t, err := waitFinished(ctx, q, svcs, base+uint64(jobs), poll, deadline)
	if err != nil {
		return r, err
	}
	r.Done = t.Sub(t0)
	return r, nil
}

// pipeWindow is the submissions each client keeps in flight in the
// asyncpipe cases (client.SubmitMany's default).
const pipeWindow = client.DefaultWindow

// asyncPipeRun is asyncRun with pipelined submits: the clients share the
// jobs, each submitting its share with SubmitMany and window in flight. A
// job's latency is from its submission to its ID.
func asyncPipeRun(ctx context.Context, cs []*client.Client, q *client.Client, svc string, jobs, window int, poll time.Duration, deadline time.Time) (run, error) {
	base, _, err := finished(ctx, q, one(svc))
	if err != nil {
		return run{}, err
	}
	lat := make([]time.Duration, jobs)
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	t0 := time.Now()
	for g, c := range cs {
		from, to := jobs*g/len(cs), jobs*(g+1)/len(cs)
		sent := make([]time.Time, to-from)
		reqs := func(yield func(client.Request) bool) {
			for i := range sent {
				sent[i] = time.Now()
				if !yield(client.Request{Input: payload}) {
					return
				}
			}
		}
		wg.Go(func() {
			errs[g] = c.SubmitMany(ctx, svc, reqs, window, func(s client.Submitted) error {
				if s.Err != nil {
					return s.Err
				}
				lat[from+s.Index] = time.Since(sent[s.Index])
				return nil
			})
		})
	}
	wg.Wait()
	r := newRun(lat, time.Since(t0))
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	t, err := waitFinished(ctx, q, one(svc), base+uint64(jobs), poll, deadline)
	if err != nil {
		return r, err
	}
	r.Done = t.Sub(t0)
	return r, nil
}

// repeat runs fn once with warm jobs (unmeasured), then runs times with n
// jobs, printing RUN lines and returning the runs.
func repeat(label string, runs, warm, n int, fn func(jobs int) (run, error)) ([]run, error) {
	if warm > 0 {
		if _, err := fn(warm); err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", label, err)
		}
	}
	var rs []run
	for i := range runs {
		r, err := fn(n)
		if err != nil {
			return rs, fmt.Errorf("%s run %d: %w", label, i, err)
		}
		out("%s", r.line(label, i))
		rs = append(rs, r)
	}
	return rs, nil
}

// repeatCPU is repeat with the CPU by process of each measured run (the
// warm-up left out), read by meter.
func repeatCPU(meter *cpuMeter, label string, runs, warm, n int, fn func(jobs int) (run, error)) ([]run, *cpuRuns, error) {
	cr := newCPURuns(meter)
	first := warm > 0
	rs, err := repeat(label, runs, warm, n, func(jobs int) (run, error) {
		b := meter.snap()
		r, err := fn(jobs)
		if !first && err == nil {
			cr.addRun(b, meter.snap(), r.Jobs, nil)
		}
		first = false
		return r, err
	})
	return rs, cr, err
}

func one(s string) map[string]bool { return map[string]bool{s: true} }

func constSvc(s string) func(int) string { return func(int) string { return s } }
