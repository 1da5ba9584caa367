package version

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

func TestFormat(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i+1 < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"release", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: vcs("vcs", "git", "vcs.revision", "abcdef1234567890abcdef1234567890abcdef12", "vcs.time", "2026-12-02T02:33:14Z", "vcs.modified", "false")},
			"zmwsd v1.2.3 (rev abcdef123456, 2026-12-02T02:33:14Z, go1.26.8)"},
		{"modified checkout", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261202023314-abcdef123456+dirty"},
			Settings: vcs("vcs.revision", "abcdef1234567890abcdef1234567890abcdef12", "vcs.time", "2026-12-02T02:33:14Z", "vcs.modified", "true")},
			"zmwsd v0.0.0-20261202023314-abcdef123456+dirty (rev abcdef123456, 2026-12-02T02:33:14Z, modified, go1.26.8)"},
		{"devel, no VCS", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"zmwsd (devel) (go1.26.8)"},
		{"nothing known", debug.BuildInfo{}, "zmwsd (devel)"},
		{"short revision", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("vcs.revision", "abc1234")},
			"zmwsd (devel) (rev abc1234)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Format("zmwsd", &tc.bi); got != tc.want {
				t.Errorf("Format:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	// A test binary has partial build information: its name and some
	// version at least.
	if s := String("zmws"); !strings.HasPrefix(s, "zmws ") {
		t.Errorf("String = %q", s)
	}
}

func TestString_Stamped(t *testing.T) {
	defer func(s string) { stamp = s }(stamp)
	stamp = "v1.2.3"
	if s := String("zmws"); !strings.HasPrefix(s, "zmws v1.2.3") {
		t.Errorf("String with a stamp = %q, want it to start zmws v1.2.3", s)
	}
}

func TestVars_VersionFlag(t *testing.T) {
	var cli struct {
		Version kong.VersionFlag `help:"Print the version and exit."`
		Name    string           `arg:"" help:"Required, yet --version alone works."`
	}
	var out strings.Builder
	exited := -1
	// kong goes on after Exit returns, and then misses NAME: that error
	// is not the process's, which would have exited.
	k, err := kong.New(&cli, kong.Name("zmws"), Vars("zmws"), kong.Writers(&out, &out), kong.Exit(func(c int) { exited = c }))
	if err != nil {
		t.Fatal(err)
	}
	k.Parse([]string{"--version"})
	if exited != 0 || out.String() != String("zmws")+"\n" {
		t.Errorf("--version: exit %d, printed %q, want 0 and %q", exited, out.String(), String("zmws"))
	}
}
