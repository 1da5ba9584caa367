package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zmws/zmws/client"
)

// cpuCase is one case of a section measured in rounds with CPU by process.
type cpuCase struct {
	label string
	meter *cpuMeter
	cpu   *cpuRuns
	// fn runs jobs jobs; extra is CPU of processes that ended in the run
	// (by meter name), added to the meter's readings.
	fn func(jobs int) (r run, extra map[string]time.Duration, err error)
	// n is the case's jobs per run (0: the section's).
	n int
	// after, if set, runs after each run, outside its CPU window (an
	// async case waits there for its jobs to finish).
	after func() error
}

// cpuRounds runs one unmeasured warm-up round of warm jobs, then runs
// rounds in which every case runs once with n jobs (so the cases see the
// same machine; a case's warm-up is the larger of warm and a 20th of its
// n), printing RUN lines; then a SUMMARY and a SUMMARY cpu line
// per case. It returns the runs by case.
func cpuRounds(cases []*cpuCase, runs, warm, n int) ([][]run, error) {
	results := make([][]run, len(cases))
	for _, c := range cases {
		c.cpu = newCPURuns(c.meter)
	}
	for r := -1; r < runs; r++ {
		for i, c := range cases {
			jobs := n
			if c.n > 0 {
				jobs = c.n
			}
			if r < 0 {
				jobs = max(warm, jobs/20)
			}
			before := c.meter.snap()
			res, extra, err := c.fn(jobs)
			after := c.meter.snap()
			if err == nil && c.after != nil {
				err = c.after()
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.label, err)
			}
			if r >= 0 {
				c.cpu.addRun(before, after, res.Jobs, extra)
				out("%s", res.line(c.label, r))
				results[i] = append(results[i], res)
			}
		}
	}
	for i, c := range cases {
		out("%s", summary(c.label, results[i]))
		out("%s", c.cpu.summary(c.label))
	}
	return results, nil
}

// pairedRate is the round-by-round ratio of a's rate to b's.
func pairedRate(name string, a, b []run, ra, rb func(run) float64) string {
	var xs []float64
	for i := range min(len(a), len(b)) {
		if y := rb(b[i]); y > 0 {
			xs = append(xs, ra(a[i])/y)
		}
	}
	m, lo, hi := medMinMax(xs)
	return fmt.Sprintf("SUMMARY paired %s runs=%d ratio=%.3f [%.3f..%.3f]", name, len(xs), m, lo, hi)
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPort waits until something accepts on addr.
func waitPort(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing accepts on %s after %v", addr, timeout)
}

// startSelf starts this binary with args as a child named name.
func startSelf(o *opts, name string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startChild(name, filepath.Join(o.tmp, name+".log"), self, args...)
}

// sectionBrokerCPU: sync jobs from 8 clients through 8 echo workers, the
// same load through zmwsd (no store; the journal), libzmq's zmq_proxy (C)
// and gearmand -t 1, the cases alternating round by round. The clients
// run in the harness and the workers in a child process (gearman's in the
// anchors' gmbench, clients and workers in one process), so each side's
// CPU per job is its own: the brokers' CPU per job, the Go client's per
// call against a raw DEALER's per round trip.
func sectionBrokerCPU(ctx context.Context, o *opts) error {
	const k = 8
	n := o.n8
	var cases []*cpuCase
	for _, st := range []string{"none", "bolt"} {
		say("brokercpu: zmwsd store=%s, %d Go clients x %d Go echo workers (a child)", st, k, k)
		z, err := startZmwsd(o.bin, o.tmp, "zmwsd-cpu-"+st, st, false)
		if err != nil {
			return err
		}
		defer z.stop()
		svc := "echo8cpu"
		w, err := startSelf(o, "workers-cpu-"+st, "workers", "-broker", z.worker, "-services", svc, "-per", fmt.Sprint(k), "-procs", "0")
		if err != nil {
			return err
		}
		defer w.stop()
		q, err := client.New(client.Config{Broker: z.client, Timeout: 20 * time.Second})
		if err != nil {
			return err
		}
		defer q.Close()
		if err := waitWorkers(ctx, q, one(svc), k, 10*time.Second); err != nil {
			return err
		}
		cs, err := newClients(z.client, k)
		if err != nil {
			return err
		}
		defer closeClients(cs)
		cases = append(cases, &cpuCase{
			label: fmt.Sprintf("zmws-sync where=zmwsd store=%s workers=%d clients=%d procs=3 n=%d", st, k, k, n),
			meter: (&cpuMeter{}).add("client", selfCPU).add("zmwsd", pidCPU(z.pid())).add("worker", pidCPU(w.pid())),
			fn: func(jobs int) (run, map[string]time.Duration, error) {
				r, err := syncRun(ctx, cs, constSvc(svc), jobs, time.Now().Add(o.caseTime))
				return r, nil, err
			},
		})
	}

	say("brokercpu: zmq_proxy (C), %d raw DEALER clients x %d raw echo workers (a child)", k, k)
	px, front, back, err := startProxyChild(o, "zmq-proxy-cpu")
	if err != nil {
		return err
	}
	defer px.stop()
	rw, err := startSelf(o, "rawecho-cpu", "rawecho", "-connect", back, "-n", fmt.Sprint(k))
	if err != nil {
		return err
	}
	defer rw.stop()
	hops := make([]*proxyHop, k)
	for i := range hops {
		s, err := rawSocket(front)
		if err != nil {
			return err
		}
		defer s.Close()
		s.SetRcvtimeo(20 * time.Second)
		hops[i] = &proxyHop{client: s}
	}
	cases = append(cases, &cpuCase{
		label: fmt.Sprintf("zmq-proxy-hop proxy=zmq_proxy(C) where=child workers=%d clients=%d window=1 procs=3 n=%d", k, k, n),
		meter: (&cpuMeter{}).add("client", selfCPU).add("broker", pidCPU(px.pid())).add("worker", pidCPU(rw.pid())),
		fn: func(jobs int) (run, map[string]time.Duration, error) {
			r, err := parallel(ctx, k, jobs, time.Now().Add(o.caseTime), func(g, _ int) error { return hops[g].call() })
			return r, nil, err
		},
	})

	gm := o.gmbench
	gearmand, lookErr := exec.LookPath("gearmand")
	switch {
	case gm == "":
		out("INFO brokercpu: no -gmbench: the gearmand case is left out")
	case lookErr != nil:
		out("INFO brokercpu: no gearmand: the gearmand case is left out")
	default:
		say("brokercpu: gearmand -t 1, gmbench %d clients x %d workers (a child per run)", k, k)
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		g, err := startChild("gearmand-cpu", filepath.Join(o.tmp, "gearmand-cpu.out"), gearmand,
			"-L", "127.0.0.1", "-p", fmt.Sprint(port), "-q", "builtin", "-t", "1", "-l", filepath.Join(o.tmp, "gearmand-cpu.log"))
		if err != nil {
			return err
		}
		defer g.stop()
		if err := waitPort(addr, 10*time.Second); err != nil {
			return fmt.Errorf("gearmand: %w: %s", err, tail(g.log, 500))
		}
		cases = append(cases, &cpuCase{
			label: fmt.Sprintf("gearman-sync gearmand=-t1 workers=%d clients=%d procs=2 n=%d", k, k, n),
			meter: (&cpuMeter{}).add("broker", pidCPU(g.pid())).add("gmbench", func() time.Duration { return 0 }),
			fn: func(jobs int) (run, map[string]time.Duration, error) {
				r, ps, err := gmbenchRun(ctx, gm, addr, k, k, jobs, o.caseTime)
				return r, map[string]time.Duration{"gmbench": exitedCPU(ps)}, err
			},
		})
	}

	res, err := cpuRounds(cases, o.runs, max(200, n/20), n)
	if err != nil {
		return err
	}
	none, bolt, proxy := cases[0], cases[1], cases[2]
	rate := run.rate
	out("%s", cpuRatio("brokercpu zmwsd/zmq_proxy store=none workers=8 clients=8", none.cpu, "zmwsd", proxy.cpu, "broker"))
	out("%s", cpuRatio("brokercpu zmwsd/zmq_proxy store=bolt workers=8 clients=8", bolt.cpu, "zmwsd", proxy.cpu, "broker"))
	out("%s", cpuRatio("brokercpu client/raw-client store=none workers=8 clients=8", none.cpu, "client", proxy.cpu, "client"))
	out("%s", cpuRatio("brokercpu worker/raw-worker store=none workers=8 clients=8", none.cpu, "worker", proxy.cpu, "worker"))
	out("%s", pairedRate("brokercpu zmwsd/zmq_proxy store=none workers=8 clients=8", res[0], res[2], rate, rate))
	out("%s", pairedRate("brokercpu zmwsd/zmq_proxy store=bolt workers=8 clients=8", res[1], res[2], rate, rate))
	if len(cases) > 3 {
		gc := cases[3]
		out("%s", cpuRatio("brokercpu zmwsd/gearmand store=none workers=8 clients=8", none.cpu, "zmwsd", gc.cpu, "broker"))
		out("%s", cpuRatio("brokercpu zmwsd/gearmand store=bolt workers=8 clients=8", bolt.cpu, "zmwsd", gc.cpu, "broker"))
		out("%s", pairedRate("brokercpu zmwsd/gearmand store=none workers=8 clients=8", res[0], res[3], rate, rate))
	}
	return nil
}

// gmbenchRun runs the anchors' gmbench once (sync, its own in-process
// workers, no warm-up: the round before warmed gearmand) and reads its RUN
// line. It returns the child's state for its CPU.
func gmbenchRun(ctx context.Context, gm, addr string, workers, clients, jobs int, timeout time.Duration) (run, *os.ProcessState, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, gm, "-addr", addr, "-mode", "sync", "-workers", fmt.Sprint(workers), "-clients", fmt.Sprint(clients),
		"-n", fmt.Sprint(jobs), "-runs", "1", "-warmup", "0", "-maxtime", timeout.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var outb, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &errb
	if err := cmd.Run(); err != nil {
		return run{}, cmd.ProcessState, fmt.Errorf("gmbench: %w: %s", err, errb.String())
	}
	for line := range strings.Lines(outb.String()) {
		if !strings.HasPrefix(line, "RUN ") {
			continue
		}
		kv := map[string]float64{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k], _ = strconv.ParseFloat(v, 64)
			}
		}
		r := run{Jobs: int(kv["jobs"]), Elapsed: time.Duration(kv["elapsed_s"] * 1e9),
			P50: time.Duration(kv["p50_us"] * 1e3), P99: time.Duration(kv["p99_us"] * 1e3), Max: time.Duration(kv["max_us"] * 1e3)}
		return r, cmd.ProcessState, nil
	}
	return run{}, cmd.ProcessState, fmt.Errorf("gmbench printed no RUN line: %s", outb.String())
}

// cmdRawEcho is a child of the brokercpu section: n raw echo DEALERs
// behind a zmq_proxy, until killed.
func cmdRawEcho(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rawecho", flag.ExitOnError)
	ep := fs.String("connect", "", "the proxy's back end")
	n := fs.Int("n", 8, "echo sockets (one OS thread each)")
	fs.Parse(args)
	if *ep == "" {
		return fmt.Errorf("rawecho: -connect is required")
	}
	done := make(chan struct{}, *n)
	for range *n {
		go func() { rawEcho(ctx, *ep); done <- struct{}{} }()
	}
	for range *n {
		<-done
	}
	return nil
}
