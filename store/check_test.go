package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
)

// damagedJobs is how many jobs makeJournal writes: the first half queued,
// the rest finished with bigOutput bytes of output each, so the file has
// branch pages, leaf pages and overflow pages past 8 MiB.
const (
	damagedJobs = 600
	bigOutput   = 30 << 10
)

// makeJournal writes a journal of damagedJobs jobs at path and returns its
// bytes, the pages bbolt's meta page needs (the high-water mark times the
// page size) and the page size.
func makeJournal(t *testing.T, path string) (data []byte, need int64, pageSize int64) {
	t.Helper()
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < damagedJobs; n += 50 {
		var b Batch
		b.Services = []ServiceRecord{{Name: fmt.Sprintf("svc%d", n/50), FirstSeen: t0}}
		for i := n; i < n+50; i++ {
			j := job(fmt.Sprintf("01J%05d", i), protocol.JobQueued, time.Time{})
			j.Key = fmt.Sprintf("key-%d", i)
			if i >= damagedJobs/2 {
				j.State, j.Finished = protocol.JobComplete, t0.Add(time.Duration(i)*time.Second)
				j.Output = []byte(strings.Repeat(fmt.Sprintf("%08d", i), bigOutput/8))
			}
			b.Jobs = append(b.Jobs, j)
		}
		commit(t, s, &b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := checkHeader(f, path, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return data, int64(m.pgid) * int64(m.pageSize), int64(m.pageSize)
}

// truncationPoints are the sizes TestBolt_TruncatedJournal cuts a journal
// of size bytes to: every 512 bytes up to 64 KiB past the pages the meta
// page needs, every 64 KiB beyond, each page boundary below need and one
// byte either side, and the sizes of the bug report, one byte either side.
func truncationPoints(size, need, pageSize int64) []int64 {
	var pts []int64
	add := func(n int64) {
		if n >= 1 && n < size {
			pts = append(pts, n)
		}
	}
	for n := int64(1); n < size; n += 512 {
		if n > need+64<<10 && n%(64<<10) > 512 {
			continue
		}
		add(n)
	}
	for p := pageSize; p <= need+pageSize; p += pageSize {
		add(p - 1)
		add(p)
		add(p + 1)
	}
	for _, n := range []int64{8 << 10, 16 << 10, 20000, 64 << 10, 8 << 20, need} {
		add(n - 1)
		add(n)
		add(n + 1)
	}
	slices.Sort(pts)
	return slices.Compact(pts)
}

// TestBolt_TruncatedJournal cuts a journal short at thousands of points: a
// cut below the meta page's high-water mark is ErrCorrupt naming the file
// and saying "truncated", never a panic or a crash; a cut above it (bbolt
// grows the file ahead) loses nothing.
func TestBolt_TruncatedJournal(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig", BoltFile)
	data, need, pageSize := makeJournal(t, orig)
	if int64(len(data)) < 8<<20+2 || need <= 8<<20 {
		t.Fatalf("journal of %d bytes, %d needed: too small to cut at 8 MiB", len(data), need)
	}
	path := filepath.Join(dir, "cut", BoltFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeMarker(path); err != nil {
		t.Fatal(err)
	}
	pts := truncationPoints(int64(len(data)), need, pageSize)
	start := time.Now()
	refused, opened := 0, 0
	// Largest first, so each cut only shrinks the file: OpenBolt never
	// writes to an existing journal (checked below by size).
	for _, n := range slices.Backward(pts) {
		if err := os.Truncate(path, n); err != nil {
			t.Fatal(err)
		}
		s, err := OpenBolt(path, BoltOptions{})
		if n < need {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("cut at %d of %d (need %d): OpenBolt = %v, want ErrCorrupt naming %s", n, len(data), need, err, path)
			}
			if n >= 2*pageSize && !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("cut at %d: %v, want it to say truncated", n, err)
			}
			if s != nil {
				t.Fatalf("cut at %d: a store and an error", n)
			}
			refused++
			continue
		}
		if err != nil {
			t.Fatalf("cut at %d, above the %d bytes needed: %v", n, need, err)
		}
		snap, err := s.Load(damagedJobs)
		if err != nil || len(snap.Jobs) != damagedJobs/2 || len(snap.Finished) != damagedJobs/2 {
			t.Fatalf("cut at %d: Load = %d open, %d finished, %v", n, len(snap.Jobs), len(snap.Finished), err)
		}
		s.Close()
		if fi, err := os.Stat(path); err != nil || fi.Size() != n {
			t.Fatalf("cut at %d: OpenBolt changed the size to %d (%v)", n, fi.Size(), err)
		}
		opened++
	}
	t.Logf("journal %d bytes, %d needed, pages of %d: %d cuts refused, %d opened intact, in %v",
		len(data), need, pageSize, refused, opened, time.Since(start))
	for _, n := range []int64{8 << 10, 16 << 10, 20000, 64 << 10, 8 << 20} {
		if err := os.WriteFile(path, data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenBolt(path, BoltOptions{})
		t.Logf("cut at %d: %v", n, err)
	}
}

// TestBolt_EmptyOrMissingJournal: a missing or empty journal is a fresh
// start in a new data dir and ErrMissing in one whose marker says it had one.
func TestBolt_EmptyOrMissingJournal(t *testing.T) {
	for _, empty := range []bool{false, true} {
		t.Run(fmt.Sprintf("empty=%v", empty), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, BoltFile)
			if empty {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s := openBolt(t, path, BoltOptions{})
			put(t, s, job("01A", protocol.JobQueued, time.Time{}))
			s.Close()
			if _, err := os.Stat(filepath.Join(dir, MarkerFile)); err != nil {
				t.Fatalf("no marker after the first open: %v", err)
			}
			if empty {
				err := os.Truncate(path, 0)
				if err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			_, err := OpenBolt(path, BoltOptions{})
			if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), MarkerFile) {
				t.Fatalf("OpenBolt after the journal went = %v, want ErrMissing naming %s and %s", err, path, MarkerFile)
			}
			t.Log(err)
			if fi, err := os.Stat(path); empty && (err != nil || fi.Size() != 0) || !empty && err == nil {
				t.Fatalf("OpenBolt touched the lost journal: %v, %v", fi, err)
			}
		})
	}
	// A journal from before the marker gets one.
	path := filepath.Join(t.TempDir(), BoltFile)
	openBolt(t, path, BoltOptions{}).Close()
	if err := os.Remove(markerPath(path)); err != nil {
		t.Fatal(err)
	}
	openBolt(t, path, BoltOptions{}).Close()
	if _, err := os.Stat(markerPath(path)); err != nil {
		t.Fatalf("no marker after opening an old journal: %v", err)
	}
}

func TestCheckAndSalvage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d", BoltFile)
	data, need, _ := makeJournal(t, path)
	rep, err := Check(path, BoltOptions{})
	if err != nil || rep.Jobs != damagedJobs || rep.Open != damagedJobs/2 || rep.Services != damagedJobs/50 {
		t.Fatalf("Check(sound) = %+v, %v", rep, err)
	}
	t.Logf("sound: %+v", rep)
	if rep, err := Check(filepath.Join(dir, "new", BoltFile), BoltOptions{}); err != nil || !rep.Fresh {
		t.Fatalf("Check(none) = %+v, %v; want fresh", rep, err)
	}

	// Salvage of a sound journal saves everything.
	to := filepath.Join(dir, "all.db")
	srep, err := Salvage(path, to, BoltOptions{})
	if err != nil || srep.Saved != damagedJobs || srep.Lost != 0 || srep.Damaged || srep.Services != damagedJobs/50 {
		t.Fatalf("Salvage(sound) = %+v, %v", srep, err)
	}
	if rep, err := Check(to, BoltOptions{}); err != nil || rep.Jobs != damagedJobs {
		t.Fatalf("Check(salvaged) = %+v, %v", rep, err)
	}
	if _, err := Salvage(path, to, BoltOptions{}); err == nil {
		t.Fatal("Salvage over an existing file succeeded")
	}

	for _, n := range []int64{20000, 64 << 10, 8 << 20, need - 1} {
		cut := filepath.Join(dir, fmt.Sprintf("cut%d.db", n))
		if err := os.WriteFile(cut, data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Check(cut, BoltOptions{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), cut) {
			t.Fatalf("Check(cut at %d) = %v, want ErrCorrupt naming the file", n, err)
		}
		to := filepath.Join(dir, fmt.Sprintf("saved%d.db", n))
		srep, err := Salvage(cut, to, BoltOptions{})
		if err != nil || !srep.Damaged {
			t.Fatalf("Salvage(cut at %d) = %+v, %v", n, srep, err)
		}
		t.Logf("cut at %d: saved %d, lost %d, services %d", n, srep.Saved, srep.Lost, srep.Services)
		if got, _ := os.ReadFile(cut); int64(len(got)) != n || string(got) != string(data[:n]) {
			t.Fatalf("Salvage changed its source")
		}
		if n == need-1 && srep.Saved < damagedJobs/2 {
			t.Errorf("cut one byte short: saved %d of %d", srep.Saved, damagedJobs)
		}
		if rep, err := Check(to, BoltOptions{}); err != nil || rep.Jobs != srep.Saved {
			t.Fatalf("Check(salvaged from cut at %d) = %+v, %v", n, rep, err)
		}
	}
}
