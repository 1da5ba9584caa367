package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// copyBuf is the size of a read buffer for a command's stdout or stderr.
const copyBuf = 32 << 10

// errPipes wraps a failure to make a command's pipes (out of descriptors).
var errPipes = errors.New("runner: pipes")

// pipes are the parent's and the child's ends of a command's stdin, stdout
// and stderr. The parent's ends are nonblocking and in Go's poller: a
// write can be tried without waiting, and closing an end ends a read
// blocked on it. The child's ends are plain blocking descriptors, kept out
// of the poller (fewer system calls per job), and closed once the child has
// them.
type pipes struct {
	inW, outR, errR *os.File // the parent's
	inR, outW, errW *os.File // the child's
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	if p.inR, p.inW, err = pipe(true); err != nil {
		return nil, err
	}
	if p.outR, p.outW, err = pipe(false); err != nil {
		p.closeAll()
		return nil, err
	}
	if p.errR, p.errW, err = pipe(false); err != nil {
		p.closeAll()
		return nil, err
	}
	return &p, nil
}

// pipe returns a new pipe whose parent end (the write end when
// parentWrites, else the read end) is nonblocking.
func pipe(parentWrites bool) (r, w *os.File, err error) {
	var fds [2]int
	if err := pipe2(&fds); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errPipes, os.NewSyscallError("pipe2", err))
	}
	parent := fds[0]
	if parentWrites {
		parent = fds[1]
	}
	if err := unix.SetNonblock(parent, true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("%w: %w", errPipes, os.NewSyscallError("fcntl", err))
	}
	// os.NewFile puts a nonblocking descriptor in the poller, and leaves a
	// blocking one out.
	return os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1"), nil
}

func (p *pipes) closeChild()  { closeFiles(p.inR, p.outW, p.errW) }
func (p *pipes) closeParent() { closeFiles(p.inW, p.outR, p.errR) }
func (p *pipes) closeAll()    { p.closeChild(); p.closeParent() }

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// proc is a started command: its process, leader of a process group of its
// own, and the parent's ends of its pipes.
type proc struct {
	cmd     *exec.Cmd
	pipes   *pipes
	pid     int         // also the process group's id
	stopped atomic.Bool // cmd.Cancel sent SIGTERM: the job did not end by itself
	status  *os.File    // a contained job's: its init's status pipe (contain_linux.go)

	// A spare (prestart.go) is made with a context of its own, which
	// cancel ends, and waited for from the start by a goroutine, which
	// sets waitErr and closes exited.
	cancel  context.CancelCauseFunc
	exited  chan struct{}
	waitErr error
}

// wait waits for the process to exit (see exec.Cmd.Wait).
func (pr *proc) wait() error {
	if pr.exited != nil {
		<-pr.exited
		return pr.waitErr
	}
	return pr.cmd.Wait()
}

// resolved is where the program of a template was found in PATH.
type resolved struct {
	envPath string // the PATH it was looked up in
	path    string
}

// program returns where to find the program name: name itself when it
// holds a "/", else its place in zmws-run's PATH, looked up once and
// remembered while PATH stays the same. cached says the answer came from
// memory (and may be stale).
func (h *Handler) program(name string) (path string, cached bool, err error) {
	if strings.Contains(name, "/") {
		return name, false, nil
	}
	envPath := os.Getenv("PATH")
	if r := h.prog.Load(); r != nil && r.envPath == envPath {
		return r.path, true, nil
	}
	path, err = exec.LookPath(name)
	if err != nil {
		return "", false, err
	}
	h.prog.Store(&resolved{envPath: envPath, path: path})
	return path, false, nil
}

// spawn starts argv with env in the template's workdir, in a process group
// of its own, its stdio on new pipes. When ctx ends, the group gets
// SIGTERM, and the leader SIGKILL after the template's grace (then run
// kills the rest of the group). The program's path is resolved once per
// handler (program); a start that fails because it is gone from there (a
// binary removed or replaced by one elsewhere in PATH) looks again, once.
// exec.CommandContext gets the resolved path, which holds a "/", so it does
// no lookup of its own; Args[0] stays the name as written.
//
// Config.OnSpawn, when set, is told how long a successful spawn took.
func (h *Handler) spawn(ctx context.Context, argv, env []string) (*proc, error) {
	if h.onSpawn != nil {
		start := time.Now()
		pr, err := h.spawnNow(ctx, argv, env)
		if err == nil {
			h.onSpawn(h.t.service, time.Since(start))
		}
		return pr, err
	}
	return h.spawnNow(ctx, argv, env)
}

func (h *Handler) spawnNow(ctx context.Context, argv, env []string) (*proc, error) {
	path, cached, err := h.program(argv[0])
	if err != nil {
		return nil, err
	}
	p, err := newPipes()
	if err != nil {
		return nil, err
	}
	pr := &proc{pipes: p}
	for {
		pr.cmd = h.command(ctx, pr, path, argv, env)
		err = h.start(pr, path)
		if err == nil || !cached || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		h.prog.Store(nil)
		again, _, lerr := h.program(argv[0])
		if lerr != nil || again == path {
			break
		}
		path, cached = again, false
	}
	p.closeChild()
	if err != nil {
		p.closeParent()
		return nil, err
	}
	pr.pid = pr.cmd.Process.Pid
	return pr, nil
}

// command returns the command that runs argv: the program itself, or, for
// a contained job, its init (contain_linux.go), which starts the program in
// a PID namespace of their own. Either runs as the template's user.
func (h *Handler) command(ctx context.Context, pr *proc, path string, argv, env []string) *exec.Cmd {
	var cmd *exec.Cmd
	if h.contain {
		cmd = initCommand(ctx, path, argv, h.t.cred)
		cmd.Cancel = func() error {
			// The init passes it on to every process of the namespace.
			pr.stopped.Store(true)
			err := cmd.Process.Signal(syscall.SIGTERM)
			if errors.Is(err, os.ErrProcessDone) {
				return os.ErrProcessDone
			}
			return err
		}
	} else {
		cmd = exec.CommandContext(ctx, path, argv[1:]...)
		cmd.Args[0] = argv[0]
		cmd.SysProcAttr = procAttr()
		cmd.SysProcAttr.Credential = h.t.cred
		cmd.Cancel = func() error {
			pr.stopped.Store(true)
			return signalGroup(cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	cmd.Env = env
	cmd.Dir = h.t.workdir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pr.pipes.inR, pr.pipes.outW, pr.pipes.errW
	// After the grace, exec kills the process; then run kills the group.
	cmd.WaitDelay = h.t.grace
	return cmd
}

// start starts pr's command; a contained job's once its init has started
// the program (or failed to: the error is then the program's).
func (h *Handler) start(pr *proc, path string) error {
	if !h.contain {
		return pr.cmd.Start()
	}
	status, err := startInit(pr.cmd, path)
	pr.status = status
	return err
}

// exitStatus returns how pr's command ended, once pr.wait has returned:
// as its init reported it for a contained job, else as the kernel did.
// ok is false when neither says.
func (pr *proc) exitStatus() (ws syscall.WaitStatus, ok bool) {
	if pr.status != nil {
		ws, ok = readStatus(pr.status)
		pr.status.Close()
		pr.status = nil
		if ok {
			return ws, true
		}
	}
	if ps := pr.cmd.ProcessState; ps != nil {
		ws, ok = ps.Sys().(syscall.WaitStatus)
	}
	return ws, ok
}

// signalGroup sends sig to process group pgid. A group that is gone is
// reported as os.ErrProcessDone, which exec takes as "already finished".
func signalGroup(pgid int, sig syscall.Signal) error {
	err := syscall.Kill(-pgid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// feed writes frames to w, the command's stdin, and closes it. What the
// pipe takes at once (64 KiB on Linux, so usually all of it) is written
// here, without waiting; the rest by a goroutine, which sends on done when
// it is over, so no size of input can deadlock a command that writes
// before it has read all of it. feed reports whether it started that
// goroutine.
func feed(w *os.File, frames [][]byte, done chan<- struct{}) bool {
	rest := writeNow(w, frames)
	if len(rest) == 0 {
		w.Close()
		return false
	}
	go func() {
		writeStdin(w, rest)
		w.Close()
		done <- struct{}{}
	}()
	return true
}

// writeNow writes what w (a nonblocking pipe) takes without waiting and
// returns what is left: nothing when all is written or when the command
// has closed its stdin (a command need not read its input).
func writeNow(w *os.File, frames [][]byte) [][]byte {
	rc, err := w.SyscallConn()
	if err != nil {
		return frames
	}
	for len(frames) > 0 {
		f := frames[0]
		if len(f) == 0 {
			frames = frames[1:]
			continue
		}
		var (
			n    int
			werr error
		)
		if err := rc.Write(func(fd uintptr) bool {
			n, werr = unix.Write(int(fd), f)
			return true // one try: never wait for room
		}); err != nil {
			return frames
		}
		switch {
		case werr == unix.EINTR:
			continue
		case werr == unix.EAGAIN:
			return frames
		case werr != nil:
			return nil
		case n < len(f):
			// The frames belong to the job: make a new list, do not cut one.
			return append([][]byte{f[n:]}, frames[1:]...)
		}
		frames = frames[1:]
	}
	return nil
}

// writeStdin writes the frames to w, giving up quietly when the command
// stops reading (a command need not read its input).
func writeStdin(w io.Writer, frames [][]byte) {
	for _, f := range frames {
		if _, err := w.Write(f); err != nil {
			return
		}
	}
}

// copyFrom reads r until EOF (or until r is closed) into w, with a buffer
// of the handler's pool.
func (h *Handler) copyFrom(w io.Writer, r io.Reader) {
	buf, _ := h.bufs.Get().(*[copyBuf]byte)
	if buf == nil {
		buf = new([copyBuf]byte)
	}
	defer h.bufs.Put(buf)
	for {
		n, err := r.Read(buf[:])
		if n > 0 {
			w.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}
