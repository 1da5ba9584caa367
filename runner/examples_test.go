package runner

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

const examplesDir = "../examples/jobs.d"

// TestExamples parses every template in examples/jobs.d and runs each
// through its handler (no broker), with jobs that must work and jobs that
// must be refused. A new example needs cases here.
func TestExamples(t *testing.T) {
	type run struct {
		params map[string]string
		input  string
		want   string // the output; "" with refuse set
		refuse string // the job fails with a *ParamError naming this parameter
	}
	cases := map[string][]run{
		"STR-REV": {
			{params: map[string]string{"str": "Hello, world"}, want: "dlrow ,olleH\n"},
			{input: "hello\nworld\n", want: "olleh\ndlrow\n"},
		},
		"SLEEP": {
			{params: map[string]string{"seconds": "0"}, want: ""},
			{params: map[string]string{"seconds": "0.01"}, want: ""},
			{params: map[string]string{"seconds": "1; rm -rf /"}, refuse: "seconds"},
			{params: map[string]string{"seconds": "-1"}, refuse: "seconds"},
			{params: map[string]string{"seconds": "inf"}, refuse: "seconds"},
		},
		"WORDCOUNT": {
			{params: map[string]string{"text": "one two three"}, want: "1 3 14"},
			{input: "a b\nc\n", want: "2 3 6"},
		},
		"SAY": {
			{params: map[string]string{"msg": "$(touch /tmp/x); rm -rf /"}, want: "$(touch /tmp/x); rm -rf /\n"},
			{params: map[string]string{"msg": "-n"}, refuse: "msg"},
			{params: map[string]string{}, refuse: "msg"},
		},
		"FILE-SHA256": {
			{params: map[string]string{"file": "hello.txt"},
				want: "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  hello.txt\n"},
			{params: map[string]string{"file": "../SAY.toml"}, refuse: "file"},
			{params: map[string]string{"file": "/etc/passwd"}, refuse: "file"},
			{params: map[string]string{"file": ".hidden"}, refuse: "file"},
			{params: map[string]string{"file": "-c"}, refuse: "file"},
		},
	}
	ts, err := LoadDir(examplesDir, Defaults{})
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	seen := map[string]bool{}
	for _, tm := range ts {
		seen[tm.Service()] = true
		runs, ok := cases[tm.Service()]
		if !ok {
			t.Errorf("%s: no test cases for this example", tm.Source())
			continue
		}
		t.Run(tm.Service(), func(t *testing.T) {
			if _, err := exec.LookPath(tm.argv[0].expand(nil)); err != nil {
				t.Skipf("%s: %v", tm.Source(), err)
			}
			h := newTestHandler(t, tm)
			for _, r := range runs {
				var in []string
				if r.input != "" {
					in = append(in, r.input)
				}
				res, err := h.ServeJob(context.Background(), job(r.params, in...))
				if r.refuse != "" {
					var pe *ParamError
					if !errors.As(err, &pe) || pe.Name != r.refuse {
						t.Errorf("params %v: error %v; want parameter %q refused", r.params, err, r.refuse)
					}
					continue
				}
				got := string(res)
				if tm.Service() == "WORDCOUNT" {
					got = strings.Join(strings.Fields(got), " ")
				}
				if err != nil || got != r.want {
					t.Errorf("params %v input %q: %q, %v; want %q", r.params, r.input, got, err, r.want)
				}
			}
		})
	}
	for name := range cases {
		if !seen[name] {
			t.Errorf("cases for %s, which is not in %s", name, examplesDir)
		}
	}
}
