package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// pipelinedSubmit submits jobs async jobs to svc on one DEALER socket,
// keeping window requests in flight (the client library has one request
// in flight per Client), and checks that each was accepted.
func pipelinedSubmit(ep, svc string, jobs, window int, deadline time.Time) (time.Duration, error) {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	s.SetLinger(0)
	s.SetSndhwm(0)
	s.SetRcvhwm(0)
	if err := s.Connect(ep); err != nil {
		return 0, err
	}
	req := protocol.EncodeClient(protocol.Message{Form: protocol.Form{Version: protocol.V2}, Cmd: protocol.CmdRequest,
		Service: svc, Body: [][]byte{protocol.EncodeMeta(protocol.Meta{}), payload}})
	parts := make([]any, len(req))
	for i, f := range req {
		parts[i] = f
	}
	poller := zmq.NewPoller()
	poller.Add(s, zmq.POLLIN)
	sent, got := 0, 0
	t0 := time.Now()
	for got < jobs {
		for sent < jobs && sent-got < window {
			if _, err := s.SendMessage(parts...); err != nil {
				return 0, err
			}
			sent++
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("submit: %d of %d accepted before the deadline", got, jobs)
		}
		ps, err := poller.Poll(10 * time.Second)
		if err != nil {
			return 0, err
		}
		if len(ps) == 0 {
			return 0, fmt.Errorf("submit: no reply for 10 s (%d of %d accepted)", got, jobs)
		}
		for {
			msg, err := s.RecvMessageBytes(zmq.DONTWAIT)
			if err != nil {
				break
			}
			m, err := protocol.DecodeReply(msg)
			if err != nil {
				return 0, err
			}
			meta, _, _, err := protocol.SplitMeta(m.Body)
			if err != nil {
				return 0, err
			}
			if meta.Status != protocol.StatusAccepted {
				return 0, fmt.Errorf("submit %d: %s %s %s", got, meta.Status, meta.Code, meta.Error)
			}
			got++
		}
	}
	return time.Since(t0), nil
}

// sectionScale: zmwsd (no store, as --data-dir "") holding sizes queued
// jobs of a known service with no worker: its RSS, then the drain rate
// when 8 echo workers attach. Then 1,000 workers over 100 services.
func sectionScale(ctx context.Context, o *opts) error {
	for _, n := range o.scaleSizes {
		say("scale: %d queued jobs", n)
		if err := scaleQueue(ctx, o, "none", n, o.drainMax); err != nil {
			return err
		}
	}
	if o.durableQueued > 0 {
		// What group commit does when submissions are pipelined rather
		// than one in flight per client.
		say("scale: %d queued jobs, durable", o.durableQueued)
		if err := scaleQueue(ctx, o, "bolt", o.durableQueued, min(o.drainMax, o.durableQueued/2)); err != nil {
			return err
		}
	}
	if o.scaleWorkers > 0 {
		say("scale: %d workers over %d services", o.scaleWorkers, o.scaleServices)
		return scaleWorkers(ctx, o)
	}
	return nil
}

func scaleQueue(ctx context.Context, o *opts, storeKind string, n, drainMax int) error {
	z, err := startZmwsd(o.bin, o.tmp, fmt.Sprintf("zmwsd-queue-%s-%d", storeKind, n), storeKind, false, "--max-queue", fmt.Sprint(n+1000))
	if err != nil {
		return err
	}
	defer z.stop()
	q, err := client.New(client.Config{Broker: z.client, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer q.Close()
	// A service must have been offered once before jobs queue for it.
	stop, err := startEchoWorkers(ctx, z.worker, "scale", 1)
	if err != nil {
		return err
	}
	if err := waitWorkers(ctx, q, one("scale"), 1, 10*time.Second); err != nil {
		stop()
		return err
	}
	stop()
	for range 100 { // until the worker is gone
		ss, err := q.Services(ctx)
		if err == nil && len(ss) == 1 && ss[0].WorkersIdle+ss[0].WorkersBusy == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	rss0 := rssBytes(z.pid())
	deadline := time.Now().Add(o.caseTime * 4)
	sub, err := pipelinedSubmit(z.client, "scale", n, 1000, deadline)
	if err != nil {
		return err
	}
	_, open, err := finished(ctx, q, one("scale"))
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // let the runtime settle
	rss1 := rssBytes(z.pid())
	hwm, _ := procStatus(z.pid(), "VmHWM")
	perJob := float64(rss1-rss0) / float64(n)
	label := fmt.Sprintf("zmws-scale-queue where=zmwsd store=%s jobs=%d", storeKind, n)
	out("INFO %s queued=%d rss_before_mb=%.1f rss_after_mb=%.1f hwm_mb=%.1f payload_bytes=%d", label, open, float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(hwm)/1024, len(payload))
	held := "yes"
	if open != n {
		held = "no"
	}

	// Drain: attach 8 echo workers, time the first drainMax jobs (the
	// queue stays deep meanwhile).
	drained := min(n, drainMax)
	cpu0 := cpuTime(z.pid())
	t0 := time.Now()
	stop, err = startEchoWorkers(ctx, z.worker, "scale", 8)
	if err != nil {
		return err
	}
	t, err := waitFinished(ctx, q, one("scale"), uint64(drained), 20*time.Millisecond, time.Now().Add(o.caseTime*2))
	cpu := cpuTime(z.pid()) - cpu0
	stop()
	if err != nil {
		return err
	}
	drain := t.Sub(t0)
	out("%s", valueSummary(label, "rss_mb", float64(rss1)/(1<<20), "bytes_per_job", perJob,
		"bytes_per_job_beyond_payload", perJob-float64(len(payload)), "held", held,
		"submit_jobs_per_s", float64(n)/sub.Seconds(), "drained", drained, "drain_jobs_per_s", float64(drained)/drain.Seconds(),
		"broker_cpu_us_per_job", float64(cpu.Microseconds())/float64(drained)))
	return nil
}

// scaleWorkers: scaleWorkers worker slots over scaleServices services in
// scaleProcs child processes (bench workers), then sync and async runs
// spread over all services.
func scaleWorkers(ctx context.Context, o *opts) error {
	z, err := startZmwsd(o.bin, o.tmp, "zmwsd-workers", "none", false)
	if err != nil {
		return err
	}
	defer z.stop()
	q, err := client.New(client.Config{Broker: z.client, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer q.Close()
	per := max(1, o.scaleWorkers/o.scaleServices)
	names := make([]string, o.scaleServices)
	all := map[string]bool{}
	for i := range names {
		names[i] = fmt.Sprintf("svc-%03d", i)
		all[names[i]] = true
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	procs := max(1, o.scaleProcs)
	rss0 := rssBytes(z.pid())
	t0 := time.Now()
	var kids []*child
	defer func() {
		for _, k := range kids {
			k.stop()
		}
	}()
	for p := range procs {
		var mine []string
		for i := p; i < len(names); i += procs {
			mine = append(mine, names[i])
		}
		k, err := startChild(fmt.Sprintf("workers-%d", p), filepath.Join(o.tmp, fmt.Sprintf("workers-%d.log", p)), self,
			"workers", "-broker", z.worker, "-services", strings.Join(mine, ","), "-per", fmt.Sprint(per))
		if err != nil {
			return err
		}
		kids = append(kids, k)
	}
	total := per * len(names)
	if err := waitWorkers(ctx, q, all, total, 60*time.Second); err != nil {
		return err
	}
	reg := time.Since(t0)
	time.Sleep(time.Second)
	cpu0, w0 := cpuTime(z.pid()), time.Now()
	time.Sleep(5 * time.Second)
	idle := float64(cpuTime(z.pid())-cpu0) / float64(time.Since(w0)) * 100
	rss1 := rssBytes(z.pid())
	label := fmt.Sprintf("zmws-scale-workers where=zmwsd workers=%d services=%d", total, len(names))
	out("%s", valueSummary(label, "register_s", reg.Seconds(), "rss_mb", float64(rss1)/(1<<20),
		"rss_kb_per_worker", float64(rss1-rss0)/1024/float64(total), "idle_cpu_pct", idle, "fds", fdCount(z.pid())))

	cs, err := newClients(z.client, 8)
	if err != nil {
		return err
	}
	defer closeClients(cs)
	svcOf := func(i int) string { return names[i%len(names)] }
	n := max(1000, o.n8/2)
	tag := fmt.Sprintf("where=zmwsd store=none workers=%d services=%d clients=8 n=%d", total, len(names), n)
	deadline := time.Now().Add(o.caseTime)
	meter := (&cpuMeter{}).add("client", selfCPU).add("zmwsd", pidCPU(z.pid())).add("worker", func() time.Duration {
		var d time.Duration
		for _, k := range kids {
			d += pidCPU(k.pid())()
		}
		return d
	})
	rs, cr, err := repeatCPU(meter, "zmws-sync "+tag, o.runs, 500, n, func(jobs int) (run, error) {
		return syncRun(ctx, cs, svcOf, jobs, deadline)
	})
	if err != nil {
		return err
	}
	out("%s", summary("zmws-sync "+tag, rs))
	out("%s", cr.summary("zmws-sync "+tag))
	deadline = time.Now().Add(o.caseTime)
	rs, cr, err = repeatCPU(meter, "zmws-async "+tag, o.runs, 500, n, func(jobs int) (run, error) {
		return asyncRun(ctx, cs, q, all, svcOf, jobs, 10*time.Millisecond, deadline)
	})
	if err != nil {
		return err
	}
	out("%s", summary("zmws-async "+tag, rs))
	out("%s", cr.summary("zmws-async "+tag))
	out("%s", doneSummary("zmws-async-done "+tag, rs))
	for _, k := range kids {
		if k.exited() {
			return fmt.Errorf("%s exited early: %s", k.name, tail(k.log, 1000))
		}
	}
	return nil
}

// cmdWorkers is the child of scaleWorkers: -per echo worker slots for
// each of -services, until SIGTERM.
func cmdWorkers(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("workers", flag.ExitOnError)
	ep := fs.String("broker", "", "broker worker endpoint")
	svcs := fs.String("services", "", "comma-separated service names")
	per := fs.Int("per", 10, "worker slots per service")
	procs := fs.Int("procs", 1, "GOMAXPROCS (0: Go's default)")
	fs.Parse(args)
	if *ep == "" || *svcs == "" {
		return fmt.Errorf("workers: -broker and -services are required")
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs) // many processes share 2 cores: keep each light
	}
	var stops []func()
	for _, s := range strings.Split(*svcs, ",") {
		stop, err := startEchoWorkers(ctx, *ep, s, *per)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
	}
	<-ctx.Done()
	for _, s := range stops {
		s()
	}
	return nil
}
