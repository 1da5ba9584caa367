package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one process the run started. Only the run ends it, by its PID.
type proc struct {
	name   string // zmwsd#2, w3.1
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has been waited for
	err    error         // its exit, after done
	killed bool          // the run signalled it (under procs.mu)
	ready  atomic.Bool   // it served (a broker that answered)
}

// procs is every process the run started, for kills and the final clean-up.
type procs struct {
	mu         sync.Mutex
	live       map[*proc]bool
	unexpected []string // processes that exited without being signalled
	logf       func(format string, args ...any)
	// onSurprise, if set, is called (once per process) when a process
	// exits without being signalled.
	onSurprise func(p *proc)
}

func newProcs(logf func(string, ...any)) *procs {
	return &procs{live: map[*proc]bool{}, logf: logf}
}

// start runs bin with args, stdout and stderr appended to logPath.
func (ps *procs) start(name, logPath, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== chaos: %s start %s: %s %s\n", name, time.Now().Format(time.RFC3339Nano), filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own, so that a Ctrl-C reaches the run only
	// (which stops its processes itself); should the run be killed, its
	// children die too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	ps.mu.Lock()
	ps.live[p] = true
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		f.Close()
		ps.mu.Lock()
		delete(ps.live, p)
		killed := p.killed
		if !killed {
			ps.unexpected = append(ps.unexpected, fmt.Sprintf("%s (pid %d) exited by itself: %v", p.name, cmd.Process.Pid, p.err))
		}
		ps.mu.Unlock()
		close(p.done)
		if !killed {
			ps.logf("UNEXPECTED: %s (pid %d) exited by itself: %v (see its log)", p.name, cmd.Process.Pid, p.err)
			if ps.onSurprise != nil {
				ps.onSurprise(p)
			}
		}
	}()
	return p, nil
}

// signal sends sig to p, unless it has already been waited for.
func (ps *procs) signal(p *proc, sig syscall.Signal) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !ps.live[p] {
		return
	}
	p.killed = true
	p.cmd.Process.Signal(sig) // the PID is not reused before Wait returns
}

// kill9 kills p with SIGKILL and waits until it is gone.
func (ps *procs) kill9(p *proc) {
	ps.signal(p, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM to p, and SIGKILL after grace; it reports whether p
// stopped within grace.
func (ps *procs) stop(p *proc, grace time.Duration) bool {
	ps.signal(p, syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
		ps.logf("%s did not stop within %v of SIGTERM: SIGKILL", p.name, grace)
		ps.kill9(p)
		return false
	}
}

// stopAll stops every live process: SIGTERM to all, SIGKILL to those left
// after grace.
func (ps *procs) stopAll(grace time.Duration) {
	ps.mu.Lock()
	var all []*proc
	for p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Go(func() { ps.stop(p, grace) })
	}
	wg.Wait()
}

func (ps *procs) surprises() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]string(nil), ps.unexpected...)
}

// freeEndpoint returns tcp://127.0.0.1:PORT for a port that was free a moment
// ago.
func freeEndpoint() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "tcp://" + l.Addr().String(), nil
}

// build compiles zmwsd and zmws-run into dir, from the zmws module as the go
// command resolves it from the working directory: the repository root, or
// tools/ (whose go.mod replaces github.com/zmws/zmws with ../).
func build(dir string) error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/zmws/zmws").Output()
	if err != nil {
		return fmt.Errorf("go list -m github.com/zmws/zmws: %w (run from the repository, or give --bin-dir)", err)
	}
	root := strings.TrimSpace(string(out))
	if root == "" {
		return errors.New("no source folder for github.com/zmws/zmws: run from the repository, or give --bin-dir")
	}
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./cmd/zmwsd", "./cmd/zmws-run")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}
