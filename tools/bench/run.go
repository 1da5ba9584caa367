package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// opts are the knobs of a run.
type opts struct {
	bin, tmp      string
	runs          int
	n1, n8, nexec int
	nd1, nd8      int           // durable (bbolt) cases: each submit waits for an fsync
	drainMax      int           // jobs timed when draining a deep queue
	durableQueued int           // jobs submitted pipelined to a durable zmwsd
	caseTime      time.Duration // bound on each case (all its runs)
	scaleSizes    []int
	scaleWorkers  int
	scaleServices int
	scaleProcs    int
	prefetch      int    // the prefetching echo workers' worker.Config.Prefetch
	gmbench       string // the anchors' gmbench binary (brokercpu's gearmand case)
	nhttp, nasync int    // jobs per run, http section: sync; async acceptance
}

func cmdRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	o := &opts{}
	fs.StringVar(&o.bin, "bin", "", "folder with the zmwsd and zmws-run binaries (required)")
	fs.StringVar(&o.tmp, "tmp", "", "scratch folder for logs and data dirs (default: a new temp dir)")
	fs.IntVar(&o.runs, "runs", 5, "measured runs per case (median [min..max] reported), after one warm-up")
	quick := fs.Bool("quick", false, "smaller counts, no 1M queue, 3 runs unless -runs is given")
	only := fs.String("only", "broker,zmwsd,peers,exec,brokercpu,http,scale", "sections to run")
	fs.StringVar(&o.gmbench, "gmbench", "", "the anchors' gmbench binary, for brokercpu's gearmand case (empty: left out)")
	fs.IntVar(&o.nhttp, "nhttp", 1000, "jobs per run, http section (sync)")
	fs.IntVar(&o.nasync, "nasync", 3000, "jobs per run, http section (async acceptance, 16 clients)")
	fs.IntVar(&o.n1, "n1", 3000, "jobs per run, 1 client")
	fs.IntVar(&o.n8, "n8", 10000, "jobs per run, 8 clients")
	fs.IntVar(&o.nd1, "nd1", 1000, "jobs per run, 1 client, durable store")
	fs.IntVar(&o.nd8, "nd8", 5000, "jobs per run, 8 clients, durable store")
	fs.IntVar(&o.nexec, "nexec", 600, "jobs per run, exec cases")
	fs.IntVar(&o.drainMax, "drain", 50000, "jobs timed when draining a deep queue")
	fs.IntVar(&o.durableQueued, "scale-durable", 50000, "jobs submitted pipelined to a durable zmwsd (0: skip)")
	sizes := fs.String("scale-queued", "100000,1000000", "queued job counts for the scale section")
	fs.IntVar(&o.scaleWorkers, "scale-workers", 1000, "workers for the scale section (0: skip)")
	fs.IntVar(&o.scaleServices, "scale-services", 100, "services the scale workers serve")
	fs.IntVar(&o.scaleProcs, "scale-procs", 4, "processes the scale workers run in")
	fs.IntVar(&o.prefetch, "prefetch", 16, "prefetch of the echo workers in the prefetching zmwsd cases")
	fs.DurationVar(&o.caseTime, "casetime", 3*time.Minute, "bound on one case")
	maxTime := fs.Duration("maxtime", 30*time.Minute, "bound on the whole run")
	fs.Parse(args)
	if o.bin == "" {
		return fmt.Errorf("run: -bin is required")
	}
	runsSet := false
	fs.Visit(func(f *flag.Flag) { runsSet = runsSet || f.Name == "runs" })
	if *quick {
		if !runsSet {
			o.runs = 3
		}
		o.n1, o.n8, o.nexec = min(o.n1, 1000), min(o.n8, 4000), min(o.nexec, 300)
		o.nd1, o.nd8, o.drainMax = min(o.nd1, 500), min(o.nd8, 2000), min(o.drainMax, 20000)
		o.durableQueued = min(o.durableQueued, 20000)
		o.nhttp, o.nasync = min(o.nhttp, 400), min(o.nasync, 1000)
		if *sizes == "100000,1000000" {
			*sizes = "100000"
		}
	}
	for _, s := range strings.Split(*sizes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return fmt.Errorf("-scale-queued: bad count %q", s)
		}
		o.scaleSizes = append(o.scaleSizes, n)
	}
	if o.tmp == "" {
		d, err := os.MkdirTemp("", "zmws-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.tmp = d
	}
	watchdog(*maxTime)
	out("%s", hostLine())
	out("INFO zmws bench runs=%d n1=%d n8=%d nd1=%d nd8=%d nexec=%d payload_bytes=%d scale_queued=%v drain=%d scale_workers=%d/%d services in %d procs",
		o.runs, o.n1, o.n8, o.nd1, o.nd8, o.nexec, len(payload), o.scaleSizes, o.drainMax, o.scaleWorkers, o.scaleServices, o.scaleProcs)
	sections := []struct {
		name string
		fn   func(context.Context, *opts) error
	}{{"broker", sectionBroker}, {"zmwsd", sectionZmwsd}, {"peers", sectionPeers}, {"exec", sectionExec},
		{"brokercpu", sectionBrokerCPU}, {"http", sectionHTTP}, {"scale", sectionScale}}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	var failed []string
	for _, s := range sections {
		if !want[s.name] {
			continue
		}
		t0 := time.Now()
		if err := s.fn(ctx, o); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			out("FAILED %s: %v", s.name, err)
			failed = append(failed, s.name)
		}
		stopChildren()
		say("section %s took %v", s.name, time.Since(t0).Round(time.Second))
	}
	out("%s", hostLine())
	if len(failed) > 0 {
		return fmt.Errorf("sections failed: %s", strings.Join(failed, ", "))
	}
	return nil
}
