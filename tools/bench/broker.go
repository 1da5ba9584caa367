package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
)

// countingStore counts the commits (one bbolt transaction and fsync each)
// and the job records they carry.
type countingStore struct {
	store.Store
	commits, jobs atomic.Int64
	busy          atomic.Int64 // ns spent in Commit
}

func (s *countingStore) Commit(b *store.Batch) error {
	t0 := time.Now()
	err := s.Store.Commit(b)
	s.busy.Add(int64(time.Since(t0)))
	s.commits.Add(1)
	s.jobs.Add(int64(len(b.Jobs)))
	return err
}

// inproc is a server.Server run by this process on tcp loopback.
type inproc struct {
	clientEP, workerEP string
	st                 *countingStore
	stop               func()
}

// startInproc starts a server with store "none" (no Store: zmwsd
// --data-dir ""), "memory" (store.NewMemory: the group-commit path without
// a disk) or "bolt" (the journal in a fresh dir under tmp). The server's
// goroutines carry the pprof label role=server.
func startInproc(ctx context.Context, tmp, storeKind string, maxQueue int) (*inproc, error) {
	var st store.Store
	var dir string
	switch storeKind {
	case "none":
	case "memory":
		st = store.NewMemory()
	case "bolt":
		var err error
		if dir, err = os.MkdirTemp(tmp, "bolt-"); err != nil {
			return nil, err
		}
		if st, err = store.OpenBolt(filepath.Join(dir, store.BoltFile), store.BoltOptions{}); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("store %q: want none, memory or bolt", storeKind)
	}
	var cs *countingStore
	cfg := server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", Broker: broker.Config{MaxQueue: maxQueue}}
	if st != nil {
		cs = &countingStore{Store: st}
		cfg.Store = cs
	}
	var srv *server.Server
	var err error
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	pprof.Do(sctx, pprof.Labels("role", "server"), func(lctx context.Context) {
		// New starts the committer goroutine: it inherits the label.
		if srv, err = server.New(cfg); err != nil {
			return
		}
		go func() { done <- srv.Run(lctx) }()
	})
	if err != nil {
		cancel()
		if st != nil {
			st.Close()
		}
		return nil, err
	}
	return &inproc{clientEP: srv.ClientEndpoint(), workerEP: srv.WorkerEndpoint(), st: cs, stop: func() {
		cancel()
		<-done
		if st != nil {
			st.Close()
		}
		if dir != "" {
			os.RemoveAll(dir)
		}
	}}, nil
}

// bcase is one broker-only measurement.
type bcase struct {
	mode             string // sync, async or asyncpipe
	workers, clients int
	n                int
	prefetch         int // the echo workers' worker.Config.Prefetch
}

// svc is the service of the case's echo workers.
func (c bcase) svc() string {
	if c.prefetch > 0 {
		return fmt.Sprintf("echo%dp%d", c.workers, c.prefetch)
	}
	return fmt.Sprintf("echo%d", c.workers)
}

// tag is what the label says of the case's workers.
func (c bcase) tag() string {
	if c.prefetch > 0 {
		return fmt.Sprintf("workers=%d %s prefetch=%d", c.workers, prefetchTag, c.prefetch)
	}
	return fmt.Sprintf("workers=%d", c.workers)
}

// brokerCases runs cases against the broker at clientEP/workerEP: for each
// distinct worker count a service echoW with W echo workers, then 8 (or
// as many as needed) clients. where and store go into the labels. after,
// when set, prints extra INFO after each case (commit counts).
//
// meter reads the CPU of the case's processes; each case also prints its
// SUMMARY cpu line (the warm-up left out).
func brokerCases(ctx context.Context, o *opts, where, storeKind, clientEP, workerEP string, cases []bcase, after func(label string), meter *cpuMeter) error {
	maxClients := 1
	workerSets := map[bcase]bool{} // by workers and prefetch
	for _, c := range cases {
		maxClients = max(maxClients, c.clients)
		workerSets[bcase{workers: c.workers, prefetch: c.prefetch}] = true
	}
	q, err := client.New(client.Config{Broker: clientEP, Timeout: 20 * time.Second})
	if err != nil {
		return err
	}
	defer q.Close()
	wctx := pprof.WithLabels(ctx, pprof.Labels("role", "worker"))
	pprof.SetGoroutineLabels(wctx)
	for w := range workerSets {
		stop, err := startEchoWorkersPrefetch(wctx, workerEP, w.svc(), w.workers, w.prefetch)
		if err != nil {
			return err
		}
		defer stop()
	}
	pprof.SetGoroutineLabels(ctx)
	for w := range workerSets {
		if err := waitWorkers(ctx, q, one(w.svc()), w.workers, 10*time.Second); err != nil {
			return err
		}
	}
	cctx := pprof.WithLabels(ctx, pprof.Labels("role", "client"))
	pprof.SetGoroutineLabels(cctx)
	defer pprof.SetGoroutineLabels(ctx)
	cs, err := newClients(clientEP, maxClients)
	if err != nil {
		return err
	}
	defer closeClients(cs)
	for _, c := range cases {
		svc := c.svc()
		label := fmt.Sprintf("zmws-%s where=%s store=%s %s clients=%d n=%d", c.mode, where, storeKind, c.tag(), c.clients, c.n)
		deadline := time.Now().Add(o.caseTime)
		warm := max(200, c.n/20)
		var cr *cpuRuns
		measured := func(label string, runs, warm, n int, fn func(jobs int) (run, error)) ([]run, error) {
			rs, c, err := repeatCPU(meter, label, runs, warm, n, fn)
			cr = c
			return rs, err
		}
		switch c.mode {
		case "sync":
			rs, err := measured(label, o.runs, warm, c.n, func(jobs int) (run, error) {
				return syncRun(cctx, cs[:c.clients], constSvc(svc), jobs, deadline)
			})
			if err != nil {
				return err
			}
			out("%s", summary(label, rs))
		case "async":
			rs, err := measured(label, o.runs, warm, c.n, func(jobs int) (run, error) {
				return asyncRun(cctx, cs[:c.clients], q, one(svc), constSvc(svc), jobs, 2*time.Millisecond, deadline)
			})
			if err != nil {
				return err
			}
			out("%s", summary(label, rs))
			out("%s", doneSummary(fmt.Sprintf("zmws-async-done where=%s store=%s %s clients=%d n=%d", where, storeKind, c.tag(), c.clients, c.n), rs))
		case "asyncpipe":
			rs, err := measured(label, o.runs, warm, c.n, func(jobs int) (run, error) {
				return asyncPipeRun(cctx, cs[:c.clients], q, svc, jobs, pipeWindow, 2*time.Millisecond, deadline)
			})
			if err != nil {
				return err
			}
			out("%s", summary(label, rs))
			out("%s", doneSummary(fmt.Sprintf("zmws-asyncpipe-done where=%s store=%s %s clients=%d window=%d n=%d", where, storeKind, c.tag(), c.clients, pipeWindow, c.n), rs))
		}
		out("%s", cr.summary(label))
		if after != nil {
			after(label)
		}
	}
	return nil
}

// sectionBroker: the in-process server with each store.
func sectionBroker(ctx context.Context, o *opts) error {
	plan := []struct {
		store string
		cases []bcase
	}{
		{"none", []bcase{{"sync", 1, 1, o.n1, 0}, {"sync", 8, 8, o.n8, 0}, {"async", 1, 1, o.n1, 0}, {"async", 8, 8, o.n8, 0}}},
		{"memory", []bcase{{"async", 8, 8, o.n8, 0}}},
		{"bolt", []bcase{{"sync", 1, 1, o.nd1, 0}, {"async", 1, 1, o.nd1, 0}, {"async", 8, 8, o.nd8, 0}, {"asyncpipe", 8, 8, o.n8, 0}}},
	}
	for _, p := range plan {
		say("broker in-process, store=%s", p.store)
		srv, err := startInproc(ctx, o.tmp, p.store, 0)
		if err != nil {
			return err
		}
		var last [3]int64
		after := func(label string) {
			if srv.st == nil {
				return
			}
			c, j, b := srv.st.commits.Load(), srv.st.jobs.Load(), srv.st.busy.Load()
			dc, dj, db := c-last[0], j-last[1], b-last[2]
			last = [3]int64{c, j, b}
			if dc > 0 {
				out("INFO %s store_commits=%d job_records=%d records_per_commit=%.1f commit_ms_mean=%.3f", label, dc, dj, float64(dj)/float64(dc), float64(db)/1e6/float64(dc))
			}
		}
		// Clients, workers and server share the harness's process.
		err = brokerCases(ctx, o, "inproc", p.store, srv.clientEP, srv.workerEP, p.cases, after, (&cpuMeter{}).add("harness", selfCPU))
		srv.stop()
		if err != nil {
			return err
		}
	}
	return nil
}

// sectionZmwsd: the same against zmwsd child processes (the broker in a
// process of its own, as gearmand in the anchors).
func sectionZmwsd(ctx context.Context, o *opts) error {
	plan := []struct {
		store string
		cases []bcase
	}{
		{"none", []bcase{{"sync", 1, 1, o.n1, 0}, {"sync", 8, 8, o.n8, 0}, {"async", 1, 1, o.n1, 0}, {"async", 8, 8, o.n8, 0},
			{"async", 8, 8, o.n8, o.prefetch}}},
		{"bolt", []bcase{{"sync", 1, 1, o.nd1, 0}, {"async", 1, 1, o.nd1, 0}, {"async", 8, 8, o.nd8, 0}, {"asyncpipe", 8, 8, o.n8, 0},
			{"asyncpipe", 8, 8, o.n8, o.prefetch}}},
	}
	for _, p := range plan {
		say("broker zmwsd child, store=%s", p.store)
		z, err := startZmwsd(o.bin, o.tmp, "zmwsd-broker-"+p.store, p.store, false)
		if err != nil {
			return err
		}
		cpu0 := cpuTime(z.pid())
		t0 := time.Now()
		// Clients and workers share the harness's process.
		err = brokerCases(ctx, o, "zmwsd", p.store, z.client, z.worker, p.cases, nil, (&cpuMeter{}).add("harness", selfCPU).add("zmwsd", pidCPU(z.pid())))
		out("INFO zmwsd store=%s cpu_s=%.1f wall_s=%.1f rss_mb=%.1f", p.store, (cpuTime(z.pid()) - cpu0).Seconds(), time.Since(t0).Seconds(), float64(rssBytes(z.pid()))/(1<<20))
		z.stop()
		if err != nil {
			return err
		}
	}
	return nil
}
