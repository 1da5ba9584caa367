package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// service is the chaos service's name.
const service = "CHAOS"

// script is the job's command: sleep a little ($1, from the job's "sleep"
// parameter), then append "ID ATTEMPT WORKER UPTIME" to the results file
// (UPTIME from /proc/uptime, read by a shell builtin: no extra process). One
// write of under PIPE_BUF bytes with O_APPEND lands whole.
const script = `[ "$1" = 0 ] || sleep "$1"; read up _ </proc/uptime; echo "$ZMWS_JOB_ID $ZMWS_ATTEMPT $CHAOS_WORKER $up" >> "$CHAOS_RESULTS"`

// Bounds of the run's own waits.
const (
	readyWithin = 30 * time.Second // a (re)started broker answers, the service is known
	stopGrace   = 5 * time.Second  // SIGTERM to SIGKILL at the end
	queryWait   = 2 * time.Second  // client timeout of one query
)

// chaos is one run.
type chaos struct {
	cfg     config
	out     io.Writer
	ps      *procs
	bin     string // folder of zmwsd and zmws-run
	dataDir string
	logDir  string
	results string // the file jobs append to
	cliEP   string // broker client endpoint
	wrkEP   string // broker worker endpoint

	rmu sync.Mutex
	rng *rand.Rand

	mu          sync.Mutex
	broker      *proc
	brokerGen   int
	workers     []*proc // by index; nil while down
	workerGen   []int
	kills       []kill // every kill -9, in order
	brokerKills int
	workerKills int
	refusals    map[string]int // transient refusals by code, resent
	submitErrs  []string

	ids      []string // by job index: the accepted ID, "" if none
	accepted atomic.Int64
	resends  atomic.Int64 // submissions sent again with the same key
	start    time.Time
	abort    context.CancelCauseFunc
}

// summary is what a run found.
type summary struct {
	Accepted, Completed, Failed, Lost int
	Duplicated, ExtraRuns             int            // jobs that ran more than once; runs beyond the first
	DupCauses                         map[string]int // duplicated jobs by likely cause
	FailedWhy                         map[string]int // failed jobs by "code: error"
	LostIDs                           []string
	Unexplained                       []unexplained // duplicates no kill explains, the first few
	Unaccepted                        int           // IDs in the results that no client was given
	Resends                           int
	BrokerKills, WorkerKills          int
	Problems                          []string // anything else that went wrong
	Submit, Drain, Total              time.Duration
	WorkDir                           string
}

func (s summary) exitCode() int {
	switch {
	case s.Lost > 0:
		return 1
	case len(s.Problems) > 0:
		return 2
	}
	return 0
}

func (s summary) line() string {
	l := fmt.Sprintf("accepted=%d completed=%d failed=%d lost=%d duplicated=%d (runs beyond one: %d",
		s.Accepted, s.Completed, s.Failed, s.Lost, s.Duplicated, s.ExtraRuns)
	for _, cause := range []string{"worker kill", "broker kill", "unexplained"} {
		if n := s.DupCauses[cause]; n > 0 {
			l += fmt.Sprintf("; %s: %d", cause, n)
		}
	}
	return l + fmt.Sprintf(") resends=%d broker_kills=%d worker_kills=%d submit=%s drain=%s total=%s",
		s.Resends, s.BrokerKills, s.WorkerKills, seconds(s.Submit), seconds(s.Drain), seconds(s.Total))
}

// run runs the chaos test described by cfg, printing progress and the
// summary to out (and to WorkDir/logs/chaos.log). err is set when the run
// could not be carried out; lost jobs are in the summary.
func run(ctx context.Context, cfg config, out io.Writer) (sum summary, err error) {
	if err := cfg.check(); err != nil {
		return sum, err
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	if cfg.WorkDir == "" {
		if cfg.WorkDir, err = os.MkdirTemp("", "zmws-chaos."); err != nil {
			return sum, err
		}
	}
	c := &chaos{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), 5)),
		dataDir:  filepath.Join(cfg.WorkDir, "data"),
		logDir:   filepath.Join(cfg.WorkDir, "logs"),
		results:  filepath.Join(cfg.WorkDir, "results.txt"),
		refusals: map[string]int{},
		ids:      make([]string, cfg.Jobs),
		start:    time.Now(),
	}
	sum.WorkDir = cfg.WorkDir
	for _, d := range []string{c.dataDir, c.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return sum, err
		}
	}
	logFile, err := os.OpenFile(filepath.Join(c.logDir, "chaos.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return sum, err
	}
	defer logFile.Close()
	c.out = &tee{a: out, b: logFile}
	c.ps = newProcs(c.logf)
	// A broker that dies by itself, or a submission never answered, ends
	// the run: what follows would not mean much.
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	c.abort = abort
	c.ps.onSurprise = func(p *proc) {
		if p.ready.Load() {
			abort(fmt.Errorf("%s exited by itself: %v (see %s)", p.name, p.err, filepath.Join(c.logDir, "zmwsd.log")))
		}
	}
	defer func() {
		c.ps.stopAll(stopGrace) // whatever happened, nothing is left running
		fmt.Fprintf(c.out, "logs, data and results: %s\n", cfg.WorkDir)
	}()

	c.logf("work dir %s, seed %d: %d jobs, %d workers x %d, %d broker kills, up to %d worker kills",
		cfg.WorkDir, cfg.Seed, cfg.Jobs, cfg.Workers, cfg.Concurrency, cfg.BrokerKills, cfg.WorkerKills)
	if c.bin = cfg.BinDir; c.bin == "" {
		c.bin = filepath.Join(cfg.WorkDir, "bin")
		c.logf("building zmwsd and zmws-run into %s", c.bin)
		if err := build(c.bin); err != nil {
			return sum, err
		}
	}
	if c.cliEP, err = freeEndpoint(); err != nil {
		return sum, err
	}
	if c.wrkEP, err = freeEndpoint(); err != nil {
		return sum, err
	}
	if err := os.WriteFile(c.results, nil, 0o644); err != nil {
		return sum, err
	}

	q, err := client.New(client.Config{Broker: c.cliEP, Timeout: queryWait, Retries: 1})
	if err != nil {
		return sum, err
	}
	defer q.Close()
	if err := c.startBroker(ctx, q); err != nil {
		return sum, err
	}
	c.workers = make([]*proc, cfg.Workers)
	c.workerGen = make([]int, cfg.Workers)
	for i := range cfg.Workers {
		if err := c.startWorker(i); err != nil {
			return sum, err
		}
	}
	if err := c.waitService(ctx, q); err != nil {
		return sum, err
	}
	c.logf("broker on %s (workers %s), %s known: submitting", c.cliEP, c.wrkEP, service)

	// Faults run alongside the submissions and the drain, until stop.
	stop := make(chan struct{})
	var faults sync.WaitGroup
	faults.Go(func() { c.killBrokers(ctx, q, stop) })
	faults.Go(func() { c.killWorkers(ctx, stop) })
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		faults.Wait()
	}()

	tail := &resultsTail{path: c.results, runs: map[string][]run1{}}
	progress := make(chan struct{})
	go c.progress(tail, progress)

	subStart := time.Now()
	c.submitAll(ctx)
	sum.Submit = time.Since(subStart)
	close(progress)
	if ctx.Err() != nil {
		return sum, fmt.Errorf("%w, after %d accepted jobs: nothing counted", why(ctx), c.accepted.Load())
	}
	c.logf("submissions done in %s: %d accepted, %d resends", seconds(sum.Submit), c.accepted.Load(), c.resends.Load())

	drainStart := time.Now()
	states, unfinished := c.drain(ctx, q, tail)
	sum.Drain = time.Since(drainStart)
	close(stop)
	faults.Wait()
	if ctx.Err() != nil {
		return sum, fmt.Errorf("%w, while waiting for %d jobs: nothing counted", why(ctx), unfinished)
	}

	// Stop everything, let runs orphaned by worker kills (their own
	// process groups, sleeping at most MaxSleep) append, then count.
	c.logf("stopping workers and broker")
	c.stopAll()
	time.Sleep(cfg.MaxSleep + 300*time.Millisecond)
	if err := tail.read(); err != nil {
		return sum, err
	}
	sum = c.summarize(states, tail, sum)
	if unfinished > 0 {
		sum.Problems = append(sum.Problems, fmt.Sprintf("%d accepted jobs not finished: none finished for --wait %v, or --max-drain %v passed", unfinished, cfg.Wait, cfg.MaxDrain))
	}
	sum.Total = time.Since(c.start)
	c.report(sum)
	return sum, nil
}

// why says why ctx ended: "interrupted" for a signal (or a cancelled
// parent), else its cause.
func why(ctx context.Context) error {
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return errors.New("interrupted")
}

func (c *chaos) logf(format string, args ...any) {
	fmt.Fprintf(c.out, "[%6.1fs] %s\n", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
}

func (c *chaos) sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	return false
}

func (c *chaos) intN(n int) int {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.rng.IntN(n)
}

// jitter is uniform in [d/2, 3d/2).
func (c *chaos) jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(c.intN(int(d)+1))
}

// startBroker starts zmwsd (again) on the run's endpoints and data dir and
// waits until it answers. A start that fails (a port not yet free) is tried
// again a few times.
func (c *chaos) startBroker(ctx context.Context, q *client.Client) error {
	var last error
	for try := 1; try <= 3; try++ {
		c.mu.Lock()
		c.brokerGen++
		name := fmt.Sprintf("zmwsd#%d", c.brokerGen)
		c.mu.Unlock()
		p, err := c.ps.start(name, filepath.Join(c.logDir, "zmwsd.log"), filepath.Join(c.bin, "zmwsd"),
			"--client-bind", c.cliEP, "--worker-bind", c.wrkEP, "--events-bind", "", "--http-bind", "",
			"--data-dir", c.dataDir, "--heartbeat", c.cfg.Heartbeat.String(),
			"--liveness", strconv.Itoa(c.cfg.Liveness), "--max-attempts", strconv.Itoa(c.cfg.MaxAttempts))
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.broker = p
		c.mu.Unlock()
		if last = c.waitBroker(ctx, q, p); last == nil {
			p.ready.Store(true)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.logf("%s: %v", name, last)
		c.ps.kill9(p)
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("zmwsd would not start: %w", last)
}

// waitBroker waits until the broker answers SERVER-SERVICES.
func (c *chaos) waitBroker(ctx context.Context, q *client.Client, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, readyWithin)
	defer cancel()
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited at start: %v", p.err)
		default:
		}
		if _, err := q.Services(ctx); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("no answer within %v: %w", readyWithin, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitService waits until a worker has offered the service.
func (c *chaos) waitService(ctx context.Context, q *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, readyWithin)
	defer cancel()
	for {
		ss, err := q.Services(ctx)
		for _, s := range ss {
			if s.Name == service && s.WorkersIdle+s.WorkersBusy > 0 {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no %s worker registered within %v (last error: %v); see %s", service, readyWithin, err, c.logDir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startWorker starts zmws-run number i, tagged w<i>.<generation>.
func (c *chaos) startWorker(i int) error {
	c.mu.Lock()
	c.workerGen[i]++
	tag := fmt.Sprintf("w%d.%d", i+1, c.workerGen[i])
	c.mu.Unlock()
	p, err := c.ps.start(tag, filepath.Join(c.logDir, fmt.Sprintf("worker-%d.log", i+1)), filepath.Join(c.bin, "zmws-run"),
		"--broker", c.wrkEP, "--service", service, "--concurrency", strconv.Itoa(c.cfg.Concurrency), "--prefetch", strconv.Itoa(c.cfg.Prefetch),
		"--heartbeat", c.cfg.Heartbeat.String(), "--grace", "2s", "--kill-grace", "1s",
		"--env", "CHAOS_WORKER="+tag, "--env", "CHAOS_RESULTS="+c.results,
		"--", "sh", "-c", script, "chaos", "{{sleep:0}}")
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.workers[i] = p
	c.mu.Unlock()
	return nil
}

// killBrokers kill -9's the broker each time another 1/(BrokerKills+1) of
// the jobs has been accepted, and restarts it after Down.
func (c *chaos) killBrokers(ctx context.Context, q *client.Client, stop <-chan struct{}) {
	for k := 1; k <= c.cfg.BrokerKills; k++ {
		at := int64(k * c.cfg.Jobs / (c.cfg.BrokerKills + 1))
		for c.accepted.Load() < at {
			if !c.sleep(ctx, stop, 5*time.Millisecond) {
				return
			}
		}
		c.mu.Lock()
		p := c.broker
		c.brokerKills++
		c.mu.Unlock()
		at0 := uptime()
		c.ps.kill9(p)
		c.logf("kill -9 %s (pid %d) at %d accepted, uptime %.2f", p.name, p.cmd.Process.Pid, c.accepted.Load(), at0)
		c.sleep(ctx, nil, c.cfg.Down)
		t := time.Now()
		if err := c.startBroker(ctx, q); err != nil {
			c.abort(fmt.Errorf("broker restart: %w", err))
			return
		}
		c.mu.Lock()
		c.kills = append(c.kills, kill{broker: true, name: p.name, at: at0, back: uptime()})
		c.mu.Unlock()
		c.logf("zmwsd#%d answers %s after its start", c.brokerGen, seconds(time.Since(t)))
	}
}

// killWorkers kill -9's a random worker every KillEvery or so, up to
// WorkerKills times, and restarts it after Down.
func (c *chaos) killWorkers(ctx context.Context, stop <-chan struct{}) {
	for n := 0; n < c.cfg.WorkerKills; n++ {
		if !c.sleep(ctx, stop, c.jitter(c.cfg.KillEvery)) {
			return
		}
		i := c.intN(c.cfg.Workers)
		c.mu.Lock()
		p := c.workers[i]
		c.workers[i] = nil
		c.workerKills++
		c.mu.Unlock()
		at0 := uptime()
		c.ps.kill9(p)
		c.mu.Lock()
		c.kills = append(c.kills, kill{name: p.name, at: at0, back: uptime()})
		c.mu.Unlock()
		c.logf("kill -9 worker %s (pid %d), uptime %.2f", p.name, p.cmd.Process.Pid, at0)
		c.sleep(ctx, nil, c.cfg.Down)
		if err := c.startWorker(i); err != nil {
			c.logf("worker restart failed: %v", err)
			return
		}
	}
}

// submitAll submits every job, Submitters at a time.
func (c *chaos) submitAll(ctx context.Context) {
	sleeps := make([]string, c.cfg.Jobs)
	runID := strconv.FormatInt(c.cfg.Seed, 36)
	for i := range sleeps {
		ms := 0
		if c.cfg.MaxSleep > 0 {
			ms = c.intN(int(c.cfg.MaxSleep/time.Millisecond) + 1)
		}
		sleeps[i] = strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range c.cfg.Submitters {
		wg.Go(func() {
			cl, err := client.New(client.Config{Broker: c.cliEP, Timeout: c.cfg.ClientWait, Retries: -1})
			if err != nil {
				c.mu.Lock()
				c.submitErrs = append(c.submitErrs, err.Error())
				c.mu.Unlock()
				for range next {
				}
				return
			}
			defer cl.Close()
			for i := range next {
				key := fmt.Sprintf("chaos-%s-%d", runID, i)
				c.submit(ctx, cl, i, client.Request{Key: key, Params: map[string]string{"sleep": sleeps[i]}})
			}
		})
	}
	for i := range c.cfg.Jobs {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}

// submit submits job i until the broker answers with an ID, resending with
// the same idempotency key after a timeout or a transient refusal.
func (c *chaos) submit(ctx context.Context, cl *client.Client, i int, req client.Request) {
	deadline := time.Now().Add(c.cfg.SubmitLimit)
	for try := 0; ; try++ {
		if try > 0 {
			c.resends.Add(1)
		}
		id, err := cl.Submit(ctx, service, req)
		if err == nil {
			c.mu.Lock()
			c.ids[i] = id
			c.mu.Unlock()
			c.accepted.Add(1)
			return
		}
		var refused *client.Error
		isRefusal := errors.As(err, &refused)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, client.ErrQueueFull), errors.Is(err, client.ErrStoreUnavailable):
			c.mu.Lock()
			c.refusals[refused.Code]++
			c.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		case isRefusal:
			c.mu.Lock()
			c.submitErrs = append(c.submitErrs, fmt.Sprintf("job %d (%s) refused: %s: %s", i, req.Key, refused.Code, refused.Message))
			c.mu.Unlock()
			return
		case errors.Is(err, client.ErrTimeout):
		default: // a socket or reply problem: resend too, but say so
			c.logf("job %d (%s): %v; resending", i, req.Key, err)
			time.Sleep(100 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			c.abort(fmt.Errorf("job %d (%s) not accepted within --submit-limit %v: %w", i, req.Key, c.cfg.SubmitLimit, err))
			return
		}
	}
}

// progress prints a line every few seconds until done is closed.
func (c *chaos) progress(tail *resultsTail, done <-chan struct{}) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		tail.read()
		c.logf("accepted %d/%d, ran %d, resends %d", c.accepted.Load(), c.cfg.Jobs, tail.count(), c.resends.Load())
	}
}

// drain waits until every accepted job is complete or failed, as the broker
// says, or until none has finished (nor run) for Wait, or MaxDrain has
// passed. It returns the last state seen of each job
// and how many were not finished.
func (c *chaos) drain(ctx context.Context, q *client.Client, tail *resultsTail) (map[string]protocol.JobInfo, int) {
	states := map[string]protocol.JobInfo{}
	var pending []string
	for _, id := range c.ids {
		if id != "" {
			pending = append(pending, id)
		}
	}
	deadline := time.Now().Add(c.cfg.MaxDrain)
	lastPrint, lastAll, lastMove := time.Now(), time.Now(), time.Now()
	ran := -1
	for {
		tail.read()
		if n := tail.count(); n != ran {
			ran, lastMove = n, time.Now()
		}
		// Ask about the jobs that ran; about all of them only when the
		// broker has nothing left to run, or every 10 s: the broker has
		// better things to do than answer thousands of queries.
		all := time.Since(lastAll) >= 10*time.Second
		if ss, err := q.Services(ctx); err == nil {
			for _, s := range ss {
				if s.Name == service && s.Queued+s.Active == 0 {
					all = true
				}
			}
		}
		if all {
			lastAll = time.Now()
		}
		var left []string
		for _, id := range pending {
			if !all && len(tail.runsOf(id)) == 0 {
				left = append(left, id)
				continue
			}
			j, err := q.Job(ctx, id)
			switch {
			case err == nil:
				states[id] = j
			case errors.Is(err, client.ErrNotFound):
				states[id] = protocol.JobInfo{ID: id, State: "not found"}
			}
			if j.State != "complete" && j.State != "failed" {
				left = append(left, id)
			}
		}
		if len(left) < len(pending) {
			lastMove = time.Now()
		}
		pending = left
		if len(pending) == 0 || ctx.Err() != nil || time.Now().After(deadline) || time.Since(lastMove) > c.cfg.Wait {
			return states, len(pending)
		}
		if time.Since(lastPrint) >= 3*time.Second {
			c.logf("draining: %d jobs not finished, ran %d", len(pending), tail.count())
			lastPrint = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// stopAll stops the workers (they finish or hand back running jobs), then
// the broker.
func (c *chaos) stopAll() {
	c.mu.Lock()
	ws := append([]*proc(nil), c.workers...)
	b := c.broker
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		if w != nil {
			wg.Go(func() { c.ps.stop(w, stopGrace) })
		}
	}
	wg.Wait()
	c.ps.stop(b, stopGrace)
}
