package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the harness started; it is stopped by PID only.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

var children struct {
	sync.Mutex
	set map[*child]bool
}

// startChild starts path args... with stdout and stderr to logPath. The
// kernel sends it SIGKILL if the harness dies first.
func startChild(name, logPath, path string, args ...string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	children.Lock()
	if children.set == nil {
		children.set = map[*child]bool{}
	}
	children.set[c] = true
	children.Unlock()
	go func() { c.err = cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after 5 s, and waits.
func (c *child) stop() {
	children.Lock()
	delete(children.set, c)
	children.Unlock()
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(5 * time.Second):
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// stopChildren stops every child still running.
func stopChildren() {
	children.Lock()
	var all []*child
	for c := range children.set {
		all = append(all, c)
	}
	children.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(c.stop)
	}
	wg.Wait()
}

// zmwsd is a broker child process and its endpoints.
type zmwsd struct {
	*child
	client, worker, http string
	dataDir              string
}

// startZmwsd starts bin/zmwsd on free loopback ports. store is "none"
// (--data-dir ""), or "bolt" (a fresh data dir under tmp). http: serve the
// gateway on a free port. extra flags follow.
func startZmwsd(bin, tmp, name, store string, http bool, extra ...string) (*zmwsd, error) {
	z := &zmwsd{}
	args := []string{"--client-bind", "tcp://127.0.0.1:*", "--worker-bind", "tcp://127.0.0.1:*", "--events-bind="}
	if http {
		args = append(args, "--http-bind", "127.0.0.1:0")
	} else {
		args = append(args, "--http-bind=")
	}
	switch store {
	case "none":
		args = append(args, "--data-dir=")
	case "bolt":
		d, err := os.MkdirTemp(tmp, name+"-data-")
		if err != nil {
			return nil, err
		}
		z.dataDir = d
		args = append(args, "--data-dir", d)
	default:
		return nil, fmt.Errorf("zmwsd store %q: want none or bolt", store)
	}
	args = append(args, extra...)
	c, err := startChild(name, filepath.Join(tmp, name+".log"), filepath.Join(bin, "zmwsd"), args...)
	if err != nil {
		return nil, err
	}
	z.child = c
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if z.exited() {
			break
		}
		if line := findLogLine(c.log, `"zmwsd started"`); line != nil {
			var v struct{ Client, Worker, HTTP string }
			if err := json.Unmarshal(line, &v); err != nil {
				break
			}
			z.client, z.worker, z.http = v.Client, v.Worker, v.HTTP
			return z, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	z.stop()
	return nil, fmt.Errorf("zmwsd did not start: %s", tail(c.log, 2000))
}

func (z *zmwsd) stop() {
	z.child.stop()
	if z.dataDir != "" {
		os.RemoveAll(z.dataDir)
	}
}

// findLogLine returns the first line of the file that contains s.
func findLogLine(path, s string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for line := range bytes.Lines(b) {
		if bytes.Contains(line, []byte(s)) {
			return line
		}
	}
	return nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// procStatus reads fields (in kB) of /proc/PID/status: VmRSS, VmHWM.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == field {
			fs := strings.Fields(v)
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, errors.New("no " + field + " in /proc/PID/status")
}

// rssBytes is the resident set size of pid.
func rssBytes(pid int) int64 {
	kb, err := procStatus(pid, "VmRSS")
	if err != nil {
		return -1
	}
	return kb << 10
}

// cpuTime is the user+system CPU time pid has used.
func cpuTime(pid int) time.Duration {
	self, _ := cpuTimes(pid)
	return self
}

// cpuTimes is the user+system CPU time pid has used, and that of its
// children it has waited for.
func cpuTimes(pid int) (self, children time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the command (which may hold spaces) start after ") ".
	i := bytes.LastIndexByte(b, ')')
	fs := strings.Fields(string(b[i+1:]))
	// fs[0] is field 3 (state); utime is field 14, stime 15, cutime 16,
	// cstime 17.
	if len(fs) < 15 {
		return 0, 0
	}
	var v [4]int64
	for k := range v {
		v[k], _ = strconv.ParseInt(fs[11+k], 10, 64)
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(v[0]+v[1]) * time.Second / hz, time.Duration(v[2]+v[3]) * time.Second / hz
}

// fdCount is the number of open file descriptors of pid.
func fdCount(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(es)
}

// hostLine describes the machine, like the anchors' HOST line.
func hostLine() string {
	load, _ := os.ReadFile("/proc/loadavg")
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	rel := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	fs := strings.Fields(string(load))
	if len(fs) > 3 {
		fs = fs[:3]
	}
	return fmt.Sprintf("HOST %s %dc kernel=%s load=%s", time.Now().UTC().Format(time.RFC3339), numCPU(), rel, strings.Join(fs, " "))
}
