package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
)

// freedJournal makes a data dir with a journal of 2,000 finished jobs of
// 4 KiB output pruned down to the newest 100: most of its file is free.
func freedJournal(t *testing.T) (dir, path string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "data")
	path = filepath.Join(dir, store.BoltFile)
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 2000; i += 500 {
		var b store.Batch
		for j := i; j < i+500; j++ {
			b.Jobs = append(b.Jobs, &store.JobRecord{ID: fmt.Sprintf("01J%05d", j), Service: "echo", State: protocol.JobComplete,
				Created: time.Unix(1000, 0), Finished: time.Unix(int64(1000+j), 0), Output: bytes.Repeat([]byte{'x'}, 4<<10)})
		}
		if err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Prune(time.Time{}, 100, 0); err != nil || n != 1900 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	return dir, path
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestMain_JournalCompact(t *testing.T) {
	dir, path := freedJournal(t)
	before := fileSize(t, path)

	// Refused while the journal is open, and left as it was.
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code, out := zmwsd(t, "journal", "compact", "--data-dir="+dir)
	if code != 1 || !strings.Contains(out, path) || !strings.Contains(out, "stop zmwsd first") {
		t.Fatalf("journal compact of an open journal: exit %d:\n%s", code, out)
	}
	t.Log(out)
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("journal compact of an open journal changed it (%v)", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	code, out = zmwsd(t, "journal", "compact", "--data-dir="+dir)
	after := fileSize(t, path)
	if code != 0 || !strings.HasPrefix(out, fmt.Sprintf("compacted %s: 100 jobs; %d bytes before, %d after", path, before, after)) || after > before/4 {
		t.Fatalf("journal compact: exit %d, %d → %d bytes:\n%s", code, before, after, out)
	}
	t.Log(out)
	code, out = zmwsd(t, "journal", "check", "--data-dir="+dir)
	if code != 0 || !strings.HasPrefix(out, "OK: "+path+": 100 jobs (0 queued or active, 100 finished)") {
		t.Fatalf("journal check after compact: exit %d:\n%s", code, out)
	}

	code, out = zmwsd(t, "journal", "compact", "--data-dir="+filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.Contains(out, "no such file") {
		t.Fatalf("journal compact of no journal: exit %d:\n%s", code, out)
	}
}

// TestRun_CompactsOnStart: a journal more than half free, and by more than
// --compact-free, is compacted before zmwsd serves it; one that is not is
// left alone.
func TestRun_CompactsOnStart(t *testing.T) {
	dir, path := freedJournal(t)
	before := fileSize(t, path)
	serve := func(compactFree int64) string {
		t.Helper()
		// --retain=0: the jobs finished in 1970, past the default age bound.
		cli := parse(t, append([]string{"--data-dir=" + dir, "--retain=0", fmt.Sprintf("--compact-free=%d", compactFree)}, serveArgs...)...)
		var logs syncBuffer
		ctx, cancel := context.WithCancel(context.Background())
		_, _, done := start(t, ctx, cli, &logs)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}
	if logs := serve(before); strings.Contains(logs, "compact") || fileSize(t, path) != before {
		t.Fatalf("--compact-free=%d compacted a journal of %d bytes:\n%s", before, before, logs)
	}
	logs := serve(1 << 20)
	after := fileSize(t, path)
	if !strings.Contains(logs, "journal compacted") || after > before/4 {
		t.Fatalf("--compact-free=1MiB: %d → %d bytes:\n%s", before, after, logs)
	}
	if rep, err := store.Check(path, store.BoltOptions{}); err != nil || rep.Finished != 100 {
		t.Fatalf("the journal after a compacting start: %+v, %v", rep, err)
	}
}
