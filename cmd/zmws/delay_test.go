package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
)

// zmws submit --delay/--at makes a scheduled job that zmws job shows with
// its time and priority, and zmws cancel removes; bad values are refused
// naming the flag.
func TestCLI_SubmitDelayedWithPriority(t *testing.T) {
	r := newRig(t)
	id, _, err := r.zmws(t, "", "submit", "--delay", "1h", "--priority", "5", "STR-REV", "str=abc")
	id = strings.TrimSpace(id)
	if err != nil || len(id) != 26 {
		t.Fatalf("submit --delay: %q %v", id, err)
	}
	out, _, err := r.zmws(t, "", "job", id, "-o", "json")
	var j protocol.JobView
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.State != protocol.JobScheduled || j.Priority != 5 ||
		j.NotBefore == nil || time.Until(*j.NotBefore) < 59*time.Minute {
		t.Fatalf("job of a delayed job: %s %v", out, err)
	}
	out, _, err = r.zmws(t, "", "job", id)
	if err != nil || !strings.Contains(out, "scheduled") || !strings.Contains(out, "not before:") || !strings.Contains(out, "priority:") {
		t.Fatalf("job table: %s %v", out, err)
	}
	out, _, err = r.zmws(t, "", "jobs", "--queued")
	if err != nil || !strings.Contains(out, "SCHEDULED") {
		t.Fatalf("jobs --queued: %s %v", out, err)
	}
	if _, _, err := r.zmws(t, "", "cancel", id); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	// A time past runs now.
	id, _, err = r.zmws(t, "", "submit", "--at", "2000-01-01T00:00:00Z", "STR-REV", "str=xy")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = r.zmws(t, "", "job", strings.TrimSpace(id), "--wait", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.State != protocol.JobComplete {
		t.Fatalf("job at a time past: %s %v", out, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", "--at", "tomorrow", "STR-REV"}, "--at"},
		{[]string{"submit", "--delay", "-1s", "STR-REV"}, "--delay"},
		{[]string{"submit", "--delay", "1s", "--at", "2000-01-01T00:00:00Z", "STR-REV"}, "--delay and --at"},
		{[]string{"submit", "--delay", "9000h", "STR-REV"}, "--delay"},
	} {
		if _, _, err := r.zmws(t, "", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("zmws %s: %v, want an error naming %s", strings.Join(c.args, " "), err, c.want)
		}
	}
	// zmws run takes a priority.
	out, _, err = r.zmws(t, "", "run", "--priority", "3", "STR-REV", "str=abc")
	if err != nil || out != "cba\n" {
		t.Fatalf("run --priority: %q %v", out, err)
	}
}
