package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
)

// zmwsd runs the test binary as the real zmwsd (TestMain) and returns its
// exit status and what it printed.
func zmwsd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ZMWSD_TEST_MAIN=1", "ZMWSD_TEST_ARGS="+strings.Join(args, " "))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("zmwsd %v: %v", args, err)
	return 0, ""
}

// serveArgs makes zmwsd bind nothing fixed.
var serveArgs = []string{"--http-bind=", "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind="}

// journalDir makes a data dir with a journal of 200 jobs (1 KiB of output
// each) and returns the dir and the journal's bytes.
func journalDir(t *testing.T) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := store.OpenBolt(filepath.Join(dir, store.BoltFile), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := store.Batch{Services: []store.ServiceRecord{{Name: "echo", FirstSeen: time.Unix(1000, 0)}}}
	for i := range 200 {
		b.Jobs = append(b.Jobs, &store.JobRecord{ID: fmt.Sprintf("01J%04d", i), Service: "echo", State: protocol.JobComplete,
			Created: time.Unix(1000, 0), Finished: time.Unix(int64(1000+i), 0), Output: bytes.Repeat([]byte{'x'}, 1024)})
	}
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, store.BoltFile))
	if err != nil {
		t.Fatal(err)
	}
	return dir, data
}

// TestMain_RefusesTruncatedJournal: the real main, on a journal cut short,
// exits 1 naming the file and the recover command; never a panic (exit 2).
func TestMain_RefusesTruncatedJournal(t *testing.T) {
	dir, data := journalDir(t)
	path := filepath.Join(dir, store.BoltFile)
	for _, n := range []int{1, 4096, 8 << 10, 16 << 10, 20000, 64 << 10, len(data) / 2} {
		if err := os.WriteFile(path, data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := zmwsd(t, append([]string{"--data-dir=" + dir}, serveArgs...)...)
		if code != 1 || !strings.Contains(out, path) || !strings.Contains(out, "zmwsd journal recover --data-dir "+dir) {
			t.Fatalf("zmwsd on a journal cut at %d of %d bytes: exit %d, output:\n%s", n, len(data), code, out)
		}
		if n == 20000 {
			t.Logf("cut at %d: exit %d:\n%s", n, code, out)
		}
	}
}

// TestMain_EmptyOrMissingJournal: a missing or empty journal is refused in
// a data dir that had one, and a fresh start in a new one.
func TestMain_EmptyOrMissingJournal(t *testing.T) {
	dir, _ := journalDir(t)
	path := filepath.Join(dir, store.BoltFile)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	code, out := zmwsd(t, append([]string{"--data-dir=" + dir}, serveArgs...)...)
	if code != 1 || !strings.Contains(out, path) || !strings.Contains(out, "empty") || !strings.Contains(out, store.MarkerFile) {
		t.Fatalf("zmwsd on an empty journal in a used data dir: exit %d, output:\n%s", code, out)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	code, out = zmwsd(t, append([]string{"--data-dir=" + dir}, serveArgs...)...)
	if code != 1 || !strings.Contains(out, path) || !strings.Contains(out, "missing") {
		t.Fatalf("zmwsd on a missing journal in a used data dir: exit %d, output:\n%s", code, out)
	}

	for _, empty := range []bool{false, true} {
		fresh := filepath.Join(t.TempDir(), "data")
		if empty {
			if err := os.MkdirAll(fresh, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(fresh, store.BoltFile), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cli := parse(t, append([]string{"--data-dir=" + fresh}, serveArgs...)...)
		ctx, cancel := context.WithCancel(context.Background())
		_, _, done := start(t, ctx, cli, &syncBuffer{})
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("new data dir (empty journal %v): %v", empty, err)
		}
		if _, err := os.Stat(filepath.Join(fresh, store.MarkerFile)); err != nil {
			t.Fatalf("no marker in a new data dir after a start: %v", err)
		}
	}
}

func TestMain_JournalCheckAndRecover(t *testing.T) {
	dir, data := journalDir(t)
	path := filepath.Join(dir, store.BoltFile)
	code, out := zmwsd(t, "journal", "check", "--data-dir="+dir)
	if code != 0 || !strings.HasPrefix(out, "OK: "+path+": 200 jobs") {
		t.Fatalf("journal check of a sound journal: exit %d:\n%s", code, out)
	}
	t.Log(out)
	whole := filepath.Join(t.TempDir(), "whole.db")
	code, out = zmwsd(t, "journal", "recover", "--data-dir="+dir, "--to="+whole)
	if code != 0 || !strings.Contains(out, "saved 200 jobs and 1 services to "+whole+"; lost 0 jobs") {
		t.Fatalf("journal recover of a sound journal: exit %d:\n%s", code, out)
	}

	// Cut one byte short of the pages in use: most jobs can still be read.
	cut := len(data) - 1
	for ; cut > 0 && data[cut] == 0; cut-- {
	}
	n := cut/4096*4096 - 1
	if err := os.WriteFile(path, data[:n], 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = zmwsd(t, "journal", "check", "--data-dir="+dir)
	if code != 1 || !strings.Contains(out, path) || !strings.Contains(out, "truncated") {
		t.Fatalf("journal check of a journal cut at %d: exit %d:\n%s", n, code, out)
	}
	t.Log(out)
	to := filepath.Join(t.TempDir(), "saved.db")
	code, out = zmwsd(t, "journal", "recover", "--data-dir="+dir, "--to="+to)
	if code != 0 || !strings.Contains(out, "saved ") || !strings.Contains(out, to) {
		t.Fatalf("journal recover: exit %d:\n%s", code, out)
	}
	t.Log(out)
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data[:n]) {
		t.Fatalf("journal recover changed the original (%v)", err)
	}
	// What the walk reaches depends on where bbolt put the tree's pages
	// (here the root is on the lost page); the copy holds what it says.
	rep, err := store.Check(to, store.BoltOptions{})
	if err != nil || !strings.Contains(out, fmt.Sprintf("saved %d jobs", rep.Jobs)) {
		t.Fatalf("the recovered journal: %+v, %v", rep, err)
	}
	code, out = zmwsd(t, "journal", "recover", "--data-dir="+dir, "--to="+to)
	if code != 1 || !strings.Contains(out, to) {
		t.Fatalf("journal recover onto an existing file: exit %d:\n%s", code, out)
	}

	// The recovered journal, put in place, starts.
	if err := os.Rename(to, path); err != nil {
		t.Fatal(err)
	}
	cli := parse(t, append([]string{"--data-dir=" + dir}, serveArgs...)...)
	ctx, cancel := context.WithCancel(context.Background())
	_, _, done := start(t, ctx, cli, &syncBuffer{})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
