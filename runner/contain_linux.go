//go:build linux

package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A contained job (Config.Contain) runs in a PID namespace of its own. Its
// first process is not the command but zmws-run itself, re-executed as the
// namespace's init (argv[0] initName): the init starts the command, passes
// on the signals it gets to every other process of the namespace, reaps
// orphans, and exits with the command. When the init dies, however it dies
// (it exits with the command; zmws-run is killed and Pdeathsig kills it;
// SIGKILL after the grace), the kernel kills every process left in the
// namespace, so nothing of a job outlives its init, nor its runner.
//
// A PID 1 gets from its own namespace only the signals it has a handler
// for, and from the parent's only those and SIGKILL/SIGSTOP: the init
// handles the catchable ones it forwards, so a SIGTERM from zmws-run
// reaches the job.
//
// The init reports to zmws-run on a pipe at descriptor 3 (statusFD), one
// line each: "S" once the command has started, or "E<errno>" when it could
// not be; then "W<wait status>" when the command has ended. So a start
// failure is zmws-run's error as before (127, 126), and a command killed
// by a signal is reported as killed, though the init itself merely exits.

// initName is argv[0] of a job's init.
const initName = "zmws-job-init"

// statusFD is the init's end of its status pipe.
const statusFD = 3

// forwarded are the signals the init passes on to the job.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// IsInit reports whether this process was started as a contained job's
// init. A program whose handlers have Config.Contain set (zmws-run) must
// call Init when it is, first thing in main.
func IsInit() bool { return len(os.Args) > 0 && os.Args[0] == initName }

// Init runs this process as a contained job's init and exits with the
// command's exit code; it does not return. It exits directly (exit_group),
// so nothing delays the end of the namespace: no deferred function, no
// race detector's exit pause.
func Init() {
	unix.Exit(runInit(os.Args[1:]))
}

// runInit is the init: args are "probe" (CheckContain), or the credential
// (credString), the program's path and the command's argv.
func runInit(args []string) int {
	if len(args) == 1 && args[0] == "probe" {
		fmt.Println("ok")
		return 0
	}
	syscall.CloseOnExec(statusFD)
	status := os.NewFile(statusFD, "status")
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "zmws-job-init: want CRED PATH ARGV...")
		return 2
	}
	cred, err := parseCred(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "zmws-job-init:", err)
		return 2
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	pid, err := syscall.ForkExec(args[1], args[2:], &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Credential: cred},
	})
	if err != nil {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			errno = syscall.EINVAL
		}
		fmt.Fprintf(status, "E%d\n", int(errno))
		return ExitCannotRun
	}
	fmt.Fprint(status, "S\n")
	go func() {
		for s := range sigs {
			// From a namespace's init, -1 is every other process in it.
			syscall.Kill(-1, s.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "zmws-job-init: wait:", err)
			return 1
		}
		if got != pid {
			continue // an orphan, reaped
		}
		fmt.Fprintf(status, "W%d\n", uint32(ws))
		if ws.Signaled() {
			return ExitSignalBase + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// credString renders c for the init's command line: "-" for none, else
// UID:GID:GROUP,GROUP...
func credString(c *syscall.Credential) string {
	if c == nil {
		return "-"
	}
	gs := make([]string, len(c.Groups))
	for i, g := range c.Groups {
		gs[i] = strconv.FormatUint(uint64(g), 10)
	}
	return fmt.Sprintf("%d:%d:%s", c.Uid, c.Gid, strings.Join(gs, ","))
}

func parseCred(s string) (*syscall.Credential, error) {
	if s == "-" {
		return nil, nil
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("bad credential %q", s)
	}
	var ids []uint32
	for _, p := range append(parts[:2], strings.Split(parts[2], ",")...) {
		if p == "" {
			continue
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad credential %q", s)
		}
		ids = append(ids, uint32(n))
	}
	if len(ids) < 2 {
		return nil, fmt.Errorf("bad credential %q", s)
	}
	return &syscall.Credential{Uid: ids[0], Gid: ids[1], Groups: ids[2:]}, nil
}

// CheckContain reports whether jobs can be contained here (Config.Contain):
// whether this program, re-executed as a job's init (IsInit, Init), starts
// in a new PID namespace. That takes CAP_SYS_ADMIN (root), and a kernel and
// container that allow the namespace. The error says why not.
func CheckContain() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe", "probe")
	cmd.Args[0] = initName
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	switch {
	case errors.Is(err, syscall.EPERM):
		return fmt.Errorf("no PID namespace per job: not permitted (it takes root, CAP_SYS_ADMIN): %w", err)
	case err != nil:
		return fmt.Errorf("no PID namespace per job: %w", err)
	case string(out) != "ok\n":
		return errors.New("no PID namespace per job: this program does not act as a job's init (its main does not call runner.Init)")
	}
	return nil
}

// containAttr is the SysProcAttr of a job's init: a process group and a
// PID namespace of its own, and Pdeathsig (see procAttr).
func containAttr() *syscall.SysProcAttr {
	a := procAttr()
	a.Cloneflags = syscall.CLONE_NEWPID
	return a
}

// initCommand returns the command that starts a contained job: the init
// (this program) running path as argv with cred.
func initCommand(ctx context.Context, path string, argv []string, cred *syscall.Credential) *exec.Cmd {
	args := append([]string{credString(cred), path}, argv...)
	cmd := exec.CommandContext(ctx, "/proc/self/exe", args...)
	cmd.Args[0] = initName
	cmd.SysProcAttr = containAttr()
	return cmd
}

// startInit starts cmd, a job's init, with its status pipe, and waits for
// its first report: the command started, or could not (the init is then
// waited for, and the error is the one exec would have returned).
func startInit(cmd *exec.Cmd, path string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPipes, err)
	}
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	line, rerr := readLine(r)
	if line == "S\n" {
		return r, nil
	}
	r.Close()
	werr := cmd.Wait()
	if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(line, "E"), "\n")); err == nil && strings.HasPrefix(line, "E") {
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: syscall.Errno(n)}
	}
	return nil, fmt.Errorf("job init: %q, %v (%v)", line, rerr, werr)
}

// readStatus reads the command's wait status from the init's status pipe,
// once the init has exited. ok is false when the init did not say (it was
// killed first).
func readStatus(r *os.File) (ws syscall.WaitStatus, ok bool) {
	line, _ := readLine(r)
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(line, "W"), "\n"), 10, 32)
	if err != nil || !strings.HasPrefix(line, "W") {
		return 0, false
	}
	return syscall.WaitStatus(n), true
}

// readLine reads one line from r, a byte at a time: what follows it stays
// in the pipe for the next read.
func readLine(r *os.File) (string, error) {
	var b strings.Builder
	var c [1]byte
	for {
		n, err := r.Read(c[:])
		if n == 1 {
			b.WriteByte(c[0])
			if c[0] == '\n' {
				return b.String(), nil
			}
		}
		if err != nil {
			return b.String(), err
		}
	}
}
