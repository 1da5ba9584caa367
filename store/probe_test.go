package store

import (
	"path/filepath"
	"testing"
)

// TestBolt_ProbeCommit: a batch of a probe alone is written (so a failing
// disk shows), and leaves a journal that checks clean and loads the same.
func TestBolt_ProbeCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(&Batch{Services: []ServiceRecord{{Name: "S"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(&Batch{Probe: true}); err != nil {
		t.Fatalf("probe commit: %v", err)
	}
	s.Close()
	if _, err := Check(path, BoltOptions{}); err != nil {
		t.Fatalf("check after a probe: %v", err)
	}
	s, err = OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Load(100)
	if err != nil || len(snap.Services) != 1 || len(snap.Jobs) != 0 {
		t.Fatalf("load after a probe: %+v, %v", snap, err)
	}
	if err := s.Commit(&Batch{Probe: true}); err != nil {
		t.Fatalf("second probe: %v", err)
	}
}
