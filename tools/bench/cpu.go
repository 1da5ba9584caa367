package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU per job, by process. A case names the processes it loads (the
// client side, zmwsd, the broker of an anchor, the workers, zmws-run, the
// commands, webhook) and how to read each one's CPU time; a meter reads
// them all before and after each measured run, and the run's CPU per job
// is the difference over its jobs. Medians are taken over the runs, and
// ratios between cases of the same round (cpuRatio) over the rounds, so
// "zmwsd CPU per job / zmq_proxy CPU per round trip" is one number of one
// run.
//
// Sources: the sum of /proc/PID/task/*/schedstat of a live child (ns; its
// /proc/PID/stat utime+stime, in 10 ms ticks, without schedstat), its
// cutime+cstime for the commands it has waited for (ticks: a run is sized
// so that they are tens of ticks or more), getrusage for the
// harness itself (RUSAGE_SELF) and for children that have exited (wait4's
// rusage, via os.ProcessState).

// cpuOrder is the column order of the CPU table; names not in it follow.
// "harness" is the harness's process where it holds both clients and
// workers (the broker, zmwsd and peers sections).
var cpuOrder = []string{"client", "harness", "zmwsd", "broker", "worker", "gmbench", "zmws-run", "commands", "webhook"}

// cpuProc is one process (or group of processes) a case's CPU is read from.
type cpuProc struct {
	name string
	read func() time.Duration
}

// cpuMeter reads the CPU time of a case's processes.
type cpuMeter struct{ procs []cpuProc }

func (m *cpuMeter) add(name string, read func() time.Duration) *cpuMeter {
	m.procs = append(m.procs, cpuProc{name, read})
	return m
}

func (m *cpuMeter) snap() []time.Duration {
	s := make([]time.Duration, len(m.procs))
	for i, p := range m.procs {
		s[i] = p.read()
	}
	return s
}

// selfCPU is the harness's own user+system time (RUSAGE_SELF, µs resolution).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitedCPU is the user+system time of the harness's children it has
// waited for (RUSAGE_CHILDREN: the bare exec's commands).
func waitedCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pidCPU reads a live child's CPU time: the sum of its threads' time on a
// CPU from /proc/PID/task/*/schedstat (ns), or /proc/PID/stat (ticks) when
// there is no schedstat. A thread that exits between two readings takes
// its time with it; the children's threads (libzmq's, Go's, gearmand's)
// live as long as they do.
func pidCPU(pid int) func() time.Duration {
	return func() time.Duration {
		if d, ok := schedCPU(pid); ok {
			return d
		}
		return cpuTime(pid)
	}
}

func schedCPU(pid int) (time.Duration, bool) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	es, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	var sum time.Duration
	for _, e := range es {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // the thread has gone
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, false
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		sum += time.Duration(ns)
	}
	return sum, true
}

// pidChildrenCPU is the CPU of the children pid has waited for (the
// commands of zmws-run or webhook).
func pidChildrenCPU(pid int) func() time.Duration {
	return func() time.Duration { _, c := cpuTimes(pid); return c }
}

// exitedCPU is the user+system time of an exited child.
func exitedCPU(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
}

// cpuRuns is the CPU per job (µs) of a case's processes, run by run.
type cpuRuns struct {
	names []string
	runs  [][]float64 // [run][process]
}

func newCPURuns(m *cpuMeter) *cpuRuns {
	c := &cpuRuns{}
	for _, p := range m.procs {
		c.names = append(c.names, p.name)
	}
	return c
}

// addRun records one run of jobs jobs between snapshots before and after.
// extra adds CPU read another way (an exited child's rusage) by name.
func (c *cpuRuns) addRun(before, after []time.Duration, jobs int, extra map[string]time.Duration) {
	row := make([]float64, len(c.names))
	for i := range c.names {
		d := after[i] - before[i] + extra[c.names[i]]
		row[i] = float64(d.Nanoseconds()) / 1e3 / float64(max(jobs, 1))
	}
	c.runs = append(c.runs, row)
}

// of is the per-run values of process name (nil if the case has none).
func (c *cpuRuns) of(name string) []float64 {
	for i, n := range c.names {
		if n == name {
			var xs []float64
			for _, r := range c.runs {
				xs = append(xs, r[i])
			}
			return xs
		}
	}
	return nil
}

func (c *cpuRuns) totals() []float64 {
	var xs []float64
	for _, r := range c.runs {
		t := 0.0
		for _, v := range r {
			t += v
		}
		xs = append(xs, t)
	}
	return xs
}

// summary is the case's CPU line, parsed by report into the CPU table:
//
//	SUMMARY cpu LABEL... runs=3 client=373 [300..410] zmwsd=1007 [...] total=...
func (c *cpuRuns) summary(label string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SUMMARY cpu %s runs=%d", label, len(c.runs))
	for _, n := range c.names {
		m, lo, hi := medMinMax(c.of(n))
		fmt.Fprintf(&b, " %s=%.1f [%.1f..%.1f]", n, m, lo, hi)
	}
	m, lo, hi := medMinMax(c.totals())
	fmt.Fprintf(&b, " total=%.1f [%.1f..%.1f]", m, lo, hi)
	return b.String()
}

// cpuRatio is the round-by-round ratio of a's process pa to b's process pb
// (CPU per job), as a SUMMARY cpuratio line: name says what it compares.
// "total" is a case's whole CPU per job.
func cpuRatio(name string, a *cpuRuns, pa string, b *cpuRuns, pb string) string {
	pick := func(c *cpuRuns, p string) []float64 {
		if p == "total" {
			return c.totals()
		}
		return c.of(p)
	}
	xa, xb := pick(a, pa), pick(b, pb)
	var xs []float64
	for i := range min(len(xa), len(xb)) {
		if xb[i] > 0 {
			xs = append(xs, xa[i]/xb[i])
		}
	}
	m, lo, hi := medMinMax(xs)
	return fmt.Sprintf("SUMMARY cpuratio %s runs=%d ratio=%.3f [%.3f..%.3f]", name, len(xs), m, lo, hi)
}
