package runner

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSplitLine(t *testing.T) {
	good := []struct {
		line string
		want []string
	}{
		{"rev", []string{"rev"}},
		{"sleep {{seconds:1}}", []string{"sleep", "{{seconds:1}}"}},
		{`echo 'a; b' "c | d" e\;f`, []string{"echo", "a; b", "c | d", "e;f"}},
		{`sh -c 'sort | uniq -c > /dev/stdout'`, []string{"sh", "-c", "sort | uniq -c > /dev/stdout"}},
		{"echo $HOME ${USER}", []string{"echo", "$HOME", "${USER}"}},   // no expansion
		{"echo `date` $(date)", []string{"echo", "`date`", "$(date)"}}, // no substitution
		{"echo # not a comment", []string{"echo", "#", "not", "a", "comment"}},
		{"echo ''", []string{"echo", ""}},
		{"  wc\t-l\n", []string{"wc", "-l"}},
	}
	for _, tc := range good {
		got, err := splitLine(tc.line)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitLine(%q) = %q, %v; want %q", tc.line, got, err, tc.want)
		}
	}
	bad := []struct{ line, want string }{
		{"rev; rm -rf /", `";" at column 4`},
		{"cat | rev", `"|" at column 5`},
		{"sleep 1 && echo", `"&" at column 9`},
		{"sleep 1 &", `"&" at column 9`},
		{"echo hi > /tmp/x", `">" at column 9`},
		{"echo hi 2>/dev/null", `">" at column 10`},
		{"rev < /etc/passwd", `"<" at column 5`},
		{"héllo wörld; x", `";" at column 12`}, // columns count characters
		{"echo 'unbalanced", "unbalanced quotes"},
		{"echo (x)", "parenthesis"},
	}
	for _, tc := range bad {
		_, err := splitLine(tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("splitLine(%q) error = %v; want it to contain %q", tc.line, err, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	s, err := Decode([]byte(`
service = "X"
command = ["printf", "%s\n", "{{a}}"]
stdin = "{{a}}"
timeout = "1m30s"
grace = "2s"
concurrency = 3
max_output = 1024
workdir = "/tmp"
inherit_env = ["PATH"]
env = { A = "1" }
prestart = true
[params.a]
required = false
pattern = "[a-z]*"
allow_dash = true
`))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	want := Spec{
		Service: "X", Command: Command{Args: []string{"printf", `%s` + "\n", "{{a}}"}}, Stdin: ptr("{{a}}"),
		Timeout: Duration(90 * time.Second), Grace: Duration(2 * time.Second), Concurrency: 3, MaxOutput: 1024,
		Workdir: "/tmp", InheritEnv: []string{"PATH"}, Env: map[string]string{"A": "1"}, Prestart: true,
		Params: map[string]Param{"a": {Required: &no, Pattern: "[a-z]*", AllowDash: true}},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Decode:\n got %+v\nwant %+v", s, want)
	}

	bad := []struct{ toml, want string }{
		{`command = "rev`, "line 1"},
		{"command = \"rev\"\ntimout = \"1s\"", "unknown key timout"},
		{"command = \"rev\"\n[params.a]\nrequire = true", "unknown key params.a.require"},
		{`command = 3`, "want a string or an array"},
		{`command = ["a", 1]`, "word 1 is a int64"},
		{"command = \"rev\"\ntimeout = \"soon\"", "invalid duration"},
		{"command = \"rev\"\ntimeout = \"-1s\"", "negative"},
		{"command = \"rev\"\nconcurrency = \"2\"", "concurrency"},
	}
	for _, tc := range bad {
		_, err := Decode([]byte(tc.toml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q) error = %v; want it to contain %q", tc.toml, err, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestNew_Errors(t *testing.T) {
	yes := true
	cases := []struct {
		name string
		spec Spec
		want string
	}{
		{"no service", Spec{Command: Command{Line: "rev"}}, "service"},
		{"reserved service", Spec{Service: "SYNC-X", Command: Command{Line: "rev"}}, "service"},
		{"empty command", Spec{Service: "X"}, "no program"},
		{"empty args", Spec{Service: "X", Command: Command{Args: []string{}}}, "no program"},
		{"shell operator", Spec{Service: "X", Command: Command{Line: "echo {{msg}}; rm -rf /"}}, `";"`},
		{"program placeholder", Spec{Service: "X", Command: Command{Line: "{{prog}} x"}}, "cannot come from a parameter"},
		{"two defaults", Spec{Service: "X", Command: Command{Line: "echo {{a:1}} {{a:2}}"}}, "two defaults"},
		{"table default differs", Spec{Service: "X", Command: Command{Line: "echo {{a:1}}"},
			Params: map[string]Param{"a": {Default: ptr("2")}}}, "differs"},
		{"required with default", Spec{Service: "X", Command: Command{Line: "echo {{a:1}}"},
			Params: map[string]Param{"a": {Required: &yes}}}, "required, yet has a default"},
		{"bad pattern", Spec{Service: "X", Command: Command{Line: "echo {{a}}"},
			Params: map[string]Param{"a": {Pattern: "[a-"}}}, "params.a.pattern"},
		{"default fails pattern", Spec{Service: "X", Command: Command{Line: "sleep {{s:soon}}"},
			Params: map[string]Param{"s": {Pattern: "[0-9]+"}}}, `default "soon" does not match`},
		{"bad param name", Spec{Service: "X", Command: Command{Line: "rev"},
			Params: map[string]Param{"a b": {}}}, "params.a b"},
		{"reserved env", Spec{Service: "X", Command: Command{Line: "rev"}, Env: map[string]string{"ZMWS_JOB_ID": "x"}}, "reserved"},
		{"bad env name", Spec{Service: "X", Command: Command{Line: "rev"}, Env: map[string]string{"A=B": "x"}}, "bad variable name"},
		{"bad inherit", Spec{Service: "X", Command: Command{Line: "rev"}, InheritEnv: []string{"A*B"}}, "inherit_env"},
		{"negative concurrency", Spec{Service: "X", Command: Command{Line: "rev"}, Concurrency: -1}, "concurrency"},
		{"negative max output", Spec{Service: "X", Command: Command{Line: "rev"}, MaxOutput: -1}, "max_output"},
		{"too many retries", Spec{Service: "X", Command: Command{Line: "rev"}, Retries: 101}, "retries"},
		{"missing workdir", Spec{Service: "X", Command: Command{Line: "rev"}, Workdir: "/nonexistent/zmws"}, "workdir"},
		{"prestart with an argument placeholder", Spec{Service: "X", Command: Command{Line: "echo --{{msg:hi}}"}, Prestart: true},
			`prestart: word 2 of the command, "--{{msg}}", holds a placeholder`},
		{"prestart with an env placeholder", Spec{Service: "X", Command: Command{Line: "rev"}, Env: map[string]string{"A": "{{a}}"}, Prestart: true},
			"prestart: env A holds a placeholder"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.spec, Defaults{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error = %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

// Prestart allows placeholders in stdin only, and --env's placeholders
// count as the template's.
func TestNew_Prestart(t *testing.T) {
	tm, err := New(Spec{Service: "X", Command: Command{Line: "rev -"}, Stdin: ptr("{{str}}\n"), Prestart: true}, Defaults{})
	if err != nil || !tm.Prestart() || !reflect.DeepEqual(tm.fixedArgv(), []string{"rev", "-"}) {
		t.Fatalf("stdin placeholder: %v", err)
	}
	_, err = New(Spec{Service: "X", Command: Command{Line: "rev"}, Prestart: true}, Defaults{Env: map[string]string{"B": "{{b}}"}})
	if err == nil || !strings.Contains(err.Error(), "prestart: env B") {
		t.Errorf("--env placeholder: %v", err)
	}
	path := filepath.Join(t.TempDir(), "SAY.toml")
	os.WriteFile(path, []byte("command = \"echo {{msg}}\"\nprestart = true\n"), 0o644)
	if _, err := LoadFile(path, Defaults{}); err == nil || !strings.Contains(err.Error(), path+": prestart:") {
		t.Errorf("LoadFile: %v; want the file and the key named", err)
	}
}

func TestNew_Defaults(t *testing.T) {
	d := Defaults{Timeout: time.Minute, Concurrency: 4, MaxOutput: 100, InheritEnv: []string{"PATH"},
		Env: map[string]string{"A": "d", "B": "d"}, Workdir: os.TempDir()}
	tm, err := New(Spec{Service: "X", Command: Command{Line: "rev"}, Env: map[string]string{"B": "t"}, Concurrency: 2, Retries: 3}, d)
	if err != nil {
		t.Fatal(err)
	}
	if tm.Retries() != 3 {
		t.Errorf("retries = %d, want 3", tm.Retries())
	}
	if tm.timeout != time.Minute || tm.concurrency != 2 || tm.maxOutput != 100 || tm.grace != DefaultGrace ||
		tm.workdir != os.TempDir() || !reflect.DeepEqual(tm.inherit, []string{"PATH"}) {
		t.Errorf("template = %+v", tm)
	}
	env := map[string]string{}
	for _, e := range tm.env {
		env[e.name] = e.value.expand(nil)
	}
	if !reflect.DeepEqual(env, map[string]string{"A": "d", "B": "t"}) {
		t.Errorf("env = %v; want the template's B over the default", env)
	}

	tm, err = New(Spec{Service: "X", Command: Command{Line: "rev"}}, Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if tm.timeout != 0 || tm.concurrency != 1 || tm.maxOutput != DefaultMaxOutput || !reflect.DeepEqual(tm.inherit, DefaultInheritEnv) {
		t.Errorf("zero defaults: template = %+v", tm)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "data"), 0o755)
	path := filepath.Join(dir, "CHECK.toml")
	os.WriteFile(path, []byte("command = \"sha256sum -- {{file}}\"\nworkdir = \"data\"\n"), 0o644)
	tm, err := LoadFile(path, Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if tm.Service() != "CHECK" || tm.workdir != filepath.Join(dir, "data") || tm.Source() != path {
		t.Errorf("service %q, workdir %q, source %q", tm.Service(), tm.workdir, tm.Source())
	}
	if got := tm.Params(); !reflect.DeepEqual(got, []string{"file"}) {
		t.Errorf("Params() = %v", got)
	}
}

func TestLoadDir_Errors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) { os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644) }
	write("A.toml", `command = "rev"`)
	write("B.toml", "service = \"A\"\ncommand = \"rev\"")
	write("C.toml", `command = "rev > out"`)
	write("D.toml", `command = "rev`)
	write("notes.txt", "ignored")
	write(".hidden.toml", "ignored = true")
	_, err := LoadDir(dir, Defaults{})
	if err == nil {
		t.Fatal("LoadDir: no error")
	}
	for _, want := range []string{"B.toml: service A is already defined by", "C.toml: command: \">\"", "D.toml: line 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	if _, err := LoadDir(t.TempDir(), Defaults{}); err == nil || !strings.Contains(err.Error(), "no .toml templates") {
		t.Errorf("empty dir: error = %v", err)
	}
}

func mustNew(t *testing.T, s Spec) *Template {
	t.Helper()
	if s.Service == "" {
		s.Service = "TEST"
	}
	tm, err := New(s, Defaults{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tm
}

func TestResolve(t *testing.T) {
	no := false
	tm := mustNew(t, Spec{Command: Command{Line: "cmd {{req}} {{opt:x}} {{num:1}} {{maybe}}"},
		Params: map[string]Param{
			"num":    {Pattern: "[0-9]+"},
			"maybe":  {Required: &no},
			"strict": {Required: ptr(true), Pattern: "a+"},
		}})
	cases := []struct {
		name  string
		given map[string]string
		want  map[string]string
		err   []string
	}{
		{"defaults", map[string]string{"req": "r", "strict": "aa"},
			map[string]string{"req": "r", "opt": "x", "num": "1", "maybe": "", "strict": "aa"}, nil},
		{"given and extra", map[string]string{"req": "r", "strict": "a", "num": "42", "opt": "", "other": "o"},
			map[string]string{"req": "r", "opt": "", "num": "42", "maybe": "", "strict": "a", "other": "o"}, nil},
		{"missing", map[string]string{}, nil, []string{`parameter "req": missing`, `parameter "strict": missing`}},
		{"empty required", map[string]string{"req": "", "strict": "a"}, nil, []string{`parameter "req": empty`}},
		{"pattern", map[string]string{"req": "r", "strict": "a", "num": "1; rm -rf /"}, nil,
			[]string{`parameter "num": value "1; rm -rf /" does not match ^(?:[0-9]+)$`}},
		{"whole value", map[string]string{"req": "r", "strict": "a", "num": "12x"}, nil, []string{`"num"`}},
		{"NUL", map[string]string{"req": "r\x00", "strict": "a"}, nil, []string{`parameter "req": holds a NUL byte`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tm.resolve(tc.given)
			if tc.err == nil {
				if err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Errorf("resolve = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("resolve error = %v; want a *ParamError", err)
			}
			for _, w := range tc.err {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestArgs_Safety(t *testing.T) {
	tm := mustNew(t, Spec{Command: Command{Line: `echo {{msg}} "x {{msg}}" --name={{msg}} {{a}}{{b}} {{flag:-n}} {{opt}}`},
		Params: map[string]Param{"a": {Default: ptr("")}, "b": {Default: ptr("")}, "opt": {AllowDash: true, Required: ptr(false)}}})
	hostile := []string{"two words", "x; rm -rf /", "$(touch /tmp/x)", "`id`", "'\"", "a\nb", "*", "{{msg}}", ""}
	for _, v := range hostile {
		given := map[string]string{"msg": v, "opt": "-v"}
		vals, err := tm.resolve(given)
		if v == "" {
			if err == nil {
				t.Errorf("empty msg accepted")
			}
			continue
		}
		if err != nil {
			t.Fatalf("resolve(%q): %v", v, err)
		}
		got, err := tm.args(vals, given)
		want := []string{"echo", v, "x " + v, "--name=" + v, "", "-n", "-v"}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("msg %q: args = %q, %v; want %q", v, got, err, want)
		}
	}

	refused := []struct {
		given map[string]string
		name  string
	}{
		{map[string]string{"msg": "-rf"}, "msg"},
		{map[string]string{"msg": "--help"}, "msg"},
		{map[string]string{"msg": "ok", "b": "-x"}, "b"},       // {{a}} is empty, so {{b}} starts the word
		{map[string]string{"msg": "ok", "flag": "-e"}, "flag"}, // a default may start with -, a job's value may not
	}
	for _, tc := range refused {
		vals, err := tm.resolve(tc.given)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tm.args(vals, tc.given)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Name != tc.name || !strings.Contains(err.Error(), "allow_dash") {
			t.Errorf("given %v: error = %v; want a refusal of %q", tc.given, err, tc.name)
		}
	}
	// Not at the start of the word: not an option.
	given := map[string]string{"msg": "ok", "a": "x", "b": "-y"}
	vals, _ := tm.resolve(given)
	if got, err := tm.args(vals, given); err != nil || got[4] != "x-y" {
		t.Errorf("args = %q, %v", got, err)
	}
}

func TestStdinFor(t *testing.T) {
	inline := mustNew(t, Spec{Command: Command{Args: []string{"rev"}}})
	tmpl := mustNew(t, Spec{Command: Command{Line: "rev"}, Stdin: ptr("{{str}}!\n")})
	empty := mustNew(t, Spec{Command: Command{Line: "rev"}, Stdin: ptr("")})
	cases := []struct {
		name  string
		t     *Template
		input [][]byte
		given map[string]string
		want  string
	}{
		{"raw input wins", inline, [][]byte{[]byte("a"), []byte("b")}, map[string]string{"str": "x"}, "ab"},
		{"one param", inline, nil, map[string]string{"str": "Hello, world"}, "Hello, world\n"},
		{"params in name order", inline, [][]byte{{}}, map[string]string{"b": "2", "a": "1\n", "c": ""}, "1\n2\n\n"},
		{"nothing", inline, nil, map[string]string{}, ""},
		{"template text", tmpl, [][]byte{[]byte("ignored")}, map[string]string{"str": "s"}, "s!\n"},
		{"template empty", empty, [][]byte{[]byte("ignored")}, map[string]string{"str": "s"}, ""},
	}
	for _, tc := range cases {
		vals, err := tc.t.resolve(tc.given)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, f := range tc.t.stdinFor(tc.input, vals, tc.given) {
			got = append(got, f...)
		}
		if string(got) != tc.want {
			t.Errorf("%s: stdin = %q; want %q", tc.name, got, tc.want)
		}
	}
}

func TestEnviron(t *testing.T) {
	base := []string{"PATH=/bin", "HOME=/h", "LC_ALL=C", "LCX=no", "SECRET=s", "A=parent", "BROKEN"}
	tm := mustNew(t, Spec{Command: Command{Line: "env"}, Env: map[string]string{"A": "tmpl", "GREETING": "hi {{name}}"}})
	vals := map[string]string{"name": "Ann", "file-name": "f.txt", "big": strings.Repeat("x", maxEnvValue+1)}
	env, skipped := tm.environ(base, &jobEnv{id: "J1", service: "TEST", attempt: 2}, vals)
	want := []string{"A=tmpl", "GREETING=hi Ann", "HOME=/h", "LC_ALL=C", "PATH=/bin",
		"ZMWS_ATTEMPT=2", "ZMWS_JOB_ID=J1", "ZMWS_PARAM_FILE_NAME=f.txt", "ZMWS_PARAM_NAME=Ann", "ZMWS_SERVICE=TEST"}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("environ:\n got %q\nwant %q", env, want)
	}
	if !reflect.DeepEqual(skipped, []string{"big"}) {
		t.Errorf("skipped = %q", skipped)
	}

	all := mustNew(t, Spec{Command: Command{Line: "env"}, InheritEnv: []string{"*"}})
	env, _ = all.environ(base, &jobEnv{id: "J", service: "S", attempt: 1}, nil)
	if !strings.Contains(strings.Join(env, " "), "SECRET=s") {
		t.Errorf("inherit_env *: %q lacks SECRET", env)
	}
	none := mustNew(t, Spec{Command: Command{Line: "env"}, InheritEnv: []string{}})
	env, _ = none.environ(base, &jobEnv{id: "J", service: "S", attempt: 1}, nil)
	if want := []string{"ZMWS_ATTEMPT=1", "ZMWS_JOB_ID=J", "ZMWS_SERVICE=S"}; !reflect.DeepEqual(env, want) {
		t.Errorf("inherit_env []: %q; want %q", env, want)
	}
}

func TestParamEnvName(t *testing.T) {
	for in, want := range map[string]string{"str": "ZMWS_PARAM_STR", "file-name": "ZMWS_PARAM_FILE_NAME",
		"a.b c": "ZMWS_PARAM_A_B_C", "Ünï": "ZMWS_PARAM__N_", "x9": "ZMWS_PARAM_X9"} {
		if got := ParamEnvName(in); got != want {
			t.Errorf("ParamEnvName(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestCommandString(t *testing.T) {
	c := Command{Args: []string{"sh", "-c", "echo 'hi' | rev", "{{x}}"}}
	if got, want := c.String(), `sh -c 'echo '\''hi'\'' | rev' {{x}}`; got != want {
		t.Errorf("String() = %s; want %s", got, want)
	}
}
