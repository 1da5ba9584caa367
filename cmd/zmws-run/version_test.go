package main

import (
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/internal/version"
)

func TestVersionFlag(t *testing.T) {
	var cli CLI
	var out strings.Builder
	exited := -1
	k, err := kong.New(&cli, append(options(), kong.Writers(&out, &out), kong.Exit(func(c int) { exited = c }))...)
	if err != nil {
		t.Fatal(err)
	}
	k.Parse([]string{"--version"}) // a real parse exits here
	if want := version.String("zmws-run") + "\n"; exited != 0 || out.String() != want {
		t.Errorf("zmws-run --version: exit %d, printed %q, want 0 and %q", exited, out.String(), want)
	}
}
