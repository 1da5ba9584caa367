package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

// brokerCLI is a few of zmwsd's flags, as zmwsd declares them.
type brokerCLI struct {
	Config    string        `env:"ZMWST_CONFIG"`
	Heartbeat time.Duration `default:"2500ms" env:"ZMWST_HEARTBEAT"`
	Liveness  int           `default:"3" env:"ZMWST_LIVENESS"`
	HTTPBind  string        `name:"http-bind" default:"127.0.0.1:5580" env:"ZMWST_HTTP_BIND"`
	HTTPCORS  []string      `name:"http-cors" env:"ZMWST_HTTP_CORS"`
	DataDir   string        `default:"zmws-data" env:"ZMWST_DATA_DIR"`
	Insecure  bool          `env:"ZMWST_INSECURE"`

	file *File
}

// BeforeResolve is the hook zmwsd has.
func (c *brokerCLI) BeforeResolve(kctx *kong.Context) error {
	f, err := LoadFlag(kctx, "config")
	if err != nil || f == nil {
		return err
	}
	c.file = f
	kctx.AddResolver(f.BrokerResolver())
	return nil
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zmws.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func parseBroker(t *testing.T, args ...string) (brokerCLI, error) {
	t.Helper()
	var cli brokerCLI
	k, err := kong.New(&cli, kong.Exit(func(int) { t.Fatalf("kong exits on %q", args) }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Parse(args)
	return cli, err
}

// TestResolver_Precedence: flag > env > file > default, each step.
func TestResolver_Precedence(t *testing.T) {
	path := writeFile(t, `[broker]
heartbeat = "1s"
http_cors = ["https://a.example", "https://b,c.example"]
data_dir = "data"
insecure = true
`)
	for _, tc := range []struct {
		name string
		env  string // ZMWST_HEARTBEAT, unset when ""
		args []string
		want time.Duration
	}{
		{"default", "", nil, 2500 * time.Millisecond},
		{"file over default", "", []string{"--config", path}, time.Second},
		{"env over file", "3s", []string{"--config", path}, 3 * time.Second},
		{"flag over env", "3s", []string{"--config", path, "--heartbeat", "4s"}, 4 * time.Second},
		{"flag over file", "", []string{"--config", path, "--heartbeat=4s"}, 4 * time.Second},
		{"flag after the file", "", []string{"--heartbeat=4s", "--config", path}, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ZMWST_CONFIG", "") // no search for ./zmws.toml
			if tc.env != "" {
				t.Setenv("ZMWST_HEARTBEAT", tc.env)
			}
			cli, err := parseBroker(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if cli.Heartbeat != tc.want {
				t.Errorf("heartbeat %v, want %v", cli.Heartbeat, tc.want)
			}
			if cli.Liveness != 3 {
				t.Errorf("liveness %d: the file does not set it", cli.Liveness)
			}
		})
	}

	// Every kind arrives as kong would parse it from the command line.
	t.Setenv("ZMWST_CONFIG", path)
	cli, err := parseBroker(t)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://a.example", "https://b,c.example"}
	if !reflect.DeepEqual(cli.HTTPCORS, want) || cli.DataDir != filepath.Join(filepath.Dir(path), "data") || !cli.Insecure ||
		cli.file == nil || cli.file.Path != path {
		t.Errorf("from the file named by the env: %+v", cli)
	}
	// An empty variable sets the flag empty: it beats the file too.
	t.Setenv("ZMWST_DATA_DIR", "")
	if cli, _ = parseBroker(t); cli.DataDir != "" {
		t.Errorf("data dir %q, want the env's empty one", cli.DataDir)
	}
}

func TestLoadFlag(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.Unsetenv("ZMWST_CONFIG")

	// No flag, no ./zmws.toml (and, on a test machine, no /etc/zmws/zmws.toml): no file.
	if _, err := os.Stat("/etc/zmws/zmws.toml"); err == nil {
		t.Skip("/etc/zmws/zmws.toml exists here")
	}
	cli, err := parseBroker(t)
	if err != nil || cli.file != nil || cli.Heartbeat != 2500*time.Millisecond {
		t.Fatalf("no file: %+v, %v", cli, err)
	}
	// ./zmws.toml is found.
	os.WriteFile("zmws.toml", []byte("[broker]\nliveness = 7\n"), 0o644)
	if cli, err = parseBroker(t); err != nil || cli.file == nil || cli.Liveness != 7 {
		t.Fatalf("./zmws.toml: %+v, %v", cli, err)
	}
	// --config '' reads none.
	if cli, err = parseBroker(t, "--config="); err != nil || cli.file != nil || cli.Liveness != 3 {
		t.Fatalf("--config '': %+v, %v", cli, err)
	}
	// A named file that is missing is an error; so is a bad one.
	if _, err = parseBroker(t, "--config", "missing.toml"); err == nil || err.Error() != "missing.toml: no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile("zmws.toml", []byte("[broker]\nliveness = 7\nheartbeat = \"soon\"\n"), 0o644)
	if _, err = parseBroker(t); err == nil || !strings.HasPrefix(err.Error(), `zmws.toml:3: heartbeat: "soon" is not a duration`) {
		t.Errorf("bad file found in the search path: %v", err)
	}
}

// workerCLI is a few of zmws-run's flags.
type workerCLI struct {
	Broker    []string      `default:"tcp://127.0.0.1:5556" env:"ZMWST_BROKER"`
	Heartbeat time.Duration `default:"2500ms" env:"ZMWST_HEARTBEAT"`
	Service   string        `env:"ZMWST_SERVICE"`
	Only      []string      `env:"ZMWST_ONLY"`
	JobsDir   string        `type:"path"`
}

func TestWorkerResolver(t *testing.T) {
	f := parse(t, `[broker]
worker_bind = "tcp://*:6000"
heartbeat = "1s"

[[worker]]
service = "A"
command = "rev"

[[worker]]
jobs_dir = "jobs.d"
only = ["X", "Y"]
brokers = ["tcp://b1:1", "tcp://b2:2"]
heartbeat = "2s"
`)
	run := func(w *Worker, args ...string) workerCLI {
		t.Helper()
		var cli workerCLI
		k, err := kong.New(&cli, kong.Resolvers(f.WorkerResolver(w)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cli
	}
	// The entry's brokers and heartbeat default to the broker's.
	cli := run(&f.Workers[0])
	if !reflect.DeepEqual(cli.Broker, []string{"tcp://127.0.0.1:6000"}) || cli.Heartbeat != time.Second || cli.Service != "A" {
		t.Errorf("worker 0: %+v", cli)
	}
	cli = run(&f.Workers[1])
	if !reflect.DeepEqual(cli.Broker, []string{"tcp://b1:1", "tcp://b2:2"}) || cli.Heartbeat != 2*time.Second ||
		!reflect.DeepEqual(cli.Only, []string{"X", "Y"}) || cli.JobsDir != "/etc/zmws/jobs.d" {
		t.Errorf("worker 1: %+v", cli)
	}
	// No entry: still the broker's endpoint and heartbeat.
	if cli = run(nil); !reflect.DeepEqual(cli.Broker, []string{"tcp://127.0.0.1:6000"}) || cli.Heartbeat != time.Second {
		t.Errorf("no entry: %+v", cli)
	}
	t.Setenv("ZMWST_BROKER", "tcp://env:1")
	if cli = run(&f.Workers[1], "--heartbeat=3s"); !reflect.DeepEqual(cli.Broker, []string{"tcp://env:1"}) || cli.Heartbeat != 3*time.Second {
		t.Errorf("env and flag: %+v", cli)
	}
}
