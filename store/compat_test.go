package store

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zmws/zmws/protocol"
)

// updateJournal rewrites testdata/journal-v1.db. It was run once, by the
// code that wrote journals before the broker owned the record types; the
// fixture is not to be rewritten, or the test no longer shows anything.
var updateJournal = flag.Bool("update-journal", false, "rewrite testdata/journal-v1.db (never: it stands for journals already on disk)")

const oldJournal = "testdata/journal-v1.db"

// oldRecords are the records in the fixture journal.
func oldRecords() (services []ServiceRecord, counts []ServiceCounts, open, finished []JobRecord) {
	code := 3
	c0 := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	services = []ServiceRecord{{Name: "STR-REV", FirstSeen: c0}, {Name: "idle", FirstSeen: c0.Add(time.Minute)}}
	counts = []ServiceCounts{{Name: "STR-REV", Completed: 41, Failed: 2}}
	open = []JobRecord{
		{ID: "01JQ0000000000000000000001", Service: "STR-REV", State: protocol.JobQueued, Params: map[string]string{"str": "Hello"},
			Input: [][]byte{[]byte("frame"), {}, nil}, Key: "owner|k1", Owner: "owner", Created: c0, TTR: 90 * time.Second, Retries: 2,
			NotBefore: c0.Add(3 * time.Second)},
		{ID: "01JQ0000000000000000000002", Service: "STR-REV", State: protocol.JobActive, Attempts: 1, Created: c0,
			Started: c0.Add(time.Second), Worker: "\x00\x01w", Retries: -1},
	}
	finished = []JobRecord{
		{ID: "01JQ0000000000000000000003", Service: "STR-REV", Sync: true, State: protocol.JobFailed, Params: map[string]string{},
			Attempts: 2, Created: c0, Started: c0.Add(time.Second), Finished: c0.Add(2 * time.Second), Worker: "w2",
			ExitCode: &code, Code: protocol.CodeJobFailed, Error: "exit status 3", Output: []byte("partial\x00out"), Truncated: true},
		{ID: "01JQ0000000000000000000004", Service: "STR-REV", State: protocol.JobComplete, Key: "k2", Created: c0,
			Started: c0.Add(time.Second), Finished: c0.Add(4 * time.Second), Output: []byte("olleH")},
	}
	return services, counts, open, finished
}

func writeOldJournal(t *testing.T) {
	services, counts, open, finished := oldRecords()
	if err := os.Remove(oldJournal); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	s := openBolt(t, oldJournal, BoltOptions{})
	b := &Batch{Services: services, Counts: counts}
	for i := range open {
		b.Jobs = append(b.Jobs, &open[i])
	}
	for i := range finished {
		b.Jobs = append(b.Jobs, &finished[i])
	}
	commit(t, s, b)
	closeBolt(t, s)
	// The data dir's marker is not part of the fixture.
	_ = os.Remove(markerPath(oldJournal))
}

// A journal written by an older zmws (testdata/journal-v1.db) opens and
// restores unchanged, and each stored record is byte for byte what this
// code encodes for it: the record layout has not moved.
func TestBolt_OldJournalRestoresUnchanged(t *testing.T) {
	if *updateJournal {
		writeOldJournal(t)
	}
	path := filepath.Join(t.TempDir(), BoltFile)
	copyFile(t, oldJournal, path)
	services, counts, open, finished := oldRecords()

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range append(append([]JobRecord{}, open...), finished...) {
		var stored []byte
		_ = db.View(func(tx *bolt.Tx) error {
			stored = append(stored, tx.Bucket(bucketJobs).Get([]byte(j.ID))...)
			return nil
		})
		if got := appendRecord(nil, &j); string(got) != string(stored) {
			t.Errorf("job %s encodes to\n %x\nthe old journal holds\n %x", j.ID, got, stored)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openBolt(t, path, BoltOptions{})
	snap := load(t, s, 10)
	want := Snapshot{Services: services, Counts: counts, Jobs: open, Finished: finished}
	if !reflect.DeepEqual(snap, want) {
		t.Fatalf("old journal loads\n %#v\nwant\n %#v", snap, want)
	}
	wantJob(t, s, finished[1].ID, &finished[1])
	wantKey(t, s, "owner|k1", open[0].ID)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// A scheduled job with a priority is an open job: it is loaded back with
// its time and priority, and a journal from before priorities (above)
// loads every job at priority 0.
func TestBolt_ScheduledJobWithPriority(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), BoltFile), BoltOptions{})
	c0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	j := JobRecord{ID: "01JQ0000000000000000000009", Service: "S", State: protocol.JobScheduled, Created: c0,
		NotBefore: c0.Add(time.Hour), Retries: -1, Priority: 10}
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "S", FirstSeen: c0}}, Jobs: []*JobRecord{&j}})
	snap := load(t, s, 10)
	if len(snap.Jobs) != 1 || !reflect.DeepEqual(snap.Jobs[0], j) || len(snap.Finished) != 0 {
		t.Fatalf("loaded %#v, want the scheduled job %#v", snap, j)
	}
}
