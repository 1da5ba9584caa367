package systemd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmws/zmws/internal/notifytest"
	"github.com/zmws/zmws/internal/zmqtest"
)

// configPath is the installation file the units name.
const configPath = "/etc/zmws/zmws.toml"

// execStart returns the ExecStart= command line of the unit file name, with
// its program in bin, configPath replaced by config and %i by instance.
func execStart(t *testing.T, name, bin, config, instance string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		cmd, ok := strings.CutPrefix(line, "ExecStart=")
		if !ok {
			continue
		}
		args := strings.Fields(cmd) // the units quote nothing
		for i, a := range args {
			a = strings.Replace(a, installDir, bin+"/", 1)
			a = strings.ReplaceAll(a, configPath, config)
			args[i] = strings.ReplaceAll(a, "%i", instance)
		}
		return args
	}
	t.Fatalf("%s: no ExecStart=", name)
	return nil
}

// process is a unit's main process, started as systemd would start it:
// ExecStart's command line, NOTIFY_SOCKET, and SIGTERM to stop it.
type process struct {
	cmd    *exec.Cmd
	notify *notifytest.Socket
	out    bytes.Buffer
	done   chan error
}

func startUnit(t *testing.T, args []string) *process {
	t.Helper()
	p := &process{notify: notifytest.New(t, true), done: make(chan error, 1)}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+p.notify.Name)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// stop sends SIGTERM and checks for STOPPING=1 and a clean exit.
func (p *process) stop(t *testing.T, name string) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.notify.Expect(t, "STOPPING=1")
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Errorf("%s after SIGTERM: %v\n%s", name, err, p.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30 s of SIGTERM\n%s", name, p.out.String())
	}
}

// The units' ExecStart= lines run: zmwsd from the installation file says
// READY=1, zmws-run@example (the [[worker]] entry "example") says READY=1
// and serves, and both stop on SIGTERM with STOPPING=1 and exit 0.
func TestUnits_ExecStartRuns(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "zmws.toml")
	workers := zmqtest.FreeEndpoint(t)
	toml := `[broker]
client_bind = "` + zmqtest.FreeEndpoint(t) + `"
worker_bind = "` + workers + `"
events_bind = ""
http_bind = ""
data_dir = "data"

[[worker]]
name = "example"
service = "SAY"
command = "echo {{msg}}"
`
	if err := os.WriteFile(config, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}

	broker := startUnit(t, execStart(t, "zmwsd.service", bin, config, ""))
	broker.notify.Expect(t, "READY=1")
	worker := startUnit(t, execStart(t, "zmws-run@.service", bin, config, "example"))
	if got := worker.notify.Expect(t, "READY=1"); !strings.Contains(got, "STATUS=serving SAY (1 slot) for "+workers) {
		t.Errorf("zmws-run@example: %q", got)
	}
	worker.stop(t, "zmws-run@example")
	broker.stop(t, "zmwsd")
	if _, err := os.Stat(filepath.Join(dir, "data", "zmws.db")); err != nil {
		t.Errorf("journal not where data_dir says: %v", err)
	}
}
