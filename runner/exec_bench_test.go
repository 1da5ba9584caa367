package runner

import (
	"bytes"
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/zmws/zmws/worker"
)

// What zmws-run adds to one spawn of rev, without any broker: the
// Handler's serve (template, environment, three pipes and copier
// goroutines, a process group, the group kill) against a bare os/exec of
// the same command with the same input (the anchors' execbench).

var benchRevInput = []byte("hello zmws 12345\n")

const benchRevWant = "54321 swmz olleh\n"

func BenchmarkExec_Bare(b *testing.B) {
	path, err := exec.LookPath("rev")
	if err != nil {
		b.Skip("no rev")
	}
	defer reportCPU(b)()
	for b.Loop() {
		c := exec.Command(path)
		c.Stdin = bytes.NewReader(benchRevInput)
		var out bytes.Buffer
		c.Stdout = &out
		if err := c.Run(); err != nil {
			b.Fatal(err)
		}
		if out.String() != benchRevWant {
			b.Fatalf("output %q", out.String())
		}
	}
}

func BenchmarkExec_Runner(b *testing.B) {
	if _, err := exec.LookPath("rev"); err != nil {
		b.Skip("no rev")
	}
	tm, err := New(Spec{Service: "rev", Command: Command{Line: "rev"}}, Defaults{})
	if err != nil {
		b.Fatal(err)
	}
	h := NewHandler(tm, Config{})
	var out []byte
	sink := func(p []byte) (int, error) { out = append(out, p...); return len(p), nil }
	ctx := context.Background()
	for b.Loop() {
		out = out[:0]
		res, err := h.serve(ctx, &worker.Job{ID: "01JBENCH", Service: "rev", Attempt: 1, Input: [][]byte{benchRevInput}}, sink)
		if err != nil {
			b.Fatal(err)
		}
		if got := string(out) + string(res); got != benchRevWant {
			b.Fatalf("output %q", got)
		}
	}
}

// BenchmarkServeRev is one job of rev with a short line through ServeJob's
// path, as a worker calls it: it reports the messages the job costs
// through the broker (partials, plus the final reply) and, with
// -benchmem, what the runner allocates around the spawn.
func BenchmarkServeRev(b *testing.B) { benchServeRev(b, false, false) }

// BenchmarkServeRev_Contained is the same with each job in a PID namespace
// of its own under the runner's init (Config.Contain): the price of
// containment per job.
func BenchmarkServeRev_Contained(b *testing.B) {
	if err := CheckContain(); err != nil {
		b.Skipf("no containment here: %v", err)
	}
	benchServeRev(b, false, true)
}

// BenchmarkServeRev_Prestart is the same with prestart: back to back, a
// job finds its spare ready only if the spawn took less than the previous
// job.
func BenchmarkServeRev_Prestart(b *testing.B) { benchServeRev(b, true, false) }

func benchServeRev(b *testing.B, prestart, contain bool) {
	if _, err := exec.LookPath("rev"); err != nil {
		b.Skip("no rev")
	}
	tm, err := New(Spec{Service: "rev", Command: Command{Line: "rev"}, Prestart: prestart}, Defaults{})
	if err != nil {
		b.Fatal(err)
	}
	h := NewHandler(tm, Config{Contain: contain})
	defer h.Shutdown(context.Background())
	var (
		out      []byte
		partials int
	)
	sink := func(p []byte) (int, error) { partials++; out = append(out, p...); return len(p), nil }
	j := &worker.Job{ID: "01JBENCH", Service: "rev", Attempt: 1, Input: [][]byte{benchRevInput}}
	ctx := context.Background()
	defer reportCPU(b)()
	for b.Loop() {
		out = out[:0]
		res, err := h.serve(ctx, j, sink)
		if err != nil {
			b.Fatal(err)
		}
		if got := string(out) + string(res); got != benchRevWant {
			b.Fatalf("output %q", got)
		}
	}
	b.ReportMetric(float64(partials+b.N)/float64(b.N), "msgs/op")
}

// reportCPU, deferred, reports the CPU time (user and system) the
// benchmark's own process spent per op, without its children's: what the
// runner costs around a spawn, steadier than the wall time on a shared
// machine.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	t0 := cpu()
	return func() { b.ReportMetric(float64(cpu()-t0)/1e3/float64(b.N), "cpu-µs/op") }
}
