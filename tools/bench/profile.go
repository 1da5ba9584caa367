package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// cmdProfile runs one broker-only case against an in-process server under
// the CPU profiler. Goroutines are labelled role=server (the loop and the
// committer), role=worker and role=client, so
//
//	go tool pprof -top -tagfocus role=server bench cpu.prof
//
// shows the broker's own cost.
func cmdProfile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("profile", flag.ExitOnError)
	o := &opts{}
	c := fs.String("case", "sync8", "sync1, sync8, async1 or async8")
	st := fs.String("store", "none", "none, memory or bolt")
	n := fs.Int("n", 20000, "jobs per run")
	fs.IntVar(&o.runs, "runs", 3, "measured runs")
	file := fs.String("cpuprofile", "cpu.prof", "CPU profile output")
	fs.StringVar(&o.tmp, "tmp", os.TempDir(), "scratch folder")
	peers := fs.String("peers", "lib", "lib: the Go client and worker libraries; raw: bare DEALER peers (sync only), to see the server alone")
	fs.Parse(args)
	o.caseTime = 5 * time.Minute
	var bc bcase
	switch *c {
	case "sync1":
		bc = bcase{"sync", 1, 1, *n, 0}
	case "sync8":
		bc = bcase{"sync", 8, 8, *n, 0}
	case "async1":
		bc = bcase{"async", 1, 1, *n, 0}
	case "async8":
		bc = bcase{"async", 8, 8, *n, 0}
	default:
		return fmt.Errorf("profile: unknown -case %q", *c)
	}
	watchdog(10 * time.Minute)
	srv, err := startInproc(ctx, o.tmp, *st, 0)
	if err != nil {
		return err
	}
	defer srv.stop()
	f, err := os.Create(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	cgo0 := runtime.NumCgoCall()
	if *peers == "raw" {
		err = rawCase(ctx, o, srv, bc)
	} else {
		err = brokerCases(ctx, o, "inproc", *st, srv.clientEP, srv.workerEP, []bcase{bc}, nil, (&cpuMeter{}).add("harness", selfCPU))
	}
	// cgo calls per job, whole process (clients and workers too): libzmq
	// calls are what the loop's per-job work is made of; the count is
	// deterministic where CPU time on this machine is not.
	jobs := int64(o.runs*(*n) + max(200, *n/20))
	out("INFO cgo_calls_per_job=%.1f (whole process, %d jobs with the warm-up)", float64(runtime.NumCgoCall()-cgo0)/float64(jobs), jobs)
	if srv.st != nil {
		c, j, b := srv.st.commits.Load(), srv.st.jobs.Load(), srv.st.busy.Load()
		out("INFO store_commits=%d job_records=%d records_per_commit=%.1f commit_ms_mean=%.3f", c, j, float64(j)/float64(max(c, 1)), float64(b)/1e6/float64(max(c, 1)))
	}
	return err
}

// rawCase runs a sync case with raw workers and raw clients (labelled
// role=worker and role=client) against the in-process server.
func rawCase(ctx context.Context, o *opts, srv *inproc, bc bcase) error {
	if bc.mode != "sync" {
		return fmt.Errorf("profile: -peers raw is for sync cases")
	}
	svc := fmt.Sprintf("raw%d", bc.workers)
	wctx := pprof.WithLabels(ctx, pprof.Labels("role", "worker"))
	pprof.SetGoroutineLabels(wctx)
	stop, err := startRawWorkers(wctx, srv.workerEP, svc, bc.workers)
	pprof.SetGoroutineLabels(ctx)
	if err != nil {
		return err
	}
	defer stop()
	q, err := newClients(srv.clientEP, 1)
	if err != nil {
		return err
	}
	defer closeClients(q)
	if err := waitWorkers(ctx, q[0], one(svc), bc.workers, 10*time.Second); err != nil {
		return err
	}
	cctx := pprof.WithLabels(ctx, pprof.Labels("role", "client"))
	pprof.SetGoroutineLabels(cctx)
	defer pprof.SetGoroutineLabels(ctx)
	rcs := make([]*rawClient, bc.clients)
	for i := range rcs {
		rc, err := newRawClient(srv.clientEP, svc)
		if err != nil {
			return err
		}
		defer rc.s.Close()
		rcs[i] = rc
	}
	label := fmt.Sprintf("zmws-sync-peers where=inproc store=none client=raw worker=raw workers=%d clients=%d n=%d", bc.workers, bc.clients, bc.n)
	deadline := time.Now().Add(o.caseTime)
	rs, err := repeat(label, o.runs, max(200, bc.n/20), bc.n, func(jobs int) (run, error) {
		return parallel(cctx, bc.clients, jobs, deadline, func(g, _ int) error { return rcs[g].call() })
	})
	if err != nil {
		return err
	}
	out("%s", summary(label, rs))
	return nil
}
