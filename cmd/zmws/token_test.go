package main

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zmws/zmws/auth"
)

func TestCLI_Token(t *testing.T) {
	var r rig // no broker: token commands touch only the file
	file := filepath.Join(t.TempDir(), "tokens.toml")
	out, errOut, err := r.zmws(t, "", "token", "add", "ci", "--file", file, "--service", "STR-*", "--service", "[a,b]*")
	if err != nil {
		t.Fatal(err)
	}
	ci := strings.TrimSuffix(out, "\n")
	if !strings.HasPrefix(ci, auth.TokenPrefix) || strings.Contains(ci, "\n") {
		t.Fatalf("stdout %q, want the token alone", out)
	}
	if !strings.Contains(errOut, "only this once") || !strings.Contains(errOut, file) || strings.Contains(errOut, ci) {
		t.Errorf("stderr %q", errOut)
	}
	t.Setenv("ZMWSD_HTTP_TOKENS", file) // as on the broker's machine
	out, _, err = r.zmws(t, "", "token", "add", "ops", "--admin")
	if err != nil {
		t.Fatal(err)
	}
	ops := strings.TrimSpace(out)
	if _, _, err := r.zmws(t, "", "token", "add", "ci"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("duplicate name: %v", err)
	}

	ts, err := auth.LoadTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	if name, rights, ok := ts.Lookup(ci); !ok || name != "ci" || !reflect.DeepEqual(rights.Services, []string{"STR-*", "[a,b]*"}) || rights.Admin {
		t.Errorf("ci: %q %+v %v", name, rights, ok)
	}
	if name, rights, ok := ts.Lookup(ops); !ok || name != "ops" || !rights.Admin {
		t.Errorf("ops: %q %+v %v", name, rights, ok)
	}

	out, _, err = r.zmws(t, "", "token", "list", "--file", file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		strings.Join(strings.Fields(lines[1]), " ") != "ci false STR-* [a,b]*" ||
		strings.Join(strings.Fields(lines[2]), " ") != "ops true (all)" {
		t.Errorf("list:\n%s", out)
	}
	if strings.Contains(out, "sha256") || strings.Contains(out, ci) {
		t.Errorf("list shows a hash or a token:\n%s", out)
	}
	out, _, err = r.zmws(t, "", "token", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("list -o json: %v\n%s", err, out)
	}
	want := []map[string]any{
		{"name": "ci", "services": []any{"STR-*", "[a,b]*"}, "admin": false},
		{"name": "ops", "services": []any{}, "admin": true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("list -o json: %v, want %v", got, want)
	}
	if _, _, err := r.zmws(t, "", "token", "list", "--file", filepath.Join(t.TempDir(), "none.toml")); err == nil {
		t.Error("list of a missing file succeeded")
	}
}
