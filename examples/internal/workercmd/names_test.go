package workercmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleNames keeps `go build -o bin/ ./examples/...` from making a
// binary named like a system tool (a bin/sleep in PATH shadows coreutils'):
// every example command's folder, which names its binary, starts with
// "zmws-".
func TestExampleNames(t *testing.T) {
	entries, err := os.ReadDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		main, err := os.ReadFile(filepath.Join("../..", e.Name(), "main.go"))
		if err != nil || !strings.Contains(string(main), "\npackage main\n") {
			continue
		}
		n++
		if !strings.HasPrefix(e.Name(), "zmws-") {
			t.Errorf("examples/%s builds a binary named %s: name the folder zmws-%s", e.Name(), e.Name(), e.Name())
		}
	}
	if n == 0 {
		t.Fatal("no example commands found")
	}
}
