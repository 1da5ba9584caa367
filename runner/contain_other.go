//go:build unix && !linux

package runner

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
)

var errNoContain = errors.New("no PID namespace per job: Linux only")

// IsInit reports whether this process was started as a contained job's
// init: never, where jobs cannot be contained.
func IsInit() bool { return false }

// Init is a contained job's init, which exists on Linux only.
func Init() { os.Exit(2) }

// CheckContain reports that jobs cannot be contained here.
func CheckContain() error { return errNoContain }

func initCommand(ctx context.Context, path string, argv []string, cred *syscall.Credential) *exec.Cmd {
	return exec.CommandContext(ctx, path)
}

func startInit(cmd *exec.Cmd, path string) (*os.File, error) { return nil, errNoContain }

func readStatus(r *os.File) (syscall.WaitStatus, bool) { return 0, false }
