package memory

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestRSS(t *testing.T) {
	self, err := RSS(0)
	if err != nil || self <= 0 {
		t.Fatalf("RSS(0) = %d, %v", self, err)
	}
	if pid, err := RSS(os.Getpid()); err != nil || pid <= 0 {
		t.Fatalf("RSS(own pid) = %d, %v", pid, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := RSS(cmd.Process.Pid); err == nil {
		t.Fatal("RSS of a process that is gone: no error")
	}
}

// TestTrimmer_GivesBackAFreedBurst: 256 MiB the Go heap held and freed stay
// with the process (no collection runs while nothing allocates), until the
// trimmer's second look: the first sees the collections the burst caused,
// the second none since, and more allocated than Slack. (The Go runtime's
// figures, not the resident size: the race detector's shadow memory is not
// given back.)
func TestTrimmer_GivesBackAFreedBurst(t *testing.T) {
	runtime.GC()
	before := readGo().held
	tr := &Trimmer{Logger: zerolog.New(zerolog.NewTestWriter(t))}
	tr.start()
	burst(256 << 20)
	if held := readGo().held; held < before+128<<20 {
		t.Fatalf("Go holds %d MiB after the burst, %d MiB before: the burst did not show", held>>20, before>>20)
	}
	tr.look()
	if goTrim, _ := tr.look(); !goTrim {
		t.Fatal("second look did not collect")
	}
	if held := readGo().held; held > before+64<<20 {
		t.Fatalf("Go holds %d MiB after the trim, %d MiB before the burst", held>>20, before>>20)
	}
	// Nothing allocated since: nothing to do.
	if goTrim, cTrim := tr.look(); goTrim || cTrim {
		t.Fatalf("an idle look trimmed: go %v, c %v", goTrim, cTrim)
	}
}

// TestTrimmer_Run: Run looks every Every and stops with its context.
func TestTrimmer_Run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Trimmer{Every: time.Millisecond, Logger: zerolog.New(zerolog.NewTestWriter(t))}).Run(ctx)
	}()
	burst(64 << 20)
	cancel()
	<-done
}

// burst allocates and touches n bytes in 1 MiB pieces, and drops them.
func burst(n int) {
	var keep [][]byte
	for range n >> 20 {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	runtime.KeepAlive(keep)
}

func TestSetup(t *testing.T) {
	t.Setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
	if Setup() {
		t.Fatal("Setup overrode GLIBC_TUNABLES")
	}
}
