package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/config"
	"github.com/zmws/zmws/internal/testbroker"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zmws.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// parseErr parses args as main does and returns the error.
func parseErr(t *testing.T, args ...string) error {
	t.Helper()
	var cli CLI
	k, err := kong.New(&cli, append(options(), kong.Exit(func(int) { t.Fatalf("kong exits on %q", args) }))...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Parse(args)
	return err
}

// TestConfig_KeysAreFlags: a [[worker]]'s keys are zmws-run's flags (but
// --config, --worker and --check), each of a kind kong parses the same way.
func TestConfig_KeysAreFlags(t *testing.T) {
	var cli CLI
	k := kong.Must(&cli, options()...)
	flags := map[string]*kong.Flag{}
	for _, fl := range k.Model.Flags {
		switch fl.Name {
		case "config", "worker", "check", "help", "version":
		default:
			flags[fl.Name] = fl
		}
	}
	for _, key := range config.WorkerKeys() {
		if key.Flag == "" {
			continue // name, command
		}
		fl, ok := flags[key.Flag]
		if !ok {
			t.Errorf("[[worker]] key %s: zmws-run has no --%s", key.Name, key.Flag)
			continue
		}
		delete(flags, key.Flag)
		got := config.KindString
		switch fl.Target.Interface().(type) {
		case time.Duration:
			got = config.KindDuration
		case int:
			got = config.KindInt
		case bool:
			got = config.KindBool
		case []string:
			got = config.KindList
		}
		if got != key.Kind && !(got == config.KindString && (key.Kind == config.KindPath || key.Kind == config.KindEnum)) {
			t.Errorf("[[worker]] key %s is of kind %d, --%s of kind %d", key.Name, key.Kind, fl.Name, got)
		}
		if key.Kind == config.KindEnum && fl.Enum != "" && fl.Enum != strings.Join(key.Enum, ",") {
			t.Errorf("[[worker]] key %s takes %q, --%s %q", key.Name, key.Enum, fl.Name, fl.Enum)
		}
	}
	for name := range flags {
		t.Errorf("zmws-run --%s has no [[worker]] key: add it to config/keys.go and docs/CONFIG.md", name)
	}
}

// TestConfig_Precedence: on zmws-run's command line, flag > env > file >
// default; the entry's command is the --service's unless words follow --.
func TestConfig_Precedence(t *testing.T) {
	path := writeConfig(t, `[broker]
worker_bind = "tcp://*:7000"
heartbeat = "1s"

[[worker]]
name = "a"
service = "A"
command = "tr a-z A-Z"
concurrency = 3
env = ["X=1", "Y=2,3"]

[[worker]]
name = "b"
jobs_dir = "jobs.d"
brokers = ["tcp://b1:1", "tcp://b2:2"]
`)
	for _, tc := range []struct {
		name string
		env  string // ZMWS_RUN_CONCURRENCY
		args []string
		want int
	}{
		{"default", "", []string{"--config", path, "--worker", "b"}, 1},
		{"file", "", []string{"--config", path, "--worker", "a"}, 3},
		{"env", "5", []string{"--config", path, "--worker", "a"}, 5},
		{"flag", "5", []string{"--config", path, "--worker", "a", "--concurrency", "7"}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("ZMWS_RUN_CONCURRENCY", tc.env)
			}
			if cli := parse(t, tc.args...); cli.Concurrency != tc.want {
				t.Errorf("concurrency %d, want %d", cli.Concurrency, tc.want)
			}
		})
	}

	cli := parse(t, "--config", path, "--worker", "a")
	if cli.Service != "A" || !reflect.DeepEqual(cli.Broker, []string{"tcp://127.0.0.1:7000"}) || cli.Heartbeat != time.Second ||
		!reflect.DeepEqual(cli.Env, []string{"X=1", "Y=2,3"}) {
		t.Errorf("entry a: service %q, brokers %q, heartbeat %v, env %q", cli.Service, cli.Broker, cli.Heartbeat, cli.Env)
	}
	var out bytes.Buffer
	cli.Check = true
	if err := run(context.Background(), cli, &out, &bytes.Buffer{}); err != nil || !strings.HasPrefix(out.String(), "A\ttr a-z A-Z\n") {
		t.Errorf("--check of entry a: %q, %v", out.String(), err)
	}
	cli = parse(t, "--config", path, "--worker", "a", "--check", "--", "rev")
	if out.Reset(); run(context.Background(), cli, &out, &bytes.Buffer{}) != nil || !strings.HasPrefix(out.String(), "A\trev\n") {
		t.Errorf("the command after -- wins over the entry's: %q", out.String())
	}
	cli = parse(t, "--config", path, "--worker", "b")
	if !reflect.DeepEqual(cli.Broker, []string{"tcp://b1:1", "tcp://b2:2"}) || cli.JobsDir != filepath.Join(filepath.Dir(path), "jobs.d") {
		t.Errorf("entry b: brokers %q, jobs dir %q", cli.Broker, cli.JobsDir)
	}
	t.Setenv("ZMWS_RUN_BROKER", "tcp://env:1")
	if cli = parse(t, "--config", path, "--worker", "b"); !reflect.DeepEqual(cli.Broker, []string{"tcp://env:1"}) {
		t.Errorf("ZMWS_RUN_BROKER: brokers %q", cli.Broker)
	}
}

// TestConfig_Selects: --worker picks the entry; it is needed when there
// are several, and must name one.
func TestConfig_Selects(t *testing.T) {
	one := writeConfig(t, "[[worker]]\nservice = \"A\"\ncommand = \"rev\"\n")
	two := writeConfig(t, "[[worker]]\nservice = \"A\"\ncommand = \"rev\"\n[[worker]]\nservice = \"B\"\ncommand = \"cat\"\n")
	none := writeConfig(t, "[broker]\nworker_bind = \"tcp://127.0.0.1:7001\"\n")
	if cli := parse(t, "--config", one); cli.Service != "A" || cli.entry == nil {
		t.Errorf("the only entry: service %q", cli.Service)
	}
	if cli := parse(t, "--config", two, "--worker", "B"); cli.Service != "B" {
		t.Errorf("--worker B: service %q", cli.Service)
	}
	// No entry: the broker's endpoint still counts.
	if cli := parse(t, "--config", none, "--service", "X", "--", "rev"); !reflect.DeepEqual(cli.Broker, []string{"tcp://127.0.0.1:7001"}) {
		t.Errorf("no entry: brokers %q", cli.Broker)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", two}, two + `: 2 [[worker]] entries (A, B): name one with --worker NAME`},
		{[]string{"--config", two, "--worker", "C"}, two + `: no [[worker]] named "C"; the names are A, B`},
		{[]string{"--config", none, "--worker", "C"}, none + `: no [[worker]] named "C": the file has no [[worker]] entries`},
		{[]string{"--config=", "--worker", "C"}, `--worker C: no installation file to find it in: give --config FILE`},
		{[]string{"--config", "/nonexistent/zmws.toml"}, `/nonexistent/zmws.toml: no such file or directory`},
	} {
		if err := parseErr(t, tc.args...); err == nil || err.Error() != tc.want {
			t.Errorf("%q: %v, want %s", tc.args, err, tc.want)
		}
	}
}

// TestConfig_Serves: a zmws-run started from an entry serves its command,
// connected to the [broker]'s worker endpoint.
func TestConfig_Serves(t *testing.T) {
	if _, err := exec.LookPath("rev"); err != nil {
		t.Skip("rev not installed")
	}
	srv, c := testbroker.Start(t)
	path := writeConfig(t, `[broker]
worker_bind = "`+srv.WorkerEndpoint()+`"
heartbeat = "200ms"

[[worker]]
service = "CFG-REV"
command = "rev"
`)
	stop := startCLI(t, c, zerolog.NewTestWriter(t), parse(t, "--config", path), "CFG-REV")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := c.Call(ctx, "CFG-REV", client.Request{Params: map[string]string{"str": "hello"}}, nil)
	if err != nil || !res.OK() || string(res.Output) != "olleh\n" {
		t.Fatalf("SYNC-CFG-REV?str=hello: %+v, %v", res, err)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}

// TestConfig_Example: every entry of examples/zmws.toml loads and checks.
func TestConfig_Example(t *testing.T) {
	const path = "../../examples/zmws.toml"
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range f.Names() {
		var out bytes.Buffer
		cli := parse(t, "--config", path, "--worker", name, "--check")
		if err := run(context.Background(), cli, &out, &bytes.Buffer{}); err != nil {
			t.Errorf("[[worker]] %s: %v", name, err)
		}
		if strings.Count(out.String(), "\n") < 2 {
			t.Errorf("[[worker]] %s serves nothing:\n%s", name, out.String())
		}
	}
}

// TestMain_BadConfig: the real zmws-run refuses a bad file: a clear error
// naming the line, a non-zero exit, nothing started.
func TestMain_BadConfig(t *testing.T) {
	head := "[broker]\nworker_bind = \"tcp://127.0.0.1:7002\"\n\n[[worker]]\n"
	for _, tc := range []struct{ name, text, want string }{
		{"unknown key", head + "service = \"A\"\ncommand = \"rev\"\nconcurency = 2\n", `zmws.toml:7: unknown key "concurency" in [[worker]]`},
		{"bad duration", head + "service = \"A\"\ncommand = \"rev\"\ntimeout = \"10\"\n", `zmws.toml:7: timeout: "10" is not a duration`},
		{"bad int", head + "service = \"A\"\ncommand = \"rev\"\nconcurrency = \"2\"\n", `zmws.toml:7: concurrency: want an integer, not a string`},
		{"no command", head + "service = \"A\"\nconcurrency = 2\n", `zmws.toml:5: service A has no command`},
		{"bad command", head + "service = \"A\"\ncommand = \"rev 'x\"\n", `zmws.toml:6: service A: command: cannot split "rev 'x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "ZMWS_RUN_TEST_MAIN=1", "ZMWS_RUN_TEST_ARGS=--config\n"+path+"\n--log-format=console")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("%v, want a non-zero exit; output:\n%s", err, out)
			}
			want := "zmws-run: error: " + filepath.Join(filepath.Dir(path), tc.want)
			if !strings.Contains(string(out), want) || strings.Contains(string(out), "Usage:") || strings.Contains(string(out), "service loaded") {
				t.Errorf("output %q, want the error %s (and no usage, no service)", out, want)
			}
		})
	}
}
