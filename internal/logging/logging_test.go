package logging

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestNew_ConsoleWithoutTerminalHasNoColour(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str(KeyService, "STR-REV").Msg("worker ready")
	out := buf.String()
	if strings.Contains(out, "\x1b[") {
		t.Errorf("console log to a buffer holds escape codes: %q", out)
	}
	if !strings.Contains(out, "worker ready") || !strings.Contains(out, "service=STR-REV") {
		t.Errorf("console log %q: want the message and service=STR-REV", out)
	}

	// A file that is not a terminal: no colour either.
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if terminal(f) {
		t.Fatal("a regular file taken for a terminal")
	}
	log, _ = New(f, "info", "console")
	log.Warn().Msg("slow")
	b, _ := os.ReadFile(f.Name())
	if strings.Contains(string(b), "\x1b[") || !strings.Contains(string(b), "slow") {
		t.Errorf("console log to a file: %q", b)
	}
}

func TestNew_Rejects(t *testing.T) {
	for _, c := range []struct{ level, format string }{{"loud", "json"}, {"", "json"}, {"info", "xml"}} {
		if _, err := New(&bytes.Buffer{}, c.level, c.format); err == nil {
			t.Errorf("New(%q, %q) succeeded", c.level, c.format)
		}
	}
}
