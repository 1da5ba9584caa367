package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidFile is what RUN/NAME.pid holds: enough to tell the process that was
// started from another that got its PID since.
//
//	pid=12345
//	start=987654        the process's start, clock ticks after boot (/proc/PID/stat field 22)
//	exe=/usr/local/bin/zmwsd
//	services=STR-REV,SLEEP
//	where=clients tcp://127.0.0.1:5555, workers tcp://127.0.0.1:5556
type pidFile struct {
	PID      int
	Start    uint64
	Exe      string
	Services []string
	Where    string
}

func (p pidFile) encode() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "pid=%d\nstart=%d\nexe=%s\n", p.PID, p.Start, p.Exe)
	if len(p.Services) > 0 {
		fmt.Fprintf(&b, "services=%s\n", strings.Join(p.Services, ","))
	}
	if p.Where != "" {
		fmt.Fprintf(&b, "where=%s\n", p.Where)
	}
	return []byte(b.String())
}

// readPIDFile reads path; a file that does not exist is fs.ErrNotExist.
func readPIDFile(path string) (pidFile, error) {
	var p pidFile
	f, err := os.Open(path)
	if err != nil {
		return p, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "pid":
			p.PID, _ = strconv.Atoi(v)
		case "start":
			p.Start, _ = strconv.ParseUint(v, 10, 64)
		case "exe":
			p.Exe = v
		case "services":
			if v != "" {
				p.Services = strings.Split(v, ",")
			}
		case "where":
			p.Where = v
		}
	}
	if err := sc.Err(); err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	if p.PID <= 0 {
		return p, fmt.Errorf("%s: no pid in it", path)
	}
	return p, nil
}

// writePIDFile writes p to path, whole or not at all.
func writePIDFile(path string, p pidFile) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, p.encode(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// procStat is what zmws reads of /proc/PID/stat.
type procStat struct {
	State byte   // R, S, D, Z, ...
	Start uint64 // clock ticks after boot
}

// readStat reads /proc/pid/stat. The command name (field 2) is in
// parentheses and may hold anything, so fields are counted after its last
// closing parenthesis.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	start, err := strconv.ParseUint(f[19], 10, 64) // field 22
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return procStat{State: f[0][0], Start: start}, nil
}

// exeOf returns the program pid runs ("" when it cannot be read, as for
// another user's process). A program replaced on disk since it started
// (a rebuild) is still itself.
func exeOf(pid int) string {
	s, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(s, " (deleted)")
}

// identify reads what a PID file records of the running process pid.
func identify(pid int) (pidFile, error) {
	st, err := readStat(pid)
	if err != nil {
		return pidFile{}, err
	}
	return pidFile{PID: pid, Start: st.Start, Exe: exeOf(pid)}, nil
}

// errStale says a PID file no longer names its process.
var errStale = errors.New("stale")

// alive tells whether the process p names still runs: the same PID with
// the same start time and, when it can be read, the same program. Else it
// says why not (an error wrapping errStale).
func alive(p pidFile) error {
	st, err := readStat(p.PID)
	if err != nil {
		return fmt.Errorf("%w: PID %d is gone", errStale, p.PID)
	}
	if st.State == 'Z' || st.State == 'X' {
		return fmt.Errorf("%w: PID %d has exited", errStale, p.PID)
	}
	if st.Start != p.Start {
		return fmt.Errorf("%w: PID %d is another process now (started later)", errStale, p.PID)
	}
	if exe := exeOf(p.PID); exe != "" && p.Exe != "" && exe != p.Exe {
		return fmt.Errorf("%w: PID %d runs %s now, not %s", errStale, p.PID, exe, p.Exe)
	}
	return nil
}

// uptime returns how long ago a process that started at start (clock
// ticks after boot) started; 0 when the boot time cannot be read.
func uptime(start uint64, now time.Time) time.Duration {
	boot := bootTime()
	if boot.IsZero() {
		return 0
	}
	// USER_HZ is 100 on every Linux architecture zmws builds for.
	started := boot.Add(time.Duration(start) * (time.Second / 100))
	return now.Sub(started)
}

func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}

// lock takes RUN/.lock, so that two zmws start or stop do not act at once,
// waiting for it at most wait. The returned function releases it.
func lock(dir string, wait time.Duration) (func(), error) {
	path := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s: another zmws start or stop holds it still after %v", path, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
