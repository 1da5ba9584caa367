package main

import (
	"context"
	"testing"

	"github.com/zmws/zmws/worker"
)

func TestRev(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"Hello, world", "dlrow ,olleH"},
		{"Hello, world\n", "dlrow ,olleH\n"},
		{"ab\ncd\n", "ba\ndc\n"},
		{"ab\n\ncd", "ba\n\ndc"},
		{"\n", "\n"},
		{"héllo wörld", "dlröw olléh"},
		{"日本語🙂", "🙂語本日"},
		{"a\xffb", "b\xffa"},       // invalid UTF-8 kept
		{"x\xe6\x97", "\x97\xe6x"}, // truncated rune: bytes kept
	} {
		if got := string(rev([]byte(tc.in))); got != tc.want {
			t.Errorf("rev(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestServe(t *testing.T) {
	for _, tc := range []struct {
		name string
		job  worker.Job
		want string
	}{
		{"param", worker.Job{Params: map[string]string{"str": "abc"}, Input: [][]byte{[]byte("ignored")}}, "cba"},
		{"empty param", worker.Job{Params: map[string]string{"str": ""}, Input: [][]byte{[]byte("ignored")}}, ""},
		{"input", worker.Job{Params: map[string]string{}, Input: [][]byte{[]byte("ab"), []byte("c\n")}}, "cba\n"},
		{"nothing", worker.Job{}, ""},
	} {
		got, err := serve(context.Background(), &tc.job)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: serve = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}
