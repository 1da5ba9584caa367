package runner

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/zmws/zmws/internal/zmqtest"
)

// Input that fits in the pipe is written at once, without a goroutine;
// more is written by one, while the other end reads.
func TestFeed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames [][]byte
		async  bool
	}{
		{"small", [][]byte{[]byte("hello "), nil, []byte("world\n")}, false},
		{"big", [][]byte{bytes.Repeat([]byte("a"), 40<<10), bytes.Repeat([]byte("b"), 1<<20)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newPipes()
			if err != nil {
				t.Fatal(err)
			}
			defer p.closeAll()
			want := bytes.Join(tc.frames, nil)
			orig := [][]byte{tc.frames[0], tc.frames[1]}
			done := make(chan struct{}, 1)
			if async := feed(p.inW, tc.frames, done); async != tc.async {
				t.Fatalf("feed started a goroutine: %v; want %v", async, tc.async)
			}
			got := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(p.inR); got <- b }()
			select {
			case b := <-got:
				if !bytes.Equal(b, want) {
					t.Errorf("read %d bytes; want the %d fed", len(b), len(want))
				}
			case <-time.After(wait):
				t.Fatal("stdin was not closed")
			}
			if tc.async {
				select {
				case <-done:
				case <-time.After(wait):
					t.Fatal("the writer did not report")
				}
			}
			if &tc.frames[0][0] != &orig[0][0] || len(tc.frames[1]) != len(orig[1]) {
				t.Errorf("feed changed the job's frames")
			}
		})
	}
}

// childExited sees a child exit before it is waited for, without reaping
// it.
func TestChildExited(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("peeks with waitid on Linux only")
	}
	hang := exec.Command(testExe(t), "hang")
	hang.Env = append(os.Environ(), childEnv+"=1")
	if err := hang.Start(); err != nil {
		t.Fatal(err)
	}
	defer hang.Wait()
	defer hang.Process.Kill()
	if childExited(hang.Process.Pid) {
		t.Error("a running child has exited")
	}

	quick := exec.Command(testExe(t), "exit", "3")
	quick.Env = append(os.Environ(), childEnv+"=1", "GORACE=atexit_sleep_ms=0")
	if err := quick.Start(); err != nil {
		t.Fatal(err)
	}
	zmqtest.Eventually(t, "the child's exit seen", wait, func() bool { return childExited(quick.Process.Pid) })
	if err := quick.Wait(); quick.ProcessState == nil || quick.ProcessState.ExitCode() != 3 {
		t.Errorf("wait after the peek: %v; want exit status 3", err)
	}
	if !childExited(quick.Process.Pid) {
		t.Error("a reaped child has not exited")
	}
}
