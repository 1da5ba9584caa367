package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/zmws/zmws/protocol"
)

// envCrashChild makes the test binary the child of TestBolt_SurvivesKill:
// it commits batches to the journal named by the variable until killed.
const envCrashChild = "ZMWS_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(envCrashChild); path != "" {
		if err := crashChild(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	crashBatch   = 10    // jobs per batch
	crashBatches = 10000 // bound on the child's work if nobody kills it
)

func crashID(batch, i int) string { return fmt.Sprintf("%06d-%02d", batch, i) }

// crashChild commits batch after batch, each adding crashBatch queued jobs
// and completing the previous batch's, and prints "ok N" after batch N's
// Commit returns. It never closes the journal.
func crashChild(path string) error {
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	for n := range crashBatches {
		var b Batch
		for i := range crashBatch {
			j := &JobRecord{ID: crashID(n, i), Service: "echo", State: protocol.JobQueued,
				Key: "k" + crashID(n, i), Input: [][]byte{make([]byte, 100)}}
			b.Jobs = append(b.Jobs, j)
			if n > 0 {
				b.Jobs = append(b.Jobs, &JobRecord{ID: crashID(n-1, i), Service: "echo",
					State: protocol.JobComplete, Finished: t0.Add(time.Duration(n) * time.Millisecond),
					Key: "k" + crashID(n-1, i), Output: []byte("done")})
			}
		}
		b.Services = []ServiceRecord{{Name: "svc" + strconv.Itoa(n), FirstSeen: t0}}
		if err := s.Commit(&b); err != nil {
			return err
		}
		fmt.Fprintf(out, "ok %d\n", n)
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// TestBolt_SurvivesKill kills a process that is committing with SIGKILL and
// checks that every batch it acknowledged is in the journal, and that no
// batch is there in part. (A killed process leaves the kernel's page cache
// behind; power loss is fsync's part, which this cannot show.)
func TestBolt_SurvivesKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashChild+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "ok "))
		if err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked = n
		if n == 30 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Acknowledgements written before the kill were read above.
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed", err)
	}
	if acked < 30 {
		t.Fatalf("child acknowledged %d batches", acked+1)
	}

	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	snap := load(t, s, 1<<20)
	// The last batch in the journal: acked, or one more committed but not acked.
	last := len(snap.Services) - 1
	if last != acked && last != acked+1 {
		t.Fatalf("journal has %d batches, child acknowledged %d", last+1, acked+1)
	}
	if len(snap.Jobs) != crashBatch || len(snap.Finished) != last*crashBatch {
		t.Fatalf("journal has %d open and %d finished jobs, want %d and %d",
			len(snap.Jobs), len(snap.Finished), crashBatch, last*crashBatch)
	}
	for n := 0; n <= last; n++ {
		for i := range crashBatch {
			j, ok, err := s.Job(crashID(n, i))
			want := protocol.JobComplete
			if n == last {
				want = protocol.JobQueued
			}
			if err != nil || !ok || j.State != want {
				t.Fatalf("job %s = %s, %v, %v; want %s", crashID(n, i), j.State, ok, err, want)
			}
			wantKey(t, s, "k"+crashID(n, i), crashID(n, i))
		}
	}
	// The indexes survived too.
	prune(t, s, time.Time{}, 5, last*crashBatch-5)
}

func openBolt(t *testing.T, path string, opts BoltOptions) *Bolt {
	t.Helper()
	s, err := OpenBolt(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func closeBolt(t *testing.T, s *Bolt) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBolt_ReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", BoltFile) // made by OpenBolt
	s := openBolt(t, path, BoltOptions{})
	f := full("01A")
	finishedJobs(t, s, 3)
	put(t, s, f)
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "echo", FirstSeen: t0}}, Deletes: []string{"01F001"}})
	want := load(t, s, 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBolt(t, path, BoltOptions{})
	if got := load(t, s, 10); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen:\n %#v\nwant\n %#v", got, want)
	}
	wantJob(t, s, "01A", f)
	wantKey(t, s, f.Key, "01A")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode = %v, %v; want 0600", fi.Mode(), err)
	}
}

// A journal from before the service counters (no counts bucket) opens and
// loads as it is, gets the bucket with the first counters written, and
// keeps them across a reopen; check and recover read and copy them.
func TestBolt_ServiceCountsInAnOldJournal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, BoltFile)
	s := openBolt(t, path, BoltOptions{})
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "echo", FirstSeen: t0}, {Name: "idle", FirstSeen: t0}}})
	put(t, s, job("01A", protocol.JobComplete, t0))
	closeBolt(t, s)
	hasCounts := func() bool {
		t.Helper()
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		found := false
		_ = db.View(func(tx *bolt.Tx) error { found = tx.Bucket(bucketCounts) != nil; return nil })
		return found
	}
	if hasCounts() {
		t.Fatal("a journal without counters has a counts bucket: the test needs one from before them")
	}
	if rep, err := Check(path, BoltOptions{}); err != nil || rep.Services != 2 {
		t.Fatalf("Check(old journal) = %+v, %v", rep, err)
	}
	s = openBolt(t, path, BoltOptions{})
	if snap := load(t, s, 10); len(snap.Services) != 2 || snap.Counts != nil || len(snap.Finished) != 1 {
		t.Fatalf("old journal loads %+v", snap)
	}
	closeBolt(t, s)
	if hasCounts() {
		t.Fatal("opening an old journal wrote to it")
	}

	s = openBolt(t, path, BoltOptions{})
	commit(t, s, &Batch{Counts: []ServiceCounts{{Name: "echo", Completed: 41, Failed: 2}}})
	commit(t, s, &Batch{Counts: []ServiceCounts{{Name: "echo", Completed: 42, Failed: 3}}})
	closeBolt(t, s)
	want := []ServiceCounts{{Name: "echo", Completed: 42, Failed: 3}}
	s = openBolt(t, path, BoltOptions{})
	if got := load(t, s, 0).Counts; !reflect.DeepEqual(got, want) {
		t.Fatalf("Counts after reopen = %#v, want %#v", got, want)
	}
	closeBolt(t, s)
	if _, err := Check(path, BoltOptions{}); err != nil {
		t.Fatalf("Check(journal with counts) = %v", err)
	}
	to := filepath.Join(dir, "recovered.db")
	if rep, err := Salvage(path, to, BoltOptions{}); err != nil || rep.Saved != 1 || rep.Services != 2 {
		t.Fatalf("Salvage = %+v, %v", rep, err)
	}
	s = openBolt(t, to, BoltOptions{})
	if got := load(t, s, 0).Counts; !reflect.DeepEqual(got, want) {
		t.Fatalf("Counts of the recovered journal = %#v, want %#v", got, want)
	}
	closeBolt(t, s)

	// A counters record that does not decode is a corrupt journal, as a
	// service record is.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCounts).Put([]byte("echo"), []byte{9}) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(path, BoltOptions{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"echo"`) {
		t.Fatalf("Check(bad counters) = %v, want ErrCorrupt naming the service", err)
	}
	s = openBolt(t, path, BoltOptions{})
	if _, err := s.Load(0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load(bad counters) = %v, want ErrCorrupt", err)
	}
}

func TestBolt_PrunesInChunks(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), BoltFile), BoltOptions{})
	s.chunk = 3
	finishedJobs(t, s, 10)
	prune(t, s, time.Time{}, 2, 8)
	if got := finishedIDs(t, s); !reflect.DeepEqual(got, []string{"01F008", "01F009"}) {
		t.Fatalf("finished = %v", got)
	}
	prune(t, s, t0.Add(time.Hour), 0, 2)
}

// corruptRecord overwrites job id's record in the journal at path.
func corruptRecord(t *testing.T, path, id string, rec []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Put([]byte(id), rec) })
	if err != nil {
		t.Fatal(err)
	}
}

func TestBolt_CorruptRecordIsAClearError(t *testing.T) {
	good := appendRecord(nil, job("01A", protocol.JobQueued, time.Time{}))
	for name, rec := range map[string][]byte{
		"truncated":   good[:len(good)-3],
		"version":     append([]byte{99}, good[1:]...),
		"trailing":    append(good[:len(good):len(good)], 0),
		"other ID":    appendRecord(nil, job("01B", protocol.JobQueued, time.Time{})),
		"garbage":     []byte("{\"id\":\"01A\"}"),
		"empty value": {},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), BoltFile)
			s := openBolt(t, path, BoltOptions{})
			put(t, s, job("01A", protocol.JobQueued, time.Time{}), job("01C", protocol.JobQueued, time.Time{}))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			corruptRecord(t, path, "01A", rec)
			s = openBolt(t, path, BoltOptions{})
			_, err := s.Load(10)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"01A"`) {
				t.Fatalf("Load = %v; want ErrCorrupt naming %s and job 01A", err, path)
			}
			t.Log(err)
			if _, _, err := s.Job("01A"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Job = %v, want ErrCorrupt", err)
			}
			wantJob(t, s, "01C", job("01C", protocol.JobQueued, time.Time{}))
			// Overwriting a record reads its leading fields (state, key,
			// finish time); a damaged tail is simply replaced.
			if name == "version" || name == "garbage" || name == "empty value" {
				if err := s.Commit(&Batch{Jobs: []*JobRecord{job("01A", protocol.JobActive, time.Time{})}}); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Commit over a corrupt record = %v, want ErrCorrupt", err)
				}
			}
		})
	}
}

func TestBolt_NotAJournal(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bolt file\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(garbage, BoltOptions{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), garbage) {
		t.Fatalf("OpenBolt(garbage) = %v, want ErrCorrupt naming the file", err)
	} else {
		t.Log(err)
	}

	newer := filepath.Join(dir, "newer.db")
	openBolt(t, newer, BoltOptions{}).Close()
	db, err := bolt.Open(newer, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaFormat, []byte{formatV1 + 1}) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(newer, BoltOptions{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("OpenBolt(newer format) = %v, want ErrFormat", err)
	} else {
		t.Log(err)
	}
}

func TestBolt_LockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	openBolt(t, path, BoltOptions{})
	const timeout = 200 * time.Millisecond
	start := time.Now()
	_, err := OpenBolt(path, BoltOptions{Timeout: timeout})
	elapsed := time.Since(start)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "data dir in use by another process") {
		t.Fatalf("second OpenBolt = %v, want ErrLocked", err)
	}
	t.Logf("%v after %v", err, elapsed)
	if elapsed > timeout+2*time.Second {
		t.Fatalf("second OpenBolt took %v with a timeout of %v", elapsed, timeout)
	}
}

func TestBolt_UnwritablePath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory that is a file fails even for root.
	paths := []string{filepath.Join(file, BoltFile), filepath.Join(file, "sub", BoltFile)}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, filepath.Join(ro, BoltFile))
	}
	for _, p := range paths {
		_, err := OpenBolt(p, BoltOptions{})
		if err == nil || !strings.Contains(err.Error(), "store: open journal") {
			t.Fatalf("OpenBolt(%s) = %v, want an error", p, err)
		}
		t.Log(err)
	}
}

// TestBolt_FullDisk stands a MaxSize cap in for a full disk: the Commit that
// would grow the file fails with the cause, applies nothing, and the store
// keeps working for what fits.
func TestBolt_FullDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	s := openBolt(t, path, BoltOptions{MaxSize: 256 << 10})
	put(t, s, job("01A", protocol.JobQueued, time.Time{}))
	big := job("01B", protocol.JobComplete, t0)
	big.Output = make([]byte, 1<<20)
	err := s.Commit(&Batch{Jobs: []*JobRecord{job("01C", protocol.JobQueued, time.Time{}), big}})
	if !errors.Is(err, berrors.ErrMaxSizeReached) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Commit past MaxSize = %v, want ErrMaxSizeReached naming the file", err)
	}
	t.Log(err)
	wantJob(t, s, "01B", nil)
	wantJob(t, s, "01C", nil)
	put(t, s, job("01D", protocol.JobQueued, time.Time{}))
	if got := ids(load(t, s, 10).Jobs); !reflect.DeepEqual(got, []string{"01A", "01D"}) {
		t.Fatalf("open jobs = %v", got)
	}
}
