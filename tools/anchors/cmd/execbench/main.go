// execbench: what one exec() of a small filter costs from Go (os/exec).
//
// Each job spawns CMD (default: rev) with a short line on stdin, reads its
// stdout, waits for exit 0 and checks the output. N jobs are spread over
// P goroutines; the run is repeated RUNS times and the median is reported.
// This is the floor any exec-adapter worker (zmws-run, gearman -w) pays
// per job, without any broker in between.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmws/zmws/tools/anchors/internal/stats"
)

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}

func main() {
	n := flag.Int("n", 2000, "jobs per run")
	p := flag.Int("p", 1, "parallel goroutines")
	runs := flag.Int("runs", 5, "measured runs (median reported)")
	warm := flag.Int("warmup", 100, "jobs in one unmeasured warm-up run")
	cmdName := flag.String("cmd", "rev", "command to spawn (looked up once in PATH)")
	shell := flag.Bool("shell", false, "spawn via /bin/sh -c CMD instead of exec'ing CMD directly")
	line := flag.String("line", "hello zmws 12345", "line written to stdin")
	maxTime := flag.Duration("maxtime", 60*time.Second, "hard bound on the whole program")
	flag.Parse()

	deadline := time.Now().Add(*maxTime)
	var argv []string
	if *shell {
		argv = []string{"/bin/sh", "-c", *cmdName}
	} else {
		path, err := exec.LookPath(*cmdName)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lookup:", err)
			os.Exit(2)
		}
		argv = []string{path}
	}
	in := *line + "\n"
	want := reverse(*line) + "\n"
	check := *cmdName == "rev"

	one := func() (time.Duration, error) {
		t0 := time.Now()
		c := exec.Command(argv[0], argv[1:]...)
		c.Stdin = strings.NewReader(in)
		var out bytes.Buffer
		c.Stdout = &out
		if err := c.Run(); err != nil {
			return 0, err
		}
		d := time.Since(t0)
		if check && out.String() != want {
			return d, fmt.Errorf("bad output %q", out.String())
		}
		return d, nil
	}

	do := func(jobs int) (stats.Run, error) {
		lat := make([]time.Duration, jobs)
		var next atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		t0 := time.Now()
		for g := 0; g < *p; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= jobs || time.Now().After(deadline) {
						return
					}
					d, err := one()
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					lat[i] = d
				}
			}()
		}
		wg.Wait()
		el := time.Since(t0)
		if e := firstErr.Load(); e != nil {
			return stats.Run{}, e.(error)
		}
		kept := lat[:0]
		for _, d := range lat {
			if d > 0 { // jobs skipped at the deadline stay 0
				kept = append(kept, d)
			}
		}
		lat = kept
		return stats.Run{Jobs: len(lat), Elapsed: el, P50: stats.Pct(lat, 50), P99: stats.Pct(lat, 99), Max: stats.Pct(lat, 100)}, nil
	}

	label := fmt.Sprintf("exec cmd=%s shell=%v p=%d n=%d", *cmdName, *shell, *p, *n)
	if *warm > 0 {
		if _, err := do(*warm); err != nil {
			fmt.Fprintln(os.Stderr, "warmup:", err)
			os.Exit(1)
		}
	}
	var rs []stats.Run
	for i := 0; i < *runs && time.Now().Before(deadline); i++ {
		r, err := do(*n)
		if err != nil {
			fmt.Fprintln(os.Stderr, "run:", err)
			os.Exit(1)
		}
		fmt.Println(r.Line(label, i))
		rs = append(rs, r)
	}
	fmt.Println(stats.Summary(label, rs))
}
