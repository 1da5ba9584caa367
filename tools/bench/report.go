package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// rng is a median with its min and max over runs.
type rng struct {
	Med float64 `json:"median"`
	Lo  float64 `json:"min"`
	Hi  float64 `json:"max"`
	Raw string  `json:"raw,omitempty"` // a non-numeric value (held=yes)
}

// sumLine is one parsed SUMMARY line.
type sumLine struct {
	File    string         `json:"file"`
	Label   string         `json:"label"`
	Runs    int            `json:"runs"`
	Metrics map[string]rng `json:"metrics"`
	tokens  map[string]bool
}

// parseSummary reads the three SUMMARY shapes of the anchors and of this
// harness:
//
//	SUMMARY label... runs=5 jobs_per_s=885 [878..1070] us_per_job=... p50_us=...
//	SUMMARY gearman-bg-done params... runs=5 done_jobs_per_s=9426 [8352..11588]
//	SUMMARY cli-sync workers=1 n=2000 jobs_per_s runs=5 median=662.1 [621.8..694.8]
func parseSummary(file, line string) (sumLine, bool) {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "SUMMARY" {
		return sumLine{}, false
	}
	f = f[1:]
	i := 0
	for i < len(f) && !strings.HasPrefix(f[i], "runs=") {
		i++
	}
	if i == len(f) {
		return sumLine{}, false
	}
	s := sumLine{File: file, Metrics: map[string]rng{}, tokens: map[string]bool{}}
	label := f[:i]
	s.Runs, _ = strconv.Atoi(strings.TrimPrefix(f[i], "runs="))
	for j := i + 1; j < len(f); j++ {
		k, v, ok := strings.Cut(f[j], "=")
		if !ok {
			continue
		}
		r := rng{}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			r.Raw = v
		} else {
			r.Med, r.Lo, r.Hi = x, x, x
		}
		if j+1 < len(f) && strings.HasPrefix(f[j+1], "[") {
			lo, hi, _ := strings.Cut(strings.Trim(f[j+1], "[]"), "..")
			if a, err := strconv.ParseFloat(lo, 64); err == nil {
				r.Lo = a
			}
			if b, err := strconv.ParseFloat(hi, 64); err == nil {
				r.Hi = b
			}
			j++
		}
		if k == "median" && len(label) > 1 {
			k = label[len(label)-1]
			label = label[:len(label)-1]
		}
		s.Metrics[k] = r
	}
	s.Label = strings.Join(label, " ")
	for _, t := range label {
		s.tokens[t] = true
	}
	return s, true
}

func readSummaries(paths []string) ([]sumLine, []string, error) {
	var all []sumLine
	var hosts []string
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "HOST ") {
				hosts = append(hosts, filepath.Base(p)+": "+sc.Text())
			}
			if s, ok := parseSummary(filepath.Base(p), sc.Text()); ok {
				all = append(all, s)
			}
		}
		f.Close()
	}
	return all, hosts, nil
}

// sel picks a SUMMARY line: file is a base name ("" for any), the label's
// first word is kind, and it has every token in has and none in not.
type sel struct {
	file, kind string
	has, not   []string
	metric     string
}

// without returns q that also rules out lines with token t.
func (q sel) without(t string) sel {
	q.not = append(q.not[:len(q.not):len(q.not)], t)
	return q
}

func (q sel) find(all []sumLine) (sumLine, rng, bool) {
	for _, s := range all {
		if q.file != "" && s.File != q.file {
			continue
		}
		if w := strings.Fields(s.Label); len(w) == 0 || w[0] != q.kind {
			continue
		}
		ok := true
		for _, t := range q.has {
			if !s.tokens[t] {
				ok = false
				break
			}
		}
		for _, t := range q.not {
			if s.tokens[t] {
				ok = false
			}
		}
		if m, found := s.Metrics[q.metric]; ok && found {
			return s, m, true
		}
	}
	return sumLine{}, rng{}, false
}

// row is one line of the ratio table.
type row struct {
	Group  string  `json:"group"`
	Name   string  `json:"name"`
	Zmws   *rng    `json:"zmws,omitempty"`
	Anchor *rng    `json:"anchor,omitempty"`
	Ratio  float64 `json:"ratio,omitempty"` // zmws median / anchor median
	Paired *rng    `json:"paired,omitempty"`
	Target string  `json:"target,omitempty"`
	Met    string  `json:"met,omitempty"` // met, not met, or "" (no target / no data)
	Unit   string  `json:"unit"`
}

type ratioSpec struct {
	group, name string
	z, a        sel
	paired      *sel
	min         float64 // target: ratio (or absolute value when a.kind == "") ≥ min; 0: none
	max         float64 // target: absolute value ≤ max; 0: none
	unit        string
}

const (
	gmDefault = "03_gearman_go.txt"
	gmT1      = "03_gearman_go_t_1.txt"
	gmCLI     = "02_gearman_cli.txt"
	zmqFile   = "04_zmq.txt"
)

func zsel(kind string, metric string, has ...string) sel {
	return sel{kind: kind, has: has, metric: metric}
}

// prefetchTag marks broker cases whose echo workers prefetch (run -prefetch).
const prefetchTag = "prefetching"

func specs() []ratioSpec {
	var sp []ratioSpec
	add := func(s ratioSpec) { sp = append(sp, s) }
	// Exec: zmws-run vs bare exec and vs gearman's CLI worker. store=bolt
	// is zmwsd's default (the durable journal), store=none is --data-dir "".
	// Rows without "prestart" in their name are the default zmws-run
	// (--prestart off): their selectors rule out the prestart lines.
	type via struct {
		via, store string
		prestart   bool
		prefetch   bool // --prefetch 1
	}
	for _, c := range []string{"1", "2"} {
		bare := zsel("bare-exec", "jobs_per_s", "p="+c)
		for _, v := range []via{{"client", "bolt", false, false}, {"client", "none", false, false}, {"http", "bolt", false, false},
			{"client", "bolt", true, false}, {"client", "none", true, false}, {"client", "bolt", true, true}, {"client", "none", true, true}} {
			minSync, minAsync := 0.90, 0.95
			if v.via == "http" {
				minSync, minAsync = 0, 0
			}
			tags := []string{"via=" + v.via, "store=" + v.store, "c=" + c}
			what := "via " + v.via + ", store=" + v.store + ", c=" + c + " / bare exec p=" + c
			if v.prestart {
				tags = append(tags, "prestart")
				what = "--prestart " + what
			}
			if v.prefetch {
				tags = append(tags, "prefetch=1")
				what = "--prefetch 1 " + what
			}
			ps := sel{kind: "paired", has: append([]string{"zmws-run-sync/bare-exec"}, tags...), metric: "ratio"}
			pa := sel{kind: "paired", has: append([]string{"zmws-run-async/bare-exec"}, tags...), metric: "ratio"}
			zs, za := zsel("zmws-run-sync", "jobs_per_s", tags...), zsel("zmws-run-async-done", "done_jobs_per_s", tags...)
			if !v.prestart {
				ps, pa, zs, za = ps.without("prestart"), pa.without("prestart"), zs.without("prestart"), za.without("prestart")
			}
			if !v.prefetch {
				ps, pa, zs, za = ps.without("prefetch=1"), pa.without("prefetch=1"), zs.without("prefetch=1"), za.without("prefetch=1")
			}
			add(ratioSpec{"exec", "zmws-run sync " + what, zs, bare, &ps, minSync, 0, "jobs/s"})
			add(ratioSpec{"exec", "zmws-run async all done " + what, za, bare, &pa, minAsync, 0, "jobs/s"})
		}
	}
	for _, st := range []string{"none", "bolt"} {
		add(ratioSpec{"exec", "zmws-run sync c=1 store=" + st + " / gearman Go client to CLI worker, 1 worker", zsel("zmws-run-sync", "jobs_per_s", "via=client", "store="+st, "c=1").without("prestart"),
			sel{file: gmCLI, kind: "go-client-to-cli-worker", has: []string{"clients=1"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
		add(ratioSpec{"exec", "zmws-run sync c=2 store=" + st + " / gearman Go client to CLI worker, 2 workers", zsel("zmws-run-sync", "jobs_per_s", "via=client", "store="+st, "c=2").without("prestart"),
			sel{file: gmCLI, kind: "go-client-to-cli-worker", has: []string{"clients=2"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
		for _, c := range []string{"1", "2"} {
			add(ratioSpec{"exec", "zmws-run async done c=" + c + " store=" + st + " / gearman CLI -b done, " + c + " worker(s)", zsel("zmws-run-async-done", "done_jobs_per_s", "via=client", "store="+st, "c="+c).without("prestart"),
				sel{file: gmCLI, kind: "cli-bg", has: []string{"workers=" + c}, metric: "done_jobs_per_s"}, nil, 0, 0, "jobs/s"})
		}
	}
	add(ratioSpec{"exec", "zmws-run sync c=1 store=none / gearman CLI sync (seq | gearman -n), 1 worker", zsel("zmws-run-sync", "jobs_per_s", "via=client", "store=none", "c=1").without("prestart"),
		sel{file: gmCLI, kind: "cli-sync", has: []string{"workers=1"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
	add(ratioSpec{"exec", "zmws-run sync c=2 store=none / gearman CLI sync, 2 workers x 2 clients", zsel("zmws-run-sync", "jobs_per_s", "via=client", "store=none", "c=2").without("prestart"),
		sel{file: gmCLI, kind: "cli-sync", has: []string{"2clients"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
	// Broker only. The headline is zmwsd as a process of its own (as
	// gearmand); in-process rows follow.
	for _, where := range []string{"zmwsd", "inproc"} {
		g := "broker (" + where + ")"
		w := "where=" + where
		// Not brokercpu's 8x8 (procs=3: its workers in a child), which has
		// rows of its own.
		s11 := zsel("zmws-sync", "jobs_per_s", w, "store=none", "workers=1", "clients=1")
		s88 := zsel("zmws-sync", "jobs_per_s", w, "store=none", "workers=8", "clients=8").without("procs=3")
		t := func(x float64) float64 {
			if where == "zmwsd" {
				return x
			}
			return 0
		}
		add(ratioSpec{g, "sync 1x1 / gearmand (default -t 4) 1x1", s11, sel{file: gmDefault, kind: "gearman-sync", has: []string{"workers=1", "clients=1"}, metric: "jobs_per_s"}, nil, t(1.0), 0, "jobs/s"})
		add(ratioSpec{g, "sync 1x1 / gearmand -t 1 1x1", s11, sel{file: gmT1, kind: "gearman-sync", has: []string{"workers=1", "clients=1"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
		add(ratioSpec{g, "sync 8x8 / gearmand -t 1 8x8", s88, sel{file: gmT1, kind: "gearman-sync", has: []string{"workers=8", "clients=8"}, metric: "jobs_per_s"}, nil, t(1.5), 0, "jobs/s"})
		add(ratioSpec{g, "sync 8x8 / gearmand (default) 8x8", s88, sel{file: gmDefault, kind: "gearman-sync", has: []string{"workers=8", "clients=8"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
		// The 0.9x target is judged in the peers group, against a proxy hop
		// measured in the same rounds; this row is for reference.
		add(ratioSpec{g, "sync 1x1 / ZeroMQ one hop via zmq_proxy (C), window 1 (04_zmq.sh)", s11, sel{file: zmqFile, kind: "zmq", has: []string{"proxy-c", "window=1"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
		add(ratioSpec{g, "sync 1x1 / ZeroMQ one hop via Go LRU broker 1x1", s11, sel{file: zmqFile, kind: "zmq", has: []string{"proxy-lru-w1"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
		add(ratioSpec{g, "sync 8x8 / ZeroMQ one hop via Go LRU broker 8x8", s88, sel{file: zmqFile, kind: "zmq", has: []string{"proxy-lru-w8"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
		for _, st := range []string{"none", "bolt"} {
			add(ratioSpec{g, "async 1x1 store=" + st + " all done / gearmand bg 1x1 done", zsel("zmws-async-done", "done_jobs_per_s", w, "store="+st, "workers=1", "clients=1").without(prefetchTag),
				sel{file: gmDefault, kind: "gearman-bg-done", has: []string{"workers=1", "clients=1"}, metric: "done_jobs_per_s"}, nil, 0, 0, "jobs/s"})
			add(ratioSpec{g, "async 8x8 store=" + st + " all done / gearmand bg 8x8 done", zsel("zmws-async-done", "done_jobs_per_s", w, "store="+st, "workers=8", "clients=8").without(prefetchTag),
				sel{file: gmDefault, kind: "gearman-bg-done", has: []string{"workers=8", "clients=8"}, metric: "done_jobs_per_s"}, nil, 0, 0, "jobs/s"})
			add(ratioSpec{g, "async 8x8 store=" + st + ", workers prefetching (-prefetch, 16), all done / gearmand bg 8x8 done", zsel("zmws-async-done", "done_jobs_per_s", w, "store="+st, "workers=8", "clients=8", prefetchTag),
				sel{file: gmDefault, kind: "gearman-bg-done", has: []string{"workers=8", "clients=8"}, metric: "done_jobs_per_s"}, nil, 0, 0, "jobs/s"})
		}
		add(ratioSpec{g, "durable async 8x8 submitted and all done (absolute)", zsel("zmws-async-done", "done_jobs_per_s", w, "store=bolt", "workers=8", "clients=8").without(prefetchTag),
			sel{}, nil, t(20000), 0, "jobs/s"})
		add(ratioSpec{g, "durable async 8x8, pipelined submits (SubmitMany), submitted and all done (absolute)", zsel("zmws-asyncpipe-done", "done_jobs_per_s", w, "store=bolt", "workers=8", "clients=8").without(prefetchTag),
			sel{}, nil, t(20000), 0, "jobs/s"})
		add(ratioSpec{g, "durable async 8x8, pipelined submits, workers prefetching (-prefetch, 16), submitted and all done (absolute)", zsel("zmws-asyncpipe-done", "done_jobs_per_s", w, "store=bolt", "workers=8", "clients=8", prefetchTag),
			sel{}, nil, t(20000), 0, "jobs/s"})
	}
	// Where a sync job's time goes: raw DEALER peers vs the libraries,
	// against zmwsd (no store), alternating run by run.
	for _, pc := range [][2]string{{"raw", "raw"}, {"lib", "raw"}, {"raw", "lib"}, {"lib", "lib"}} {
		if pc == [2]string{"raw", "raw"} {
			continue
		}
		ps := &sel{kind: "paired", has: []string{"zmws-sync-peers/raw-raw", "client=" + pc[0], "worker=" + pc[1], "workers=1"}, metric: "ratio"}
		add(ratioSpec{"broker (peers)", "sync 1x1, " + pc[0] + " client + " + pc[1] + " worker / raw client + raw worker, same rounds",
			zsel("zmws-sync-peers", "jobs_per_s", "client="+pc[0], "worker="+pc[1], "workers=1"),
			zsel("zmws-sync-peers", "jobs_per_s", "client=raw", "worker=raw", "workers=1"), ps, 0, 0, "jobs/s"})
	}
	add(ratioSpec{"broker (peers)", "sync 1x1, raw client + raw worker / gearmand (default) 1x1",
		zsel("zmws-sync-peers", "jobs_per_s", "client=raw", "worker=raw", "workers=1"),
		sel{file: gmDefault, kind: "gearman-sync", has: []string{"workers=1", "clients=1"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
	add(ratioSpec{"broker (peers)", "sync 8x8, raw clients + raw workers / gearmand -t 1 8x8",
		zsel("zmws-sync-peers", "jobs_per_s", "client=raw", "worker=raw", "workers=8"),
		sel{file: gmT1, kind: "gearman-sync", has: []string{"workers=8", "clients=8"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
	add(ratioSpec{"broker (peers)", "sync 8x8, raw clients + raw workers / ZeroMQ Go LRU broker 8x8",
		zsel("zmws-sync-peers", "jobs_per_s", "client=raw", "worker=raw", "workers=8"),
		sel{file: zmqFile, kind: "zmq", has: []string{"proxy-lru-w8"}, metric: "jobs_per_s"}, nil, 0, 0, "jobs/s"})
	hop := sel{kind: "zmq-proxy-hop", has: []string{"window=1"}, metric: "jobs_per_s"}
	for _, pc := range [][2]string{{"lib", "lib"}, {"raw", "raw"}} {
		ph := sel{kind: "paired", has: []string{"zmws-sync-peers/zmq-proxy-hop", "client=" + pc[0], "worker=" + pc[1]}, metric: "ratio"}
		minRatio := 0.0
		if pc[0] == "lib" {
			minRatio = 0.9
		}
		add(ratioSpec{"broker (peers)", "sync 1x1, " + pc[0] + " client + " + pc[1] + " worker / zmq_proxy (C) hop, window 1, same rounds",
			zsel("zmws-sync-peers", "jobs_per_s", "client="+pc[0], "worker="+pc[1], "workers=1"), hop, &ph, minRatio, 0, "jobs/s"})
	}
	ps8 := sel{kind: "paired", has: []string{"zmws-sync-peers/raw-raw", "client=lib", "worker=lib", "workers=8"}, metric: "ratio"}
	add(ratioSpec{"broker (peers)", "sync 8x8, lib clients + lib workers / raw clients + raw workers, same rounds",
		zsel("zmws-sync-peers", "jobs_per_s", "client=lib", "worker=lib", "workers=8"),
		zsel("zmws-sync-peers", "jobs_per_s", "client=raw", "worker=raw", "workers=8"), &ps8, 0, 0, "jobs/s"})
	// CPU per job, by process (the SUMMARY cpu lines), against the anchors
	// measured in the same rounds: the ratio column divides the medians, the
	// paired one is the median of the ratios round by round.
	cpuSel := func(metric string, has ...string) sel { return sel{kind: "cpu", has: has, metric: metric} }
	cr := func(has ...string) *sel { return &sel{kind: "cpuratio", has: has, metric: "ratio"} }
	proxy8 := cpuSel("broker", "zmq-proxy-hop", "workers=8", "clients=8")
	for _, st := range []string{"none", "bolt"} {
		z8 := cpuSel("zmwsd", "zmws-sync", "where=zmwsd", "store="+st, "workers=8", "clients=8", "procs=3")
		add(ratioSpec{"cpu", "zmwsd CPU per sync job, 8x8, store=" + st + " / zmq_proxy (C) CPU per round trip, 8x8, same rounds", z8, proxy8,
			cr("zmwsd/zmq_proxy", "store="+st), 0, 0, "µs"})
		add(ratioSpec{"cpu", "zmwsd CPU per sync job, 8x8, store=" + st + " / gearmand -t 1 CPU per job, 8x8, same rounds", z8,
			cpuSel("broker", "gearman-sync", "workers=8", "clients=8"), cr("zmwsd/gearmand", "store="+st), 0, 0, "µs"})
	}
	for _, an := range []struct{ name, kind, pair, procs string }{{"zmq_proxy (C)", "zmq-proxy-hop", "zmwsd/zmq_proxy", "procs=3"}, {"gearmand -t 1", "gearman-sync", "zmwsd/gearmand", "procs=2"}} {
		for _, st := range []string{"none", "bolt"} {
			if st == "bolt" && an.kind == "gearman-sync" {
				continue
			}
			add(ratioSpec{"cpu", "zmwsd sync 8x8 jobs/s, store=" + st + " / " + an.name + " 8x8, same rounds",
				zsel("zmws-sync", "jobs_per_s", "where=zmwsd", "store="+st, "workers=8", "clients=8", "procs=3"),
				sel{kind: an.kind, has: []string{"workers=8", "clients=8", an.procs}, metric: "jobs_per_s"}, // this section's, not the anchors' files
				&sel{kind: "paired", has: []string{"brokercpu", an.pair, "store=" + st}, metric: "ratio"}, 0, 0, "jobs/s"})
		}
	}
	add(ratioSpec{"cpu", "Go client CPU per sync call, 8x8 (zmwsd, no store) / raw DEALER client CPU per round trip (zmq_proxy), same rounds",
		cpuSel("client", "zmws-sync", "where=zmwsd", "store=none", "workers=8", "procs=3"), cpuSel("client", "zmq-proxy-hop", "workers=8"),
		cr("client/raw-client"), 0, 0, "µs"})
	add(ratioSpec{"cpu", "Go echo worker CPU per job, 8x8 (zmwsd, no store) / raw echo DEALER CPU per round trip (zmq_proxy), same rounds",
		cpuSel("worker", "zmws-sync", "where=zmwsd", "store=none", "workers=8", "procs=3"), cpuSel("worker", "zmq-proxy-hop", "workers=8"),
		cr("worker/raw-worker"), 0, 0, "µs"})
	for _, c := range []string{"1", "2"} {
		for _, st := range []string{"bolt", "none"} {
			add(ratioSpec{"cpu", "zmws-run CPU per rev job, sync via client, store=" + st + ", c=" + c + " / bare exec parent CPU per spawn, p=" + c + ", same rounds",
				cpuSel("zmws-run", "zmws-run-sync", "via=client", "store="+st, "c="+c).without("prestart"), cpuSel("client", "bare-exec", "p="+c),
				ptr(cr("zmws-run-sync/exec-parent", "via=client", "store="+st, "c="+c).without("prestart")), 0, 0, "µs"})
		}
	}
	// HTTP: the gateway against webhook running the same echo, same rounds.
	for _, c := range []string{"1", "2"} {
		add(ratioSpec{"http", "zmws HTTP sync (journal) / webhook, echo, hey c=" + c + ", same rounds",
			zsel("http-sync", "jobs_per_s", "server=zmws", "c="+c), zsel("http-sync", "jobs_per_s", "server=webhook", "c="+c),
			&sel{kind: "paired", has: []string{"http-sync", "zmws/webhook", "c=" + c}, metric: "ratio"}, 0, 0, "jobs/s"})
		add(ratioSpec{"http", "zmws HTTP sync CPU per job, all processes / webhook's, echo, c=" + c + ", same rounds",
			cpuSel("total", "http-sync", "server=zmws", "c="+c), cpuSel("total", "http-sync", "server=webhook", "c="+c),
			cr("http-sync", "zmws/webhook", "c="+c), 0, 0, "µs"})
	}
	add(ratioSpec{"http", "zmws HTTP async acceptance with the journal, 16 hey clients (absolute)",
		zsel("http-async-accept", "jobs_per_s", "c=16"), sel{}, nil, 0, 0, "jobs/s"})
	// Scale.
	for _, n := range []string{"100000", "1000000"} {
		add(ratioSpec{"scale", "bytes per queued job beyond its payload, " + n + " queued (zmwsd RSS)", zsel("zmws-scale-queue", "bytes_per_job_beyond_payload", "store=none", "jobs="+n), sel{}, nil, 0, 300, "B"})
		add(ratioSpec{"scale", "drain rate, " + n + " queued, 8 workers", zsel("zmws-scale-queue", "drain_jobs_per_s", "store=none", "jobs="+n), sel{}, nil, 0, 0, "jobs/s"})
		add(ratioSpec{"scale", "pipelined submit rate, " + n + " jobs (window 1000)", zsel("zmws-scale-queue", "submit_jobs_per_s", "store=none", "jobs="+n), sel{}, nil, 0, 0, "jobs/s"})
	}
	add(ratioSpec{"scale", "1M queued jobs held", zsel("zmws-scale-queue", "held", "store=none", "jobs=1000000"), sel{}, nil, 0, 0, ""})
	add(ratioSpec{"scale", "durable (bbolt) pipelined submit rate (window 1000)", zsel("zmws-scale-queue", "submit_jobs_per_s", "store=bolt"), sel{}, nil, 0, 0, "jobs/s"})
	add(ratioSpec{"scale", "durable (bbolt) drain rate of a deep queue, 8 workers", zsel("zmws-scale-queue", "drain_jobs_per_s", "store=bolt"), sel{}, nil, 0, 0, "jobs/s"})
	add(ratioSpec{"scale", "sync 8 clients over 1,000 workers / 100 services", zsel("zmws-sync", "jobs_per_s", "workers=1000"), sel{}, nil, 0, 0, "jobs/s"})
	add(ratioSpec{"scale", "async all done over 1,000 workers / 100 services", zsel("zmws-async-done", "done_jobs_per_s", "workers=1000"), sel{}, nil, 0, 0, "jobs/s"})
	add(ratioSpec{"scale", "zmwsd idle CPU with 1,000 workers (heartbeats), %", zsel("zmws-scale-workers", "idle_cpu_pct"), sel{}, nil, 0, 0, "%"})
	add(ratioSpec{"scale", "zmwsd RSS with 1,000 workers, MiB", zsel("zmws-scale-workers", "rss_mb"), sel{}, nil, 0, 0, "MiB"})
	return sp
}

func buildRows(all []sumLine) []row {
	var rows []row
	for _, s := range specs() {
		r := row{Group: s.group, Name: s.name, Unit: s.unit}
		_, zm, zok := s.z.find(all)
		if zok {
			r.Zmws = &zm
		}
		if s.a.kind != "" {
			if _, am, ok := s.a.find(all); ok {
				r.Anchor = &am
				if zok && am.Med > 0 {
					r.Ratio = zm.Med / am.Med
				}
			}
		}
		if s.paired != nil {
			if _, pm, ok := s.paired.find(all); ok {
				r.Paired = &pm
			}
		}
		if !zok {
			continue
		}
		switch {
		case s.min > 0 && s.a.kind != "":
			// Judged on the paired ratio when there is one (same rounds,
			// same noise), else on the ratio of medians.
			r.Target = fmt.Sprintf("≥ %.2f×", s.min)
			if r.Paired != nil {
				r.Met = metStr(r.Paired.Med >= s.min)
			} else if r.Anchor != nil {
				r.Met = metStr(r.Ratio >= s.min)
			}
		case s.min > 0:
			r.Target = fmt.Sprintf("≥ %.0f", s.min)
			r.Met = metStr(zm.Med >= s.min)
		case s.max > 0:
			r.Target = fmt.Sprintf("≤ %.0f", s.max)
			r.Met = metStr(zm.Med <= s.max)
		}
		if zm.Raw == "yes" && strings.Contains(s.name, "held") {
			r.Target, r.Met = "yes", "met"
		}
		rows = append(rows, r)
	}
	return rows
}

func ptr[T any](v T) *T { return &v }

// cpuTable prints the SUMMARY cpu lines as one table: a row per case, a
// column per process (medians over the runs, µs per job).
func cpuTable(all []sumLine) {
	var lines []sumLine
	seen := map[string]bool{}
	for _, s := range all {
		if w := strings.Fields(s.Label); len(w) > 0 && w[0] == "cpu" {
			lines = append(lines, s)
			for k := range s.Metrics {
				seen[k] = true
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	var cols []string
	for _, c := range cpuOrder {
		if seen[c] {
			cols = append(cols, c)
			delete(seen, c)
		}
	}
	delete(seen, "total")
	var rest []string
	for k := range seen {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	cols = append(append(cols, rest...), "total")
	fmt.Println()
	fmt.Println("CPU per job, by process (us; median over the runs):")
	fmt.Println()
	fmt.Println("| case | " + strings.Join(cols, " | ") + " |")
	fmt.Println("| --- |" + strings.Repeat(" --- |", len(cols)))
	for _, s := range lines {
		cells := make([]string, len(cols))
		for i, c := range cols {
			if m, ok := s.Metrics[c]; ok {
				cells[i] = fmt.Sprintf("%.0f", m.Med)
			}
		}
		fmt.Printf("| %s | %s |\n", strings.TrimPrefix(s.Label, "cpu "), strings.Join(cells, " | "))
	}
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func fmtRng(r *rng, unit string) string {
	if r == nil {
		return "—"
	}
	if r.Raw != "" {
		return r.Raw
	}
	f := "%.0f"
	if r.Med < 100 {
		f = "%.2f"
	}
	if r.Lo == r.Hi {
		return fmt.Sprintf(f, r.Med)
	}
	return fmt.Sprintf(f+" ["+f+".."+f+"]", r.Med, r.Lo, r.Hi)
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	jsonOut := fs.String("json", "", "also write the table and every SUMMARY line as JSON to this file")
	fs.Parse(args)
	all, hosts, err := readSummaries(fs.Args())
	if err != nil {
		return err
	}
	rows := buildRows(all)
	fmt.Println("| group | comparison | zmws | anchor | ratio | paired ratio | target | |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		ratio := "—"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Group, r.Name, fmtRng(r.Zmws, r.Unit), fmtRng(r.Anchor, r.Unit), ratio, fmtRng(r.Paired, ""), orDash(r.Target), r.Met)
	}
	cpuTable(all)
	fmt.Println()
	fmt.Println("zmws cases (median [min..max]):")
	fmt.Println()
	fmt.Println("| case | jobs/s | p50 µs | p99 µs | all done jobs/s |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	done := map[string]rng{}
	for _, s := range all {
		if strings.HasSuffix(strings.Fields(s.Label)[0], "-done") {
			k := strings.Replace(s.Label, "-done ", " ", 1)
			done[k] = s.Metrics["done_jobs_per_s"]
		}
	}
	for _, s := range all {
		w := strings.Fields(s.Label)[0]
		if !(strings.HasPrefix(w, "zmws-") || strings.HasPrefix(w, "http-") || w == "bare-exec" || w == "zmq-proxy-hop" || w == "gearman-sync" && s.tokens["procs=2"]) || strings.HasSuffix(w, "-done") || strings.HasPrefix(w, "zmws-scale") || s.Metrics["jobs_per_s"] == (rng{}) {
			continue
		}
		j, p50, p99 := s.Metrics["jobs_per_s"], s.Metrics["p50_us"], s.Metrics["p99_us"]
		d := "—"
		if x, ok := done[s.Label]; ok {
			d = fmtRng(&x, "")
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", s.Label, fmtRng(&j, ""), fmtRng(&p50, ""), fmtRng(&p99, ""), d)
	}
	for _, h := range hosts {
		fmt.Println("\n" + h)
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(struct {
			Hosts     []string  `json:"hosts"`
			Rows      []row     `json:"rows"`
			Summaries []sumLine `json:"summaries"`
		}{hosts, rows, all}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
