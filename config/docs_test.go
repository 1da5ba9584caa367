package config

import (
	"os"
	"strings"
	"testing"
)

// TestKeys_Documented: docs/CONFIG.md names every key.
func TestKeys_Documented(t *testing.T) {
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(BrokerKeys(), WorkerKeys()...) {
		if !strings.Contains(string(doc), "`"+k.Name+"`") {
			t.Errorf("docs/CONFIG.md does not name `%s`", k.Name)
		}
	}
}
