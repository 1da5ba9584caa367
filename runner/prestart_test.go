package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/syncbuf"
	"github.com/zmws/zmws/internal/zmqtest"
)

// syncBuffer is a log destination tests read while others write.
type syncBuffer = syncbuf.Buffer

// prestartHandler returns a prestart handler running the test binary as
// the child in mode, its log also in the returned buffer, shut down when
// the test ends.
func prestartHandler(t *testing.T, s Spec, mode string, args ...string) (*Handler, *syncBuffer) {
	t.Helper()
	s.Prestart = true
	s.Command = Command{Args: append([]string{testExe(t), mode}, args...)}
	env := childVars()
	for k, v := range s.Env {
		env[k] = v
	}
	s.Env = env
	logs := &syncBuffer{}
	h := NewHandler(mustNew(t, s), Config{Logger: zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), logs))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	return h, logs
}

// pids returns the processes that announced themselves in dir (pidecho,
// pidexit), and those of them that read their stdin to the end.
func pids(t *testing.T, dir string) (started, ran map[int]bool) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	started, ran = map[int]bool{}, map[int]bool{}
	for _, e := range es {
		name, isRan := strings.CutSuffix(e.Name(), ".ran")
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if isRan {
			ran[pid] = true
		} else {
			started[pid] = true
		}
	}
	return started, ran
}

// waitStarted waits until a process not in known has announced itself in
// dir, and returns it.
func waitStarted(t *testing.T, dir string, known map[int]bool) int {
	t.Helper()
	var pid int
	zmqtest.Eventually(t, fmt.Sprintf("a new process started (known: %v)", known), wait, func() bool {
		started, _ := pids(t, dir)
		for p := range started {
			if !known[p] {
				pid = p
				return true
			}
		}
		return false
	})
	return pid
}

// outputPid splits pidecho's output into the PID and the rest.
func outputPid(t *testing.T, res []byte) (int, string) {
	t.Helper()
	line, rest, _ := strings.Cut(string(res), "\n")
	pid, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("output %q: no PID in front", res)
	}
	return pid, rest
}

// Each job runs on a process that was started, and had announced itself,
// before the job was submitted; the next one is started meanwhile.
func TestPrestart_SpawnsBeforeJob(t *testing.T) {
	dir := t.TempDir()
	h, _ := prestartHandler(t, Spec{}, "pidecho", dir)
	known := map[int]bool{}
	for i := range 20 {
		spare := waitStarted(t, dir, known) // before the job exists
		known[spare] = true
		in := fmt.Sprintf("job %d\n", i)
		res, err := h.ServeJob(context.Background(), job(nil, in))
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		if pid, out := outputPid(t, res); pid != spare || out != in {
			t.Fatalf("job %d: ran on %d with output %q; want on the spare %d, %q", i, pid, out, spare, in)
		}
	}
}

func TestPrestart_Concurrent(t *testing.T) {
	dir := t.TempDir()
	h, _ := prestartHandler(t, Spec{Concurrency: 2}, "pidecho", dir)
	waitStarted(t, dir, nil)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		used = map[int]string{}
	)
	for slot := range 2 {
		wg.Go(func() {
			for i := range 10 {
				in := fmt.Sprintf("slot %d job %d\n", slot, i)
				res, err := h.ServeJob(context.Background(), job(nil, in))
				if err != nil {
					t.Errorf("%s: %v", in, err)
					return
				}
				pid, out := outputPid(t, res)
				if out != in {
					t.Errorf("%s: output %q", in, out)
				}
				mu.Lock()
				if prev, ok := used[pid]; ok {
					t.Errorf("process %d ran %q and %q", pid, prev, in)
				}
				used[pid] = in
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// A spare that has exited when its job comes is not the job's: the job
// runs on a fresh process, and the log says why prestart does not fit.
func TestPrestart_SpareExitedEarly(t *testing.T) {
	dir := t.TempDir()
	h, logs := prestartHandler(t, Spec{}, "pidexit", dir)
	spare := waitStarted(t, dir, nil)
	// Gone from /proc's view is not enough: a Go program's main thread is
	// a zombie while its other threads still end. Wait for exec's wait.
	zmqtest.Eventually(t, "the spare exited, as exec's wait saw", wait, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.spares) != 1 || h.spares[0].pid != spare {
			return false
		}
		select {
		case <-h.spares[0].exited:
			return true
		default:
			return false
		}
	})
	res, err := h.ServeJob(context.Background(), job(nil, "input\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pid, _ := outputPid(t, res); pid == spare {
		t.Errorf("the spare's output %q was taken as the job's", res)
	}
	if !strings.Contains(logs.String(), prestartExited) {
		t.Errorf("no warning in the log:\n%s", logs)
	}
}

// Shutdown kills the spares and waits for them; none is fed EOF (which
// would make it run, with empty input).
func TestPrestart_ShutdownKillsSpares(t *testing.T) {
	dir := t.TempDir()
	h, _ := prestartHandler(t, Spec{Concurrency: 2}, "pidecho", dir)
	first := waitStarted(t, dir, nil)
	waitStarted(t, dir, map[int]bool{first: true})
	if res, err := h.ServeJob(context.Background(), job(nil, "x\n")); err != nil {
		t.Fatalf("job: %q, %v", res, err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	started, ran := pids(t, dir)
	var all []int
	for pid := range started {
		all = append(all, pid)
	}
	waitGone(t, all...)
	if len(ran) != 1 {
		t.Errorf("%d processes read their stdin to the end; want 1, the job's", len(ran))
	}
	if _, err := h.ServeJob(context.Background(), job(nil, "x\n")); !errors.Is(err, ErrShutdown) {
		t.Errorf("job after Shutdown: %v", err)
	}
}

// The timeout counts from the hand-over, not from the spawn; a spare's
// job times out and is cancelled like any other.
func TestPrestart_Timeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	dir := t.TempDir()
	h, _ := prestartHandler(t, Spec{Timeout: Duration(timeout)}, "pidecho", dir)
	waitStarted(t, dir, nil)
	time.Sleep(timeout + 200*time.Millisecond) // the spare gets older than the timeout
	if res, err := h.ServeJob(context.Background(), job(nil, "late\n")); err != nil {
		t.Errorf("job on an old spare: %q, %v", res, err)
	}

	h, _ = prestartHandler(t, Spec{Timeout: Duration(200 * time.Millisecond), Grace: Duration(100 * time.Millisecond)}, "hang")
	waitSpare(t, h)
	if _, err := h.ServeJob(context.Background(), job(nil)); exitCode(t, err) != ExitTimeout {
		t.Errorf("hanging job: %v", err)
	}

	waitSpare(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	sink := make(chanSink, 10)
	done := make(chan error, 1)
	go func() {
		_, err := h.serve(ctx, job(nil), sink.write)
		done <- err
	}()
	next(t, sink) // "ready": it printed it before its job, and runs
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled job: %v; want context.Canceled", err)
		}
	case <-time.After(wait):
		t.Fatal("the cancelled job did not end")
	}
}

// waitSpare waits until h has a spare in its pool.
func waitSpare(t *testing.T, h *Handler) {
	t.Helper()
	zmqtest.Eventually(t, "a spare in the pool", wait, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.spares) > 0
	})
}

// A prestarted command sees ZMWS_SERVICE but none of the job's variables.
func TestPrestart_Environment(t *testing.T) {
	h, logs := prestartHandler(t, Spec{Env: map[string]string{"GREETING": "hi"}}, "env")
	waitSpare(t, h)
	res, err := h.ServeJob(context.Background(), job(map[string]string{"name": "Ann"}))
	if err != nil {
		t.Fatal(err)
	}
	env := "\n" + string(res)
	for _, want := range []string{"\nZMWS_SERVICE=TEST\n", "\nGREETING=hi\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lacks %s", strings.TrimSpace(want))
		}
	}
	for _, not := range []string{"\nZMWS_JOB_ID=", "\nZMWS_ATTEMPT=", "\nZMWS_PARAM_"} {
		if strings.Contains(env, not) {
			t.Errorf("environment has %s...", strings.TrimSpace(not))
		}
	}
	if !strings.Contains(logs.String(), "prestarted command takes the job") {
		t.Errorf("the job did not run on the spare:\n%s", logs)
	}
}

// Parameters may feed stdin; a prestarted process gets them at the
// hand-over.
func TestPrestart_StdinParams(t *testing.T) {
	dir := t.TempDir()
	in := "{{greeting:hello}} {{name}}\n"
	h, _ := prestartHandler(t, Spec{Stdin: &in}, "pidecho", dir)
	waitStarted(t, dir, nil)
	res, err := h.ServeJob(context.Background(), job(map[string]string{"name": "Ann"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, out := outputPid(t, res); out != "hello Ann\n" {
		t.Errorf("output %q", out)
	}
}

// zmws-run killed with SIGKILL: the kernel kills its waiting spare (here
// one that never reads its input, so it would otherwise live on).
func TestPrestart_SpareDiesWithHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux only")
	}
	dir := t.TempDir()
	host := exec.Command(testExe(t))
	host.Env = append(os.Environ(), hostEnv+"="+dir, "GORACE=atexit_sleep_ms=0")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer host.Wait()
	defer host.Process.Kill()
	spare := waitStarted(t, dir, nil)
	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	host.Wait()
	t.Cleanup(func() {
		if t.Failed() {
			syscall.Kill(spare, syscall.SIGKILL) // it outlived its host
		}
	})
	zmqtest.Eventually(t, fmt.Sprintf("spare %d gone with its host", spare), wait, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", spare))
		return err != nil || bytes.Contains(b, []byte(") Z"))
	})
}
