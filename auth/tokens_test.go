package auth

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// writeFile writes a tokens file with mode 0600 in a fresh folder.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadTokens(t *testing.T) {
	path := writeFile(t, `
# CI may run string jobs; ops may do anything.
[[token]]
name = "ci"
hash = "`+HashToken("zmws_ci")+`"
services = ["STR-*", "SAY"]

[[token]]
name = "ops"
hash = "sha256:`+strings.ToUpper(strings.TrimPrefix(HashToken("zmws_ops"), "sha256:"))+`" # upper-case hex is fine
admin = true
`)
	ts, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []TokenInfo{
		{Name: "ci", Rights: Rights{Services: []string{"STR-*", "SAY"}}},
		{Name: "ops", Rights: Rights{Admin: true}},
	}
	if got := ts.List(); !reflect.DeepEqual(got, want) {
		t.Fatalf("List %+v, want %+v", got, want)
	}
	if ts.Path() != path || ts.Len() != 2 {
		t.Errorf("Path %q Len %d", ts.Path(), ts.Len())
	}
	name, r, ok := ts.Lookup("zmws_ci")
	if !ok || name != "ci" || !r.Allows("STR-REV") || r.Allows("SLEEP") || r.Admin {
		t.Errorf("Lookup(ci): %q %+v %v", name, r, ok)
	}
	if name, r, ok := ts.Lookup("zmws_ops"); !ok || name != "ops" || !r.Admin {
		t.Errorf("Lookup(ops): %q %+v %v", name, r, ok)
	}
	for _, wrong := range []string{"", "zmws_c", "zmws_ci ", "ZMWS_CI", HashToken("zmws_ci")} {
		if name, _, ok := ts.Lookup(wrong); ok {
			t.Errorf("Lookup(%q) found %q", wrong, name)
		}
	}
}

func TestLoadTokens_Empty(t *testing.T) {
	ts, err := LoadTokens(writeFile(t, "# no tokens yet\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := ts.Lookup("zmws_x"); ok || ts.Len() != 0 {
		t.Error("an empty file let a token in")
	}
}

func TestLoadTokens_Errors(t *testing.T) {
	h := HashToken("zmws_a")
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "[[token]]\nname = \"a\"\nhash = \"" + h + "\"\nservice = [\"X\"]\n", []string{"unknown key token.service"}},
		{"unknown table", "[tokens]\nname = \"a\"\n", []string{"unknown key tokens"}},
		{"watch", "[[token]]\nname = \"a\"\nhash = \"" + h + "\"\nwatch = true\n", []string{`token 1 ("a")`, "watch"}},
		{"bad hash hex", "[[token]]\nname = \"a\"\nhash = \"sha256:zz\"\n", []string{`token 1 ("a")`, "hash: want sha256: and 64 hex digits"}},
		{"short hash", "[[token]]\nname = \"a\"\nhash = \"" + h[:len(h)-2] + "\"\n", []string{`token 1 ("a")`, "64 hex digits"}},
		{"hash without prefix", "[[token]]\nname = \"a\"\nhash = \"" + h[len("sha256:"):] + "\"\n", []string{`token 1 ("a")`, `must start with "sha256:"`}},
		{"no hash", "[[token]]\nname = \"a\"\n", []string{`token 1 ("a")`, "hash is missing"}},
		{"no name", "[[token]]\nhash = \"" + h + "\"\n", []string{"token 1:", "name is missing"}},
		{"bad name", "[[token]]\nname = \"a b\"\nhash = \"" + h + "\"\n", []string{`token 1 ("a b")`, "letters, digits"}},
		{"duplicate name", "[[token]]\nname = \"a\"\nhash = \"" + h + "\"\n[[token]]\nname = \"a\"\nhash = \"" + HashToken("zmws_b") + "\"\n",
			[]string{`token 2 ("a")`, "name already used by token 1"}},
		{"duplicate hash", "[[token]]\nname = \"a\"\nhash = \"" + h + "\"\n[[token]]\nname = \"b\"\nhash = \"" + h + "\"\n",
			[]string{`token 2 ("b")`, `same hash as token "a"`}},
		{"bad pattern", "[[token]]\nname = \"a\"\nhash = \"" + h + "\"\nservices = [\"[\"]\n", []string{`token 1 ("a")`, `service pattern "["`}},
		{"wrong type", "[[token]]\nname = \"a\"\nhash = \"" + h + "\"\nadmin = \"yes\"\n", []string{"admin"}},
		{"not toml", "[[token]\n", []string{"line "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.text)
			_, err := LoadTokens(path)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadTokens_Permissions(t *testing.T) {
	path := writeFile(t, "")
	// Readable by all is fine: the file holds hashes, not tokens.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokens(path); err != nil {
		t.Errorf("mode 0644: %v", err)
	}
	if err := os.Chmod(path, 0o602); err != nil {
		t.Fatal(err)
	}
	_, err := LoadTokens(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "any user") {
		t.Errorf("world-writable: %v", err)
	}
	if _, err := AddToken(path, "x", Rights{}); err == nil {
		t.Error("AddToken appended to a world-writable file")
	}
	missing := filepath.Join(t.TempDir(), "nope.toml")
	if _, err := LoadTokens(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadTokens(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a folder: %v", err)
	}
}

func TestAddToken_RoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.toml")
	ci, err := AddToken(path, "ci", Rights{Services: []string{"STR-*", `we"ird`}})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("new file has mode %04o, want 0600", perm)
	}
	ops, err := AddToken(path, "ops", Rights{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ci, TokenPrefix) || len(ci) != len(TokenPrefix)+43 || ci == ops {
		t.Errorf("tokens %q %q", ci, ops)
	}
	text, _ := os.ReadFile(path)
	if strings.Contains(string(text), ci) || strings.Contains(string(text), ops) {
		t.Fatalf("the file holds a token:\n%s", text)
	}
	if _, err := AddToken(path, "ci", Rights{}); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := AddToken(path, "bad", Rights{Services: []string{"["}}); err == nil {
		t.Error("bad pattern accepted")
	}
	if _, err := AddToken(path, "", Rights{}); err == nil {
		t.Error("empty name accepted")
	}

	ts, err := LoadTokens(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	want := []TokenInfo{
		{Name: "ci", Rights: Rights{Services: []string{"STR-*", `we"ird`}}},
		{Name: "ops", Rights: Rights{Services: []string{}, Admin: true}},
	}
	if got := ts.List(); !reflect.DeepEqual(got, want) {
		t.Fatalf("List %+v, want %+v\n%s", got, want, text)
	}
	if name, r, ok := ts.Lookup(ci); !ok || name != "ci" || !r.Allows("STR-REV") || r.Admin {
		t.Errorf("Lookup(ci): %q %+v %v", name, r, ok)
	}
	if name, r, ok := ts.Lookup(ops); !ok || name != "ops" || !r.Admin || !r.Allows("ANY") {
		t.Errorf("Lookup(ops): %q %+v %v", name, r, ok)
	}
	if _, _, ok := ts.Lookup(NewToken()); ok {
		t.Error("a fresh token was found")
	}
}

func TestAddToken_KeepsFile(t *testing.T) {
	// A hand-written file without a final newline keeps its comments and
	// gets a valid entry after it.
	path := writeFile(t, "# hand-written\n[[token]]\nname = \"old\"\nhash = \""+HashToken("zmws_old")+"\"")
	tok, err := AddToken(path, "new", Rights{})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(text), "# hand-written\n") {
		t.Errorf("file now:\n%s", text)
	}
	ts, err := LoadTokens(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if n, _, ok := ts.Lookup(tok); !ok || n != "new" {
		t.Errorf("new token: %q %v", n, ok)
	}
	if n, _, ok := ts.Lookup("zmws_old"); !ok || n != "old" {
		t.Errorf("old token: %q %v", n, ok)
	}
	// A broken file is not appended to.
	bad := writeFile(t, "[[token]]\nname = 1\n")
	if _, err := AddToken(bad, "x", Rights{}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("broken file: %v", err)
	}
	if text, _ := os.ReadFile(bad); string(text) != "[[token]]\nname = 1\n" {
		t.Errorf("broken file changed:\n%s", text)
	}
}

func TestTokenSet_Reload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.toml")
	a, err := AddToken(path, "a", Rights{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewTokenSet(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := AddToken(path, "b", Rights{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Lookup(b); ok {
		t.Fatal("b known before Reload")
	}

	// Lookups race with reloads; -race checks the swap.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, ok := s.Lookup(a); !ok {
					t.Error("a lost during reloads")
					return
				}
			}
		})
	}
	for range 50 {
		if err := s.Reload(); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
	if n, _, ok := s.Lookup(b); !ok || n != "b" {
		t.Fatalf("b after Reload: %q %v", n, ok)
	}

	// A broken file keeps the tokens in use.
	if err := os.WriteFile(path, []byte("[[token]]\nnme = \"a\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "unknown key token.nme") {
		t.Errorf("Reload of a broken file: %v", err)
	}
	if _, _, ok := s.Lookup(b); !ok {
		t.Error("a failed Reload dropped the tokens")
	}
	if s.Tokens().Len() != 2 || s.Path() != path {
		t.Errorf("Tokens().Len() %d, Path %q", s.Tokens().Len(), s.Path())
	}
}
