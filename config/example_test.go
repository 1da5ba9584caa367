package config

import (
	"os"
	"testing"
)

// TestExample: examples/zmws.toml, the demo's installation, is good.
func TestExample(t *testing.T) {
	f, err := Load("../examples/zmws.toml")
	if err != nil {
		t.Fatal(err)
	}
	if f.HTTPBind() != "127.0.0.1:5580" || len(f.Workers) == 0 {
		t.Errorf("HTTP %q, workers %q", f.HTTPBind(), f.Names())
	}
	for _, w := range f.Workers {
		if jd, ok := w.Values["jobs_dir"].(string); ok {
			if _, err := os.Stat(jd); err != nil {
				t.Errorf("[[worker]] %s: %v", w.Name, err)
			}
		}
		if got := w.Brokers(); len(got) != 1 || got[0] != DefaultWorkerBind {
			t.Errorf("[[worker]] %s: brokers %q", w.Name, got)
		}
	}
}
