// Package systemd holds zmws's systemd units (zmwsd.service, the template
// zmws-run@.service, zmws.sysusers) and their tests: systemd's own checkers
// must accept them. docs/OPERATIONS.md installs them.
package systemd

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// units are the unit files of this folder.
var units = []string{"zmwsd.service", "zmws-run@.service"}

// installDir is where the units expect the binaries.
const installDir = "/usr/local/bin/"

// analyze finds systemd-analyze, or skips the test: scripts/test installs
// it (Debian's systemd package), so only a machine without it skips.
func analyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed, units not verified (scripts/test installs it: apt-get install systemd)")
	}
	return path
}

// built is the folder build made, removed by TestMain.
var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(built)
	}
	os.Exit(code)
}

// build builds zmwsd and zmws-run into a temporary folder, once, and
// returns it: systemd-analyze verify checks that ExecStart's program exists
// and is executable.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = "/usr/local/go/bin/go" // where scripts/lib.sh expects Go
		}
		if built, buildErr = os.MkdirTemp("", "zmws-units-"); buildErr != nil {
			return
		}
		cmd := exec.Command(gobin, "build", "-o", built, "./cmd/zmwsd", "./cmd/zmws-run")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// install copies the units into a temporary folder with their programs in
// bin instead of /usr/local/bin, and returns the copies' paths. edit, when
// not nil, changes each unit's text first.
func install(t *testing.T, bin string, edit func(name, text string) string) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, name := range units {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if !strings.Contains(text, "\nExecStart="+installDir) {
			t.Fatalf("%s: no ExecStart=%s...", name, installDir)
		}
		text = strings.ReplaceAll(text, "\nExecStart="+installDir, "\nExecStart="+bin+"/")
		if edit != nil {
			text = edit(name, text)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// verify runs systemd-analyze verify on paths and returns its output and
// whether it passed: exit status 0 and not a word of warning.
// --recursive-errors makes a warning (an unknown key, a bad value) fail;
// without it only a few errors do.
func verify(t *testing.T, sa string, paths []string) (string, bool) {
	t.Helper()
	cmd := exec.Command(sa, append([]string{"verify", "--man=no", "--recursive-errors=yes"}, paths...)...)
	cmd.Dir = filepath.Dir(paths[0])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err == nil && out.Len() == 0
}

func TestUnits_Verify(t *testing.T) {
	sa := analyze(t)
	bin := build(t)
	paths := install(t, bin, nil)
	out, ok := verify(t, sa, paths)
	if !ok {
		t.Fatalf("systemd-analyze verify %s:\n%s", strings.Join(units, " "), out)
	}
	v, _ := exec.Command(sa, "--version").Output()
	first, _, _ := strings.Cut(string(v), "\n")
	t.Logf("systemd-analyze verify passes on %s (%s)", strings.Join(units, ", "), first)

	// The check has teeth: a misspelt key, a bad value or a missing
	// program in either unit makes it fail.
	for _, tc := range []struct {
		what string
		edit func(string) string
	}{
		{"a misspelt key", func(s string) string { return strings.Replace(s, "\nProtectSystem=", "\nProtectSytem=", 1) }},
		{"a bad value", func(s string) string { return strings.Replace(s, "\nType=notify\n", "\nType=notifying\n", 1) }},
		{"a missing program", func(s string) string {
			return strings.Replace(s, "ExecStart="+bin+"/", "ExecStart="+bin+"/nothing/", 1)
		}},
	} {
		for _, unit := range units {
			broken := install(t, bin, func(name, text string) string {
				if name != unit {
					return text
				}
				return tc.edit(text)
			})
			if out, ok := verify(t, sa, broken); ok {
				t.Errorf("%s with %s passes systemd-analyze verify:\n%s", unit, tc.what, out)
			}
		}
	}
}

// The units keep their hardening: systemd-analyze security's exposure
// score (0 safest, 10 none; 1.3 and 2.9 with systemd 252) stays at most a
// bound for each (--threshold counts tenths). zmws-run's is higher by
// choice: its jobs run in its sandbox (no system call filter).
func TestUnits_Security(t *testing.T) {
	sa := analyze(t)
	bin := build(t)
	paths := install(t, bin, nil)
	for i, threshold := range []string{"20", "35"} {
		cmd := exec.Command(sa, "security", "--offline=yes", "--threshold="+threshold, paths[i])
		cmd.Dir = filepath.Dir(paths[i])
		out, err := cmd.CombinedOutput()
		if bytes.Contains(out, []byte("Unknown option")) || bytes.Contains(out, []byte("unrecognized option")) {
			t.Skipf("this systemd-analyze has no security --offline: %s", out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err != nil {
			t.Errorf("%s: exposure above %s tenths (or the check failed: %v):\n%s", units[i], threshold, err, out)
			continue
		}
		t.Logf("%s", lines[len(lines)-1])
	}
}

func TestSysusers(t *testing.T) {
	su, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		t.Skip("systemd-sysusers not installed (scripts/test installs it: apt-get install systemd)")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs("zmws.sysusers") // a relative one is taken under --root
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(su, "--dry-run", "--root="+root, conf).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Creating user 'zmws'")) {
		t.Fatalf("systemd-sysusers --dry-run zmws.sysusers: %v\n%s", err, out)
	}
}
