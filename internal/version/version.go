// Package version says which build of zmws a binary is, for the --version
// flag of zmwsd, zmws-run and zmws: the module version and the VCS
// revision, commit time and modified flag that the go command records in
// the binary (runtime/debug.ReadBuildInfo).
//
//	type CLI struct {
//		Version kong.VersionFlag `help:"Print the version and exit."`
//	}
//	kong.Parse(&cli, kong.Name("zmwsd"), version.Vars("zmwsd"))
//
// prints, for `zmwsd --version`,
//
//	zmwsd v0.0.0-20261202023314-abcdef123456+dirty (rev abcdef123456, 2026-12-02T02:33:14Z, modified, go1.26.8)
//
// A release build (scripts/release) names its version itself, which then
// replaces the module version the go command recorded:
//
//	go build -ldflags "-X github.com/zmws/zmws/internal/version.stamp=v1.2.3" ./cmd/zmwsd
package version

import (
	"runtime/debug"
	"strings"

	"github.com/alecthomas/kong"
)

// revLen is how much of a revision is shown: as much as a Go
// pseudo-version holds.
const revLen = 12

// stamp is the version a release build sets with the linker's -X flag
// (scripts/release); empty otherwise. It is never changed at run time.
var stamp string

// String returns the version line of this binary, called name: Format of
// its build information, with the stamped version, when there is one, in
// place of the module version.
func String(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if stamp != "" {
			return name + " " + stamp
		}
		return name + " (devel, no build information)"
	}
	if stamp != "" {
		stamped := *bi
		stamped.Main.Version = stamp
		bi = &stamped
	}
	return Format(name, bi)
}

// Format returns the version line of a binary called name built as bi:
// name, the main module's version ("(devel)" when the go command knew
// none), then in parentheses what is known of the VCS revision (its first
// 12 characters), the commit's time, "modified" when the working tree had
// changes, and the Go version.
func Format(name string, bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var parts []string
	if rev != "" {
		parts = append(parts, "rev "+rev[:min(len(rev), revLen)])
	}
	if at != "" {
		parts = append(parts, at)
	}
	if modified {
		parts = append(parts, "modified")
	}
	if bi.GoVersion != "" {
		parts = append(parts, bi.GoVersion)
	}
	if len(parts) == 0 {
		return name + " " + v
	}
	return name + " " + v + " (" + strings.Join(parts, ", ") + ")"
}

// Vars is the kong option that gives a kong.VersionFlag its text: the
// version line of this binary, called name.
func Vars(name string) kong.Vars {
	return kong.Vars{"version": String(name)}
}
