package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestChaosShort is a short scripts/chaos: a few hundred jobs, one broker
// kill -9 and a few worker kill -9's; no accepted job may be lost. The bounds
// are generous for a loaded two-core machine.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: builds and runs zmwsd and zmws-run, kills them (skipped with -short)")
	}
	cfg := defaultConfig()
	cfg.Jobs = 300
	cfg.Workers = 3
	cfg.Submitters = 3
	cfg.BrokerKills = 1
	cfg.WorkerKills = 4
	cfg.KillEvery = 400 * time.Millisecond
	cfg.MaxSleep = 60 * time.Millisecond
	cfg.ClientWait = 3 * time.Second
	cfg.Wait = 90 * time.Second
	cfg.Seed = 1
	cfg.WorkDir = t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	sum, err := run(ctx, cfg, &out)
	t.Logf("chaos output:\n%s", out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if code := sum.exitCode(); code != 0 || sum.Accepted != cfg.Jobs || sum.BrokerKills != 1 {
		for _, name := range []string{"zmwsd.log", "worker-1.log"} {
			if b, err := os.ReadFile(filepath.Join(cfg.WorkDir, "logs", name)); err == nil {
				t.Logf("tail of %s:\n%s", name, tail(b, 4000))
			}
		}
		t.Fatalf("exit code %d, %s", code, sum.line())
	}
	if sum.Completed+sum.Failed != sum.Accepted {
		t.Errorf("completed %d + failed %d != accepted %d", sum.Completed, sum.Failed, sum.Accepted)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestResultsTail checks the parsing of the results file, torn lines included.
func TestResultsTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.txt")
	const id = "01M8E10A1S60Q901QGYFB4PPSC"
	if err := os.WriteFile(path, []byte(id+" 1 w1.1 12.34\nbad line\n"+id+" 2 w2.1"), 0o644); err != nil {
		t.Fatal(err)
	}
	tl := &resultsTail{path: path, runs: map[string][]run1{}}
	if err := tl.read(); err != nil {
		t.Fatal(err)
	}
	if got := tl.runsOf(id); len(got) != 1 || got[0] != (run1{id: id, attempt: 1, worker: "w1.1", at: 12.34}) {
		t.Fatalf("runs %+v", got)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" 13.5\n")
	f.Close()
	if err := tl.read(); err != nil {
		t.Fatal(err)
	}
	if got := tl.runsOf(id); len(got) != 2 || got[1].worker != "w2.1" || got[1].at != 13.5 {
		t.Fatalf("runs after the rest of the line %+v", got)
	}
	if tl.count() != 2 || len(tl.malformed) != 1 {
		t.Fatalf("count %d, malformed %q", tl.count(), tl.malformed)
	}
}

// TestRequeues reads the broker's reasons for requeueing a job from its log.
func TestRequeues(t *testing.T) {
	c := &chaos{logDir: t.TempDir()}
	log := `=== chaos: zmwsd#1 start
{"level":"warn","component":"broker","job":"J1","service":"CHAOS","attempt":1,"reason":"worker ab expired","time":"T1","message":"job requeued"}
{"level":"info","message":"worker ready"}
`
	if err := os.WriteFile(filepath.Join(c.logDir, "zmwsd.log"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := c.requeues()
	if len(got) != 1 || len(got["J1"]) != 1 || got["J1"][0] != "T1 attempt 1 requeued: worker ab expired" {
		t.Fatalf("requeues %q", got)
	}
}
