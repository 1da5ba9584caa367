package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, text string) *File {
	t.Helper()
	f, err := Parse("/etc/zmws/zmws.toml", []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

func TestParse_Values(t *testing.T) {
	f := parse(t, `[broker]
client_bind = "tcp://0.0.0.0:5555"
worker_bind = "tcp://*:6000"
heartbeat = "1s"
liveness = 5
insecure = true
http_cors = ["https://a.example", "https://b.example"]
http_host = "zmws.example"
data_dir = "data"          # relative: from the file's folder
curve_key = "/keys/broker.key"
log_format = "console"

[[worker]]
service = "STR-REV"
command = "rev"
concurrency = 4

[[worker]]
name = "all"
jobs_dir = "jobs.d"
only = ["SLEEP", "SAY"]
brokers = ["tcp://b1:5556", "tcp://b2:5556"]
`)
	b := f.Broker
	want := map[string]any{
		"client_bind": "tcp://0.0.0.0:5555",
		"worker_bind": "tcp://*:6000",
		"heartbeat":   time.Second,
		"liveness":    int64(5),
		"insecure":    true,
		"http_cors":   []string{"https://a.example", "https://b.example"},
		"http_host":   []string{"zmws.example"},
		"data_dir":    "/etc/zmws/data",
		"curve_key":   "/keys/broker.key",
		"log_format":  "console",
	}
	if !reflect.DeepEqual(b.Values, want) {
		t.Errorf("broker values\n got %#v\nwant %#v", b.Values, want)
	}
	if b.Line != 1 || b.Lines["client_bind"] != 2 || b.Lines["log_format"] != 11 {
		t.Errorf("broker lines: table %d, %v", b.Line, b.Lines)
	}
	if f.ClientBind() != "tcp://0.0.0.0:5555" || f.WorkerBind() != "tcp://*:6000" || f.EventsBind() != DefaultEventsBind ||
		f.HTTPBind() != DefaultHTTPBind || f.DataDir() != "/etc/zmws/data" || f.Dir != "/etc/zmws" {
		t.Errorf("accessors: %q %q %q %q %q %q", f.ClientBind(), f.WorkerBind(), f.EventsBind(), f.HTTPBind(), f.DataDir(), f.Dir)
	}
	if got := f.Names(); !reflect.DeepEqual(got, []string{"STR-REV", "all"}) {
		t.Errorf("names %q", got)
	}
	w := f.Workers[0]
	if line, args := w.Command(); line != "rev" || args != nil || w.Line != 13 || w.Lines["command"] != 15 {
		t.Errorf("worker 0: command %q %q, lines %d %v", line, args, w.Line, w.Lines)
	}
	if got := w.Brokers(); !reflect.DeepEqual(got, []string{"tcp://127.0.0.1:6000"}) {
		t.Errorf("worker 0 brokers %q, want the broker's worker endpoint", got)
	}
	w = f.Workers[1]
	if w.Values["jobs_dir"] != "/etc/zmws/jobs.d" || !reflect.DeepEqual(w.Values["only"], []string{"SLEEP", "SAY"}) {
		t.Errorf("worker 1 values %v", w.Values)
	}
	if got := w.Brokers(); !reflect.DeepEqual(got, []string{"tcp://b1:5556", "tcp://b2:5556"}) {
		t.Errorf("worker 1 brokers %q", got)
	}
}

func TestParse_Defaults(t *testing.T) {
	f := parse(t, "")
	if f.ClientBind() != DefaultClientBind || f.WorkerBind() != DefaultWorkerBind || f.EventsBind() != DefaultEventsBind ||
		f.HTTPBind() != DefaultHTTPBind || f.DataDir() != DefaultDataDir || f.Broker.Line != 0 || len(f.Workers) != 0 {
		t.Errorf("empty file: %+v", f)
	}
	if ep, err := f.WorkerEndpoint(); ep != DefaultWorkerBind || err != nil {
		t.Errorf("WorkerEndpoint = %q, %v", ep, err)
	}
	f = parse(t, "[broker]\nevents_bind = \"\"\nhttp_bind = \"\"\ndata_dir = \"\"\n")
	if f.EventsBind() != "" || f.HTTPBind() != "" || f.DataDir() != "" {
		t.Errorf("empty values are kept: %q %q %q", f.EventsBind(), f.HTTPBind(), f.DataDir())
	}
	parse(t, "[[worker]]\njobs_dir = \"j\"\nuser = \"nobody\"\nidle_command = \"true\"\nidle_after = \"1m\"\n") // user for the idle command
	f = parse(t, "[[worker]]\nservice = \"A\"\ncommand = [\"printf\", \"%s\\n\", \"{{a}}\"]\n")
	if line, args := f.Workers[0].Command(); line != "" || !reflect.DeepEqual(args, []string{"printf", "%s\n", "{{a}}"}) {
		t.Errorf("command words %q %q", line, args)
	}
}

// TestParse_Errors: each problem names the file and its line.
func TestParse_Errors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[broker]\nclient_bind = \"x\"\nheartbeet = \"1s\"\n", `zmws.toml:3: unknown key "heartbeet" in [broker]`},
		{"[broker]\n\n\nheartbeat = \"2.5\"\n", `zmws.toml:4: heartbeat: "2.5" is not a duration: write it like "2500ms", "30s" or "1h30m"`},
		{"[broker]\nheartbeat = 2500\n", `zmws.toml:2: heartbeat: want a duration in a string, like "30s", not an integer`},
		{"[broker]\nliveness = \"3\"\n", `zmws.toml:2: liveness: want an integer, not a string`},
		{"[broker]\nliveness = 3.5\n", `zmws.toml:2: liveness: want an integer, not a float`},
		{"[broker]\ninsecure = \"yes\"\n", `zmws.toml:2: insecure: want true or false, not a string`},
		{"[broker]\nlog_format = \"xml\"\n", `zmws.toml:2: log_format: "xml": want json or console`},
		{"[broker]\nhttp_cors = [\"a\", 2]\n", `zmws.toml:2: http_cors: item 2 is an integer: want a string`},
		{"[broker]\nhttp.bind = \"x\"\n", `zmws.toml:2: unknown key "http" in [broker]`},
		{"[broker]\nheartbeat.x = \"1s\"\n", `zmws.toml:2: heartbeat: want a duration in a string, like "30s", not a table`},
		{"[broker]\nheartbeat = {x = 1}\n", `zmws.toml:2: heartbeat: want a duration in a string, like "30s", not a table`},
		{"[brokr]\nheartbeat = \"1s\"\n", `zmws.toml:1: unknown table [brokr]: the tables are [broker] and [[worker]]`},
		{"[[broker]]\nheartbeat = \"1s\"\n", `zmws.toml:1: broker must be one table, [broker]`},
		{"[worker]\nservice = \"A\"\n", `zmws.toml:1: worker must be a list of tables: write each entry as [[worker]]`},
		{"heartbeat = \"1s\"\n", `zmws.toml:1: unknown key "heartbeat" outside any table: keys belong in [broker] or a [[worker]]`},
		{"[broker]\nheartbeat = \"1s\n", `zmws.toml:2: `}, // TOML syntax
		{"[broker]\nliveness = 1\nliveness = 2\n", `zmws.toml:3: `},
		{"[[worker]]\nservice = \"STR-REV\"\nconcurrency = 2\n", `zmws.toml:2: service STR-REV has no command: add command = "..." to its [[worker]]`},
		{"[[worker]]\nconcurrency = 2\ncommand = \"rev\"\n", `zmws.toml:3: command has no service: add service = "NAME" to its [[worker]]`},
		{"[[worker]]\njobs_dir = \"jobs.d\"\ncommand = \"rev\"\n", `zmws.toml:3: command is for a service, not a jobs_dir`},
		{"[[worker]]\nservice = \"A\"\ncommand = \"rev\"\njobs_dir = \"jobs.d\"\n", `zmws.toml:4: jobs_dir and service exclude each other`},
		{"\n[[worker]]\nconcurrency = 2\n", `zmws.toml:2: this [[worker]] serves nothing: give it service and command, or jobs_dir`},
		{"[[worker]]\nservice = \"\"\ncommand = \"rev\"\n", `zmws.toml:2: service: empty`},
		{"[[worker]]\nservice = \"A\"\ncommand = \"  \"\n", `zmws.toml:3: command: empty`},
		{"[[worker]]\nservice = \"A\"\ncommand = []\n", `zmws.toml:3: command: no program`},
		{"[[worker]]\nservice = \"A\"\ncommand = \"rev\"\nonly = [\"A\"]\n", `zmws.toml:4: only needs jobs_dir`},
		{"[[worker]]\njobs_dir = \"j\"\nprestart = true\n", `zmws.toml:3: prestart is for a service`},
		{"[[worker]]\njobs_dir = \"j\"\nuser = \"nobody\"\n", `zmws.toml:3: user is for a service or the idle_command`},
		{"[[worker]]\nservice = \"A\"\ncommand = \"rev\"\nbroker = \"tcp://b:1\"\n", `zmws.toml:4: unknown key "broker" in [[worker]] (did you mean brokers?)`},
		{"[[worker]]\nservice = \"A\"\ncommand = \"rev\"\nbrokers = []\n", `zmws.toml:4: brokers: empty`},
		{"[[worker]]\nname = \"a b\"\nservice = \"A\"\ncommand = \"rev\"\n", `zmws.toml:2: name "a b": use letters, digits and . _ : -`},
		{"[[worker]]\nservice = \"A/B\"\ncommand = \"rev\"\n", `zmws.toml:1: cannot name this [[worker]] "A/B" after its service: give it a name = "..."`},
		{"[[worker]]\nname = \"a\"\nservice = \"A\"\ncommand = \"rev\"\n\n[[worker]]\nname = \"a\"\njobs_dir = \"j\"\n",
			`zmws.toml:7: name "a" is already taken by the [[worker]] on line 1`},
		{"[[worker]]\nservice = \"A\"\ncommand = \"rev\"\n[[worker]]\nservice = \"A\"\ncommand = \"cat\"\n",
			`zmws.toml:4: this [[worker]] is named "A" after its service, like the [[worker]] on line 1: give one of them a name = "..."`},
		{"[[worker]]\njobs_dir = \"/a/jobs.d\"\n[[worker]]\njobs_dir = \"/b/jobs.d\"\n",
			`zmws.toml:3: this [[worker]] is named "jobs.d" after its jobs_dir, like the [[worker]] on line 1`},
		{"[broker]\nworker_bind = \"tcp://127.0.0.1:*\"\n[[worker]]\nservice = \"A\"\ncommand = \"rev\"\n",
			`zmws.toml:3: this [[worker]] has no brokers, and [broker] worker_bind "tcp://127.0.0.1:*" has no fixed port: give it brokers = ["tcp://HOST:PORT"]`},
	} {
		_, err := Parse("zmws.toml", []byte(tc.text))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Parse(%q)\n got %v\nwant %s...", tc.text, err, tc.want)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Path != "zmws.toml" || e.Line == 0 {
			t.Errorf("Parse(%q): %#v is not an *Error with a line", tc.text, err)
		}
	}
}

// TestParse_EveryProblem: one run reports them all, in line order.
func TestParse_EveryProblem(t *testing.T) {
	_, err := Parse("z.toml", []byte(`[[worker]]
service = "A"

[broker]
liveness = "x"
colour = "blue"
`))
	want := `z.toml:2: service A has no command: add command = "..." to its [[worker]]
z.toml:5: liveness: want an integer, not a string
z.toml:6: unknown key "colour" in [broker]`
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

// TestKeyLines: the scan finds each key's line past what looks like keys
// but is not.
func TestKeyLines(t *testing.T) {
	f := parse(t, `[broker]   # the broker
"client_bind" = "tcp://127.0.0.1:5555"
http_cors = [
  "a = b",
  "[c]",
]
http_host = '''
liveness = 3
'''
liveness = 3

[[worker]]
service = "A"
command = """
sh -c 'x'
service = "B"
"""
env = ["X=1"]
[[worker]]
  name = "b"
  jobs_dir = "j"   # indented
`)
	for _, tc := range []struct {
		s    Section
		key  string
		line int
	}{
		{f.Broker, "client_bind", 2}, {f.Broker, "http_cors", 3}, {f.Broker, "http_host", 7}, {f.Broker, "liveness", 10},
		{f.Workers[0].Section, "service", 13}, {f.Workers[0].Section, "command", 14}, {f.Workers[0].Section, "env", 18},
		{f.Workers[1].Section, "name", 20}, {f.Workers[1].Section, "jobs_dir", 21},
	} {
		if got := tc.s.Lines[tc.key]; got != tc.line {
			t.Errorf("%s: line %d, want %d", tc.key, got, tc.line)
		}
	}
	if f.Workers[0].Line != 12 || f.Workers[1].Line != 19 {
		t.Errorf("[[worker]] lines %d, %d", f.Workers[0].Line, f.Workers[1].Line)
	}
}

func TestWorkerEndpoint(t *testing.T) {
	for _, tc := range []struct{ bind, want, err string }{
		{"tcp://127.0.0.1:5556", "tcp://127.0.0.1:5556", ""},
		{"tcp://*:5556", "tcp://127.0.0.1:5556", ""},
		{"tcp://0.0.0.0:5556", "tcp://127.0.0.1:5556", ""},
		{"tcp://[::]:5556", "tcp://[::1]:5556", ""},
		{"tcp://10.0.0.5:5556", "tcp://10.0.0.5:5556", ""},
		{"ipc:///run/zmws/workers", "ipc:///run/zmws/workers", ""},
		{"tcp://127.0.0.1:*", "", "has no fixed port"},
		{"tcp://127.0.0.1:0", "", "has no fixed port"},
		{"tcp://127.0.0.1:!", "", "has no fixed port"},
		{"tcp://host", "", "has no port"},
		{"ipc://*", "", "has no fixed path"},
		{"inproc://w", "", "only zmwsd itself reaches"},
		{"", "", "not an endpoint"},
	} {
		f := &File{Broker: Section{Values: map[string]any{"worker_bind": tc.bind}}}
		got, err := f.WorkerEndpoint()
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("WorkerEndpoint(%q) = %q, %v; want %q, %q", tc.bind, got, err, tc.want, tc.err)
		}
	}
}

func TestFile_Worker(t *testing.T) {
	none := parse(t, "[broker]\n")
	one := parse(t, "[[worker]]\nservice = \"A\"\ncommand = \"rev\"\n")
	two := parse(t, "[[worker]]\nservice = \"A\"\ncommand = \"rev\"\n[[worker]]\nname = \"b\"\njobs_dir = \"j\"\n")
	for _, tc := range []struct {
		f          *File
		name, want string
		err        string
	}{
		{none, "", "", ""},
		{one, "", "A", ""},
		{one, "A", "A", ""},
		{two, "b", "b", ""},
		{two, "", "", `/etc/zmws/zmws.toml: 2 [[worker]] entries (A, b): name one`},
		{two, "c", "", `/etc/zmws/zmws.toml: no [[worker]] named "c"; the names are A, b`},
		{none, "c", "", `/etc/zmws/zmws.toml: no [[worker]] named "c": the file has no [[worker]] entries`},
	} {
		w, err := tc.f.Worker(tc.name)
		got := ""
		if w != nil {
			got = w.Name
		}
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && err.Error() != tc.err {
			t.Errorf("Worker(%q) = %q, %v; want %q, %q", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	if p, err := find([]string{a, b}); p != "" || err != nil {
		t.Errorf("none: %q, %v", p, err)
	}
	os.WriteFile(b, nil, 0o644)
	if p, err := find([]string{a, b}); p != b || err != nil {
		t.Errorf("second: %q, %v", p, err)
	}
	os.WriteFile(a, nil, 0o644)
	if p, err := find([]string{a, b}); p != a || err != nil {
		t.Errorf("first: %q, %v", p, err)
	}
	os.Remove(a)
	os.Mkdir(a, 0o755)
	if _, err := find([]string{a, b}); err == nil || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("a folder: %v", err)
	}

	// Find looks in the working folder first.
	t.Chdir(dir)
	os.WriteFile("zmws.toml", nil, 0o644)
	if p, err := Find(); p != "zmws.toml" || err != nil {
		t.Errorf("Find = %q, %v", p, err)
	}
}

func TestLoad_Missing(t *testing.T) {
	_, err := Load("/nonexistent/zmws.toml")
	if err == nil || err.Error() != "/nonexistent/zmws.toml: no such file or directory" {
		t.Errorf("Load: %v", err)
	}
}
