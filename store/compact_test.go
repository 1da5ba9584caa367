package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
)

// bigJournal fills a journal at path with n finished jobs of 4 KiB output,
// each with an idempotency key, a queued job and a service, then prunes all
// but the newest keep finished jobs, and returns what Load then gives.
func bigJournal(t *testing.T, path string, n, keep int) Snapshot {
	t.Helper()
	s := openBolt(t, path, BoltOptions{})
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "echo", FirstSeen: t0}}})
	for i := 0; i < n; i += 500 {
		var b Batch
		for j := i; j < min(n, i+500); j++ {
			r := job(fmt.Sprintf("01F%05d", j), protocol.JobComplete, t0.Add(time.Duration(j)*time.Second))
			r.Key = fmt.Sprintf("key-%05d", j)
			r.Output = bytes.Repeat([]byte{byte(j)}, 4<<10)
			b.Jobs = append(b.Jobs, r)
		}
		commit(t, s, &b)
	}
	put(t, s, job("01Q", protocol.JobQueued, time.Time{}))
	prune(t, s, time.Time{}, keep, n-keep)
	snap := load(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestCompact_ShrinksAndKeepsEveryJob(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	want := bigJournal(t, path, 5000, 200)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	s := openBolt(t, path, BoltOptions{})
	size, free, err := s.Space()
	if err != nil || size != before.Size() || free < size/2 {
		t.Fatalf("Space() = %d, %d, %v; want %d bytes, more than half of them free", size, free, err, before.Size())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	rep, err := Compact(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted %d jobs: %d → %d bytes (Space said %d free) in %v", rep.Jobs, rep.Before, rep.After, free, rep.Elapsed)
	after, err := os.Stat(path)
	switch {
	case err != nil:
		t.Fatal(err)
	case rep.Before != before.Size() || rep.After != after.Size() || rep.Jobs != 201:
		t.Fatalf("report %+v; the file was %d bytes, is %d; 201 jobs", rep, before.Size(), after.Size())
	case after.Size() > before.Size()/4:
		t.Fatalf("compaction left %d of %d bytes", after.Size(), before.Size())
	}
	if _, err := os.Stat(path + compactSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the copy is left behind: %v", err)
	}
	if c, err := Check(path, BoltOptions{}); err != nil || c.Jobs != 201 || c.Finished != 200 || c.Services != 1 {
		t.Fatalf("Check after Compact = %+v, %v", c, err)
	}
	s = openBolt(t, path, BoltOptions{})
	if got := load(t, s, 5000); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Compact, Load gives %d open and %d finished jobs; want %d and %d, as before",
			len(got.Jobs), len(got.Finished), len(want.Jobs), len(want.Finished))
	}
	for _, j := range want.Finished {
		wantJob(t, s, j.ID, &j)
		wantKey(t, s, j.Key, j.ID)
	}
	// The compacted journal takes new jobs and prunes.
	put(t, s, job("01Z", protocol.JobComplete, t0.Add(time.Hour)))
	prune(t, s, time.Time{}, 1, 200)
}

func TestCompact_RefusesAnOpenJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	s := openBolt(t, path, BoltOptions{})
	finishedJobs(t, s, 10)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compact(path, BoltOptions{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Compact of an open journal = %v, want ErrLocked", err)
	}
	t.Log(err)
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Compact of an open journal changed it (%v)", err)
	}
	if _, err := os.Stat(path + compactSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Compact of an open journal left a copy: %v", err)
	}
	finishedIDs(t, s) // the store is still in use
}

func TestCompact_NoJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	if _, err := Compact(path, BoltOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Compact of no journal = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Compact of no journal made one: %v", err)
	}
}
