package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/zmws/zmws/protocol"
)

// TestCLI_Paging: services and jobs list every page by default; --limit
// shows the first N and says, on stderr, how to go on with --after.
func TestCLI_Paging(t *testing.T) {
	r := newRig(t)
	names := func(out string) []string {
		t.Helper()
		var list []protocol.ServiceInfo
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		var n []string
		for _, s := range list {
			n = append(n, s.Name)
		}
		return n
	}
	out, errOut, err := r.zmws(t, "", "services", "--limit", "1", "-o", "json")
	if err != nil || strings.Join(names(out), ",") != "FAIL" || !strings.Contains(errOut, "--after FAIL") {
		t.Fatalf("services --limit 1: %s %q %v", out, errOut, err)
	}
	out, errOut, err = r.zmws(t, "", "services", "list", "--after", "FAIL", "-o", "json")
	if err != nil || strings.Join(names(out), ",") != "STR-REV" || errOut != "" {
		t.Fatalf("services --after FAIL: %s %q %v", out, errOut, err)
	}
	// A limit that is not reached says nothing more.
	if out, errOut, err = r.zmws(t, "", "services", "--limit", "5", "-o", "json"); err != nil || len(names(out)) != 2 || errOut != "" {
		t.Fatalf("services --limit 5: %s %q %v", out, errOut, err)
	}

	var ids []string
	for range 3 {
		out, _, err := r.zmws(t, "", "run", "STR-REV", "str=x")
		if err != nil || out != "x\n" {
			t.Fatalf("run: %q %v", out, err)
		}
	}
	out, _, err = r.zmws(t, "", "jobs", "-o", "json")
	var jobs []protocol.JobInfo
	if err != nil || json.Unmarshal([]byte(out), &jobs) != nil || len(jobs) != 3 {
		t.Fatalf("jobs: %s %v", out, err)
	}
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	out, errOut, err = r.zmws(t, "", "jobs", "--limit", "2")
	if err != nil || !strings.Contains(out, ids[0]) || !strings.Contains(out, ids[1]) || strings.Contains(out, ids[2]) {
		t.Fatalf("jobs --limit 2: %s %v", out, err)
	}
	_, cursor, ok := strings.Cut(strings.TrimSpace(errOut), "--after ")
	if !ok {
		t.Fatalf("jobs --limit 2 says %q, want how to go on", errOut)
	}
	out, errOut, err = r.zmws(t, "", "jobs", "--after", cursor)
	if err != nil || !strings.Contains(out, ids[2]) || strings.Contains(out, ids[1]) || errOut != "" {
		t.Fatalf("jobs --after %s: %s %q %v", cursor, out, errOut, err)
	}
	if _, _, err := r.zmws(t, "", "jobs", "--active", "--limit", "2"); err == nil {
		t.Error("jobs --active --limit: no error")
	}
	if _, _, err := r.zmws(t, "", "jobs", "--limit", "-1"); err == nil {
		t.Error("jobs --limit -1: no error")
	}
	if _, _, err := r.zmws(t, "", "jobs", "--after", "nonsense"); err == nil || !strings.Contains(err.Error(), "first page") {
		t.Errorf("jobs --after nonsense: %v", err)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"STR-REV":                       "STR-REV",
		"12.01J9Z3S4W6X7Y8Z9A0B1C2D3E4": "12.01J9Z3S4W6X7Y8Z9A0B1C2D3E4",
		"":                              "''",
		"a b":                           "'a b'",
		"it's":                          `'it'\''s'`,
		"$(x)":                          "'$(x)'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
