package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/zmws/zmws/internal/memory"
)

// zmwsd is a zmwsd child on loopback ports the system picked.
type zmwsd struct {
	cmd     *exec.Cmd
	done    chan struct{}
	client  string // the client endpoint
	logPath string
}

// startZmwsd starts bin with a client endpoint on a free port, no other
// endpoint and no journal, and extra flags; its log goes to work/NAME.log.
// It returns once zmwsd logged that it started.
func startZmwsd(ctx context.Context, bin, work, name string, extra []string) (*zmwsd, error) {
	z := &zmwsd{logPath: filepath.Join(work, name+".log"), done: make(chan struct{})}
	log, err := os.Create(z.logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	args := append([]string{"--client-bind", "tcp://127.0.0.1:*", "--worker-bind", "tcp://127.0.0.1:*",
		"--events-bind=", "--http-bind=", "--data-dir="}, extra...)
	z.cmd = exec.Command(bin, args...)
	z.cmd.Stdout, z.cmd.Stderr = log, log
	z.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := z.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { z.cmd.Wait(); close(z.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for z.client == "" {
		select {
		case <-z.done:
			return nil, fmt.Errorf("%s exited: %s", name, tail(z.logPath))
		case <-ctx.Done():
			z.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			z.stop()
			return nil, fmt.Errorf("%s did not start in 30 s: %s", name, tail(z.logPath))
		}
		z.client = startedAt(z.logPath)
	}
	// What it allocates at start settles first.
	time.Sleep(time.Second)
	return z, nil
}

// startedAt reads the client endpoint from the "zmwsd started" line of a
// JSON log.
func startedAt(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct{ Message, Client string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "zmwsd started" {
			return l.Client
		}
	}
	return ""
}

func (z *zmwsd) rss() (int64, error) {
	select {
	case <-z.done:
		return 0, errors.New("exited")
	default:
	}
	return memory.RSS(z.cmd.Process.Pid)
}

// stop ends zmwsd: SIGTERM, then SIGKILL after 5 s.
func (z *zmwsd) stop() {
	z.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-z.done:
	case <-time.After(5 * time.Second):
		z.cmd.Process.Kill()
		<-z.done
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// build compiles zmwsd to path, from the module the working directory
// belongs to.
func build(path string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return errors.New("not inside the zmws module: run from the repository, or give -bin")
	}
	cmd := exec.Command("go", "build", "-o", path, "./cmd/zmwsd")
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}
