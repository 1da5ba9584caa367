//go:build unix && !linux

package runner

import "syscall"

// pipe2 makes a pipe with both ends close-on-exec, under the fork lock as
// os.Pipe does where pipe2 is missing.
func pipe2(fds *[2]int) error {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	if err := syscall.Pipe(fds[:]); err != nil {
		return err
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	return nil
}

// childExited reports whether pid, a child of ours, has exited. Without
// a way to peek, it knows only what exec's wait has told the spare.
func childExited(pid int) bool { return false }

// procAttr puts a command in a process group of its own.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
