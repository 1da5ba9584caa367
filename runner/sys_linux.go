//go:build linux

package runner

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// procAttr puts a command in a process group of its own, and has the
// kernel kill it if zmws-run dies without stopping it (SIGKILL, OOM): the
// broker gives its job to another worker then, and a prestarted command
// waiting for its job goes too. (The kernel closes the dead process's
// files before it signals its children, so a filter blocked on its input
// may see the end of it a moment before it is killed.)
// (Pdeathsig follows the thread that forked; Go keeps its threads, as
// nothing here locks a goroutine to one.)
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// pipe2 makes a pipe with both ends close-on-exec, in one system call.
func pipe2(fds *[2]int) error { return unix.Pipe2(fds[:], unix.O_CLOEXEC) }

// childExited reports whether pid, a child of ours, has exited, whether or
// not it has been waited for yet. It only peeks (WNOWAIT): the wait stays
// exec's.
func childExited(pid int) bool {
	var info unix.Siginfo // waitid zeroes it when no child is waitable
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == unix.ECHILD || err == nil && info.Signo == int32(unix.SIGCHLD)
}
