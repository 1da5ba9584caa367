package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// zmwsCmd runs the zmws command line args with no broker behind it.
func zmwsCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var cli CLI
	p, err := kong.New(&cli, kong.Name("zmws"), kong.Exit(func(int) { t.Fatalf("kong exited on %v", args) }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := p.Parse(args)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	err = kctx.Run(&env{ctx: context.Background(), cli: &cli, stdout: &stdout, stderr: &stderr})
	return stdout.String(), err
}

// TestCLI_StartRefusesBadFile: an unknown key, a bad duration and a
// worker without its command are each named by their line, and nothing
// starts (no run folder is even made).
func TestCLI_StartRefusesBadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zmws.toml")
	os.WriteFile(path, []byte(`[broker]
heartbeet = "1s"
retain = "2.5"
data_dir = "data"

[[worker]]
service = "X"
`), 0o644)
	_, err := zmwsCmd(t, "start", "--config", path)
	for _, want := range []string{
		path + `:2: unknown key "heartbeet" in [broker]`,
		path + `:3: retain: "2.5" is not a duration`,
		path + `:7: service X has no command`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("start: %v\nwant %s", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("data dir made: %v", err)
	}
}

// TestCLI_StartNamesWhereItLooked: a missing zmwsd is an error naming
// the folder searched.
func TestCLI_StartNamesWhereItLooked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zmws.toml")
	os.WriteFile(path, []byte("[broker]\ndata_dir = \"data\"\n"), 0o644)
	_, err := zmwsCmd(t, "start", "--config", path, "--bin-dir", dir)
	if err == nil || err.Error() != "no zmwsd in --bin-dir "+dir {
		t.Errorf("start: %v", err)
	}
	out, err := zmwsCmd(t, "stop", "--config", path, "--run-dir", filepath.Join(dir, "run"))
	if err != nil || !strings.Contains(out, "nothing runs") {
		t.Errorf("stop with nothing started: %q, %v", out, err)
	}
}
