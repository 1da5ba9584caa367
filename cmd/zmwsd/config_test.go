package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/config"
)

// parseApp parses args with main's parser (the app, its hooks and all).
func parseApp(t *testing.T, args ...string) (app, error) {
	t.Helper()
	var a app
	k, err := kong.New(&a, append(options(), kong.Exit(func(int) { t.Fatalf("kong exits on %q", args) }))...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Parse(args)
	return a, err
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zmws.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfig_KeysAreFlags: [broker]'s keys are exactly serve's flags, each
// of a kind kong parses the same way, and the file's defaults are the
// flags'.
func TestConfig_KeysAreFlags(t *testing.T) {
	t.Setenv("ZMWSD_CONFIG", "")
	var a app
	k := kong.Must(&a, options()...)
	var serve *kong.Node
	for _, c := range k.Model.Children {
		if c.Name == "serve" {
			serve = c
		}
	}
	flags := map[string]*kong.Flag{}
	for _, fl := range serve.Flags {
		if fl.Name != "config" && fl.Name != "check" && fl.Name != "help" && fl.Name != "version" {
			flags[fl.Name] = fl
		}
	}
	for _, key := range config.BrokerKeys() {
		fl, ok := flags[key.Flag]
		if !ok {
			t.Errorf("[broker] key %s: zmwsd has no --%s", key.Name, key.Flag)
			continue
		}
		delete(flags, key.Flag)
		if got := kindOf(fl); got != key.Kind && !(got == config.KindString && (key.Kind == config.KindPath || key.Kind == config.KindEnum)) {
			t.Errorf("[broker] key %s is of kind %d, --%s of kind %d", key.Name, key.Kind, fl.Name, got)
		}
		if key.Kind == config.KindEnum && fl.Enum != "" && fl.Enum != strings.Join(key.Enum, ",") {
			t.Errorf("[broker] key %s takes %q, --%s %q", key.Name, key.Enum, fl.Name, fl.Enum)
		}
	}
	for name := range flags {
		t.Errorf("zmwsd --%s has no [broker] key: add it to config/keys.go and docs/CONFIG.md", name)
	}

	if _, err := k.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cli := a.Serve
	f, _ := config.Parse("zmws.toml", nil)
	if cli.ClientBind != f.ClientBind() || cli.WorkerBind != f.WorkerBind() || cli.EventsBind != f.EventsBind() ||
		cli.HTTPBind != f.HTTPBind() || cli.DataDir != f.DataDir() {
		t.Errorf("zmwsd's defaults %q %q %q %q %q differ from config's", cli.ClientBind, cli.WorkerBind, cli.EventsBind, cli.HTTPBind, cli.DataDir)
	}
}

// kindOf is the config.Kind a flag's type parses like.
func kindOf(fl *kong.Flag) config.Kind {
	switch fl.Target.Interface().(type) {
	case time.Duration:
		return config.KindDuration
	case int, int64:
		return config.KindInt
	case bool:
		return config.KindBool
	case []string:
		return config.KindList
	}
	return config.KindString
}

// TestConfig_Precedence: on zmwsd's own command line, flag > env > file >
// default.
func TestConfig_Precedence(t *testing.T) {
	path := writeConfig(t, "[broker]\nheartbeat = \"1s\"\nmax_queue = 50\nhttp_host = [\"a.example\", \"b.example\"]\ndata_dir = \"jobs\"\n")
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want time.Duration
	}{
		{"default", "", []string{"--config="}, 2500 * time.Millisecond},
		{"file", "", []string{"--config", path}, time.Second},
		{"env", "3s", []string{"--config", path}, 3 * time.Second},
		{"flag", "3s", []string{"--config", path, "--heartbeat=4s"}, 4 * time.Second},
		{"serve's flag", "3s", []string{"serve", "--heartbeat=4s", "--config", path}, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("ZMWSD_HEARTBEAT", tc.env)
			}
			a, err := parseApp(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if a.Serve.Heartbeat != tc.want {
				t.Errorf("heartbeat %v, want %v", a.Serve.Heartbeat, tc.want)
			}
		})
	}
	t.Setenv("ZMWSD_CONFIG", path) // the variable names the file too
	a, err := parseApp(t)
	if err != nil {
		t.Fatal(err)
	}
	if c := a.Serve; c.MaxQueue != 50 || !reflect.DeepEqual(c.HTTPHost, []string{"a.example", "b.example"}) ||
		c.DataDir != filepath.Join(filepath.Dir(path), "jobs") || c.file == nil {
		t.Errorf("from the file: max queue %d, hosts %q, data dir %q", c.MaxQueue, c.HTTPHost, c.DataDir)
	}
	// journal commands take data_dir.
	if a, err = parseApp(t, "journal", "check"); err != nil || a.Journal.Check.DataDir != filepath.Join(filepath.Dir(path), "jobs") {
		t.Errorf("journal check: data dir %q, %v", a.Journal.Check.DataDir, err)
	}
}

// TestConfig_Serves: zmwsd serves on what the file says.
func TestConfig_Serves(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	path := writeConfig(t, `[broker]
client_bind = "tcp://127.0.0.1:*"
worker_bind = "tcp://127.0.0.1:*"
events_bind = ""
http_bind = "127.0.0.1:0"
data_dir = "`+data+`"
heartbeat = "100ms"
`)
	a, err := parseApp(t, "--config", path, "--log-level=debug")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	srv, httpAddr, done := start(t, ctx, a.Serve, &logs)
	if srv.EventsEndpoint() != "" || !strings.HasPrefix(srv.ClientEndpoint(), "tcp://127.0.0.1:") || httpAddr == "" {
		t.Errorf("endpoints: client %s, events %q, HTTP %q", srv.ClientEndpoint(), srv.EventsEndpoint(), httpAddr)
	}
	if status, _ := httpGet(t, "http://"+httpAddr+"/healthz"); status != http.StatusOK {
		t.Errorf("healthz: %d", status)
	}
	if _, err := os.Stat(filepath.Join(data, "zmws.db")); err != nil {
		t.Errorf("journal: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"config":"`+path+`"`) {
		t.Errorf("the log does not name the file:\n%s", logs.String())
	}
}

// TestConfig_Example: examples/zmws.toml starts a broker (its endpoints
// moved to random ports and its journal to a temporary folder by flags).
func TestConfig_Example(t *testing.T) {
	a, err := parseApp(t, "--config", "../../examples/zmws.toml", "--client-bind=tcp://127.0.0.1:*",
		"--worker-bind=tcp://127.0.0.1:*", "--events-bind=tcp://127.0.0.1:*", "--http-bind=127.0.0.1:0",
		"--data-dir", filepath.Join(t.TempDir(), "data"), "--log-format=json")
	if err != nil {
		t.Fatal(err)
	}
	if a.Serve.Heartbeat != 2500*time.Millisecond || a.Serve.History != 100 {
		t.Errorf("heartbeat %v, history %d", a.Serve.Heartbeat, a.Serve.History)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	_, _, done := start(t, ctx, a.Serve, &logs)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMain_BadConfig: the real zmwsd refuses a bad file: a clear error
// naming the line, a non-zero exit, nothing started (no journal made).
func TestMain_BadConfig(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	head := "[broker]\nclient_bind = \"tcp://127.0.0.1:*\"\nworker_bind = \"tcp://127.0.0.1:*\"\nevents_bind = \"\"\nhttp_bind = \"\"\ndata_dir = \"" + data + "\"\n"
	for _, tc := range []struct{ name, text, want string }{
		{"unknown key", head + "max_queu = 10\n", `zmws.toml:7: unknown key "max_queu" in [broker]`},
		{"bad duration", head + "\nheartbeat = \"2,5s\"\n", `zmws.toml:8: heartbeat: "2,5s" is not a duration`},
		{"worker without a command", head + "[[worker]]\nservice = \"STR-REV\"\nbrokers = [\"tcp://127.0.0.1:5556\"]\n", `zmws.toml:8: service STR-REV has no command`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "zmws.toml")
			os.WriteFile(path, []byte(tc.text), 0o644)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "ZMWSD_TEST_MAIN=1", "ZMWSD_TEST_ARGS=--config "+path)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("%v, want a non-zero exit; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), "zmwsd: error: "+filepath.Join(dir, tc.want)) || strings.Contains(string(out), "Usage:") {
				t.Errorf("output %q, want the error %s (and no usage)", out, tc.want)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the journal's folder was made: %v", err)
			}
		})
	}

	// --config naming a missing file is an error; ./zmws.toml is read
	// without --config.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "ZMWSD_TEST_MAIN=1", "ZMWSD_TEST_ARGS=--config "+filepath.Join(dir, "nope.toml"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "nope.toml: no such file or directory") {
		t.Errorf("missing file: %v, %s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "zmws.toml"), []byte(head+"liveness = 0\n"), 0o644)
	cmd = exec.Command(self, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ZMWSD_TEST_MAIN=1", "ZMWSD_TEST_ARGS=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--liveness") {
		t.Errorf("./zmws.toml with liveness = 0: %v, %s; want zmwsd to have read it and refused", err, out)
	}
}
