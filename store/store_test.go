package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
)

// The conformance suite: every Store implementation runs every test below.

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

// impls opens a fresh store of each implementation.
var impls = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"memory", func(t *testing.T) Store {
		s := NewMemory()
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
	{"bolt", func(t *testing.T) Store {
		s, err := OpenBolt(filepath.Join(t.TempDir(), BoltFile), BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
}

func TestStore(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"RoundTripsEveryField", testRoundTrip},
		{"UpsertOverwrites", testUpsert},
		{"Deletes", testDelete},
		{"IdempotencyKeysFollowRecords", testKeys},
		{"KeyConflictAppliesNothing", testKeyConflict},
		{"PrunesByAge", testPruneAge},
		{"PrunesByCount", testPruneCount},
		{"PrunesByBytes", testPruneBytes},
		{"PruneKeepsRequeuedJobs", testPruneRequeued},
		{"LoadsNewestFinished", testLoadFinished},
		{"Services", testServices},
		{"ServiceCounts", testCounts},
		{"RefusesInvalidRecords", testInvalid},
		{"KeepsNoReferenceToCallersRecords", testNoAliasing},
		{"Closed", testClosed},
		{"ConcurrentUse", testConcurrent},
	}
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.fn(t, im.open(t)) })
			}
		})
	}
}

// full returns a record with every field set, times in a non-UTC zone and
// carrying a monotonic reading.
func full(id string) *JobRecord {
	zone := time.FixedZone("CEST", 2*3600)
	mono := time.Now()
	code := 3
	return &JobRecord{
		ID: id, Service: "STR-REV", Sync: true, State: protocol.JobFailed,
		Params: map[string]string{"str": "Hello, world", "": "empty key", "n": ""},
		Input:  [][]byte{[]byte("frame one"), {}, nil, {0, 1, 2, 255}},
		Key:    "key-" + id,
		// Created carries a monotonic reading and a zone.
		Attempts: 2, Created: mono, Started: t0.In(zone), Finished: t0.Add(time.Second), Worker: "0a1b2c",
		ExitCode: &code, Code: protocol.CodeJobFailed, Error: "exit status 3: bad input",
		Output: []byte("partial\x00output"), Truncated: true,
		TTR: 90 * time.Second, Retries: 4, NotBefore: t0.Add(time.Minute).In(time.Local),
	}
}

// norm is j as a store returns it: times in UTC without a monotonic reading.
func norm(j JobRecord) JobRecord {
	for _, p := range []*time.Time{&j.Created, &j.Started, &j.Finished, &j.NotBefore} {
		*p = p.Round(0).UTC()
	}
	return j
}

// job returns a small record in state, finished at fin when it is finished.
func job(id, state string, fin time.Time) *JobRecord {
	j := &JobRecord{ID: id, Service: "echo", State: state, Created: t0,
		Params: map[string]string{"a": "1"}, Input: [][]byte{[]byte("in")}}
	if Finished(state) {
		j.Finished = fin
	}
	return j
}

func commit(t *testing.T, s Store, b *Batch) {
	t.Helper()
	if err := s.Commit(b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func put(t *testing.T, s Store, jobs ...*JobRecord) {
	t.Helper()
	commit(t, s, &Batch{Jobs: jobs})
}

func load(t *testing.T, s Store, finished int) Snapshot {
	t.Helper()
	snap, err := s.Load(finished)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return snap
}

func ids(jobs []JobRecord) []string {
	out := []string{}
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

// wantJob checks that id is retained as want.
func wantJob(t *testing.T, s Store, id string, want *JobRecord) {
	t.Helper()
	got, ok, err := s.Job(id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	if want == nil {
		if ok {
			t.Fatalf("Job(%s) = %+v, want none", id, got)
		}
		return
	}
	if !ok {
		t.Fatalf("Job(%s): not found", id)
	}
	if w := norm(*want); !reflect.DeepEqual(got, w) {
		t.Fatalf("Job(%s) =\n %#v\nwant\n %#v", id, got, w)
	}
}

func wantKey(t *testing.T, s Store, key, want string) {
	t.Helper()
	id, ok, err := s.JobByKey(key)
	if err != nil {
		t.Fatalf("JobByKey(%q): %v", key, err)
	}
	if id != want || ok != (want != "") {
		t.Fatalf("JobByKey(%q) = %q, %v; want %q", key, id, ok, want)
	}
}

func testRoundTrip(t *testing.T, s Store) {
	f := full("01A")
	zero := &JobRecord{ID: "01B", State: protocol.JobQueued} // every field zero or nil
	empty := &JobRecord{ID: "01C", State: protocol.JobActive, Params: map[string]string{},
		Input: [][]byte{}, Output: []byte{}, ExitCode: new(int)}
	emptyFrames := &JobRecord{ID: "01D", State: protocol.JobComplete, Input: [][]byte{{}, nil}}
	put(t, s, f, zero, empty, emptyFrames)

	snap := load(t, s, 10)
	want := []JobRecord{norm(*zero), norm(*empty)}
	if !reflect.DeepEqual(snap.Jobs, want) {
		t.Errorf("Load().Jobs =\n %#v\nwant\n %#v", snap.Jobs, want)
	}
	// emptyFrames finished at the zero time: before f.
	want = []JobRecord{norm(*emptyFrames), norm(*f)}
	if !reflect.DeepEqual(snap.Finished, want) {
		t.Errorf("Load().Finished =\n %#v\nwant\n %#v", snap.Finished, want)
	}
	for _, j := range []*JobRecord{f, zero, empty, emptyFrames} {
		wantJob(t, s, j.ID, j)
	}
	wantJob(t, s, "01Z", nil)
	got, _, _ := s.Job("01B")
	if got.Params != nil || got.Input != nil || got.Output != nil || got.ExitCode != nil {
		t.Errorf("nil fields came back non-nil: %#v", got)
	}
	got, _, _ = s.Job("01C")
	if got.Params == nil || got.Input == nil || got.Output == nil || got.ExitCode == nil || *got.ExitCode != 0 {
		t.Errorf("empty fields came back nil: %#v", got)
	}
	got, _, _ = s.Job("01D")
	if got.Input[0] == nil || got.Input[1] != nil {
		t.Errorf("Input frames = %#v, want [{} nil]", got.Input)
	}
}

func testUpsert(t *testing.T, s Store) {
	j := job("01A", protocol.JobQueued, time.Time{})
	put(t, s, j)
	active := *j
	active.State, active.Attempts, active.Started, active.Worker = protocol.JobActive, 1, t0, "w1"
	put(t, s, &active)
	wantJob(t, s, "01A", &active)
	if got := ids(load(t, s, 10).Jobs); !slices.Equal(got, []string{"01A"}) {
		t.Fatalf("open jobs = %v", got)
	}

	// Several versions in one batch: the last wins.
	done := active
	done.State, done.Finished, done.Output = protocol.JobComplete, t0.Add(time.Second), []byte("out")
	requeued := active
	requeued.State, requeued.Worker = protocol.JobQueued, ""
	put(t, s, &requeued, &done)
	wantJob(t, s, "01A", &done)
	snap := load(t, s, 10)
	if len(snap.Jobs) != 0 || !slices.Equal(ids(snap.Finished), []string{"01A"}) {
		t.Fatalf("Load: open %v, finished %v; want none and [01A]", ids(snap.Jobs), ids(snap.Finished))
	}

	// A finished job finishing again moves in the finish order.
	put(t, s, job("01B", protocol.JobFailed, t0.Add(2*time.Second)))
	again := done
	again.Finished = t0.Add(3 * time.Second)
	put(t, s, &again)
	if got := ids(load(t, s, 10).Finished); !slices.Equal(got, []string{"01B", "01A"}) {
		t.Fatalf("finished = %v, want [01B 01A]", got)
	}
	if n, err := s.Prune(time.Time{}, 1, 0); err != nil || n != 1 {
		t.Fatalf("Prune(keep 1) = %d, %v; want 1", n, err)
	}
	wantJob(t, s, "01A", &again)
	wantJob(t, s, "01B", nil)
}

func testDelete(t *testing.T, s Store) {
	a := job("01A", protocol.JobQueued, time.Time{})
	a.Key = "ka"
	b := job("01B", protocol.JobComplete, t0)
	b.Key = "kb"
	c := job("01C", protocol.JobActive, time.Time{})
	put(t, s, a, b, c)
	commit(t, s, &Batch{Deletes: []string{"01A", "01B", "01X"}})
	wantJob(t, s, "01A", nil)
	wantJob(t, s, "01B", nil)
	wantJob(t, s, "01C", c)
	wantKey(t, s, "ka", "")
	wantKey(t, s, "kb", "")
	snap := load(t, s, 10)
	if !slices.Equal(ids(snap.Jobs), []string{"01C"}) || len(snap.Finished) != 0 {
		t.Fatalf("Load: open %v, finished %v; want [01C] and none", ids(snap.Jobs), ids(snap.Finished))
	}
	// Upsert and delete of one job in one batch: deletes come last.
	commit(t, s, &Batch{Jobs: []*JobRecord{a}, Deletes: []string{"01A"}})
	wantJob(t, s, "01A", nil)
	wantKey(t, s, "ka", "")
	// A deleted job's key is free again.
	d := job("01D", protocol.JobQueued, time.Time{})
	d.Key = "kb"
	put(t, s, d)
	wantKey(t, s, "kb", "01D")
}

func testKeys(t *testing.T, s Store) {
	a := job("01A", protocol.JobQueued, time.Time{})
	a.Key = "k1"
	put(t, s, a, job("01B", protocol.JobQueued, time.Time{}))
	wantKey(t, s, "k1", "01A")
	wantKey(t, s, "k2", "")
	wantKey(t, s, "", "")

	// Same key again: no change. A new key moves the index.
	put(t, s, a)
	wantKey(t, s, "k1", "01A")
	a2 := *a
	a2.Key = "k2"
	put(t, s, &a2)
	wantKey(t, s, "k1", "")
	wantKey(t, s, "k2", "01A")
	// The key stays while the job is retained, finished too...
	a3 := a2
	a3.State, a3.Finished = protocol.JobComplete, t0
	put(t, s, &a3)
	wantKey(t, s, "k2", "01A")
	// ...and goes when Prune removes it.
	if n, err := s.Prune(t0.Add(time.Second), 0, 0); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	wantKey(t, s, "k2", "")
	// A key removed from a record.
	b := job("01C", protocol.JobQueued, time.Time{})
	b.Key = "k3"
	put(t, s, b)
	b2 := *b
	b2.Key = ""
	put(t, s, &b2)
	wantKey(t, s, "k3", "")
}

func testKeyConflict(t *testing.T, s Store) {
	a := job("01A", protocol.JobQueued, time.Time{})
	a.Key = "k"
	put(t, s, a)
	b := job("01B", protocol.JobQueued, time.Time{})
	b.Key = "k"
	other := job("01C", protocol.JobQueued, time.Time{})
	otherKeyed := job("01D", protocol.JobQueued, time.Time{})
	otherKeyed.Key = "k2"
	a2 := *a
	a2.Key = "k9" // would free "k", but b comes first
	err := s.Commit(&Batch{Jobs: []*JobRecord{other, otherKeyed, b, &a2},
		Deletes: []string{"01A"}, Services: []ServiceRecord{{Name: "x"}}})
	if !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("Commit = %v, want ErrKeyConflict", err)
	}
	wantJob(t, s, "01A", a)
	wantJob(t, s, "01B", nil)
	wantJob(t, s, "01C", nil)
	wantJob(t, s, "01D", nil)
	wantKey(t, s, "k", "01A")
	wantKey(t, s, "k2", "")
	wantKey(t, s, "k9", "")
	if snap := load(t, s, 0); len(snap.Services) != 0 || len(snap.Jobs) != 1 {
		t.Fatalf("after a failed commit: %d services, %d jobs; want 0, 1", len(snap.Services), len(snap.Jobs))
	}
	// Two new jobs with one key in one batch.
	c, d := job("01E", protocol.JobQueued, time.Time{}), job("01F", protocol.JobQueued, time.Time{})
	c.Key, d.Key = "same", "same"
	if err := s.Commit(&Batch{Jobs: []*JobRecord{c, d}}); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("Commit = %v, want ErrKeyConflict", err)
	}
	wantKey(t, s, "same", "")
	// Freeing the key earlier in the batch lets a later job take it.
	put(t, s, &a2, b)
	wantKey(t, s, "k", "01B")
	wantKey(t, s, "k9", "01A")
}

// finishedJobs commits n complete jobs 01F000.. finished one second apart,
// and a queued and an active job that are older still.
func finishedJobs(t *testing.T, s Store, n int) {
	t.Helper()
	var b Batch
	for i := range n {
		b.Jobs = append(b.Jobs, job(fmt.Sprintf("01F%03d", i), protocol.JobComplete, t0.Add(time.Duration(i)*time.Second)))
	}
	q := job("01Q", protocol.JobQueued, time.Time{})
	q.Created, q.Finished = t0.Add(-time.Hour), t0.Add(-time.Hour) // Finished is ignored
	a := job("01R", protocol.JobActive, time.Time{})
	a.Created = t0.Add(-time.Hour)
	b.Jobs = append(b.Jobs, q, a)
	commit(t, s, &b)
}

func finishedIDs(t *testing.T, s Store) []string {
	t.Helper()
	snap := load(t, s, 1<<20)
	if got := ids(snap.Jobs); !slices.Equal(got, []string{"01Q", "01R"}) {
		t.Fatalf("open jobs = %v, want [01Q 01R]", got)
	}
	return ids(snap.Finished)
}

func prune(t *testing.T, s Store, olderThan time.Time, keep, want int) {
	t.Helper()
	pruneBytes(t, s, olderThan, keep, 0, want)
}

func pruneBytes(t *testing.T, s Store, olderThan time.Time, keep int, maxBytes int64, want int) {
	t.Helper()
	n, err := s.Prune(olderThan, keep, maxBytes)
	if err != nil || n != want {
		t.Fatalf("Prune(%v, %d, %d) = %d, %v; want %d", olderThan, keep, maxBytes, n, err, want)
	}
}

func testPruneAge(t *testing.T, s Store) {
	finishedJobs(t, s, 10)
	prune(t, s, time.Time{}, 0, 0)
	prune(t, s, t0.Add(-time.Hour), 0, 0)
	// Finished at 0..4 s are before 4.5 s; the one at exactly 5 s is not before 5 s.
	prune(t, s, t0.Add(4500*time.Millisecond), 0, 5)
	prune(t, s, t0.Add(5*time.Second), 0, 0)
	if got, want := finishedIDs(t, s), []string{"01F005", "01F006", "01F007", "01F008", "01F009"}; !slices.Equal(got, want) {
		t.Fatalf("finished = %v, want %v", got, want)
	}
	wantJob(t, s, "01F004", nil)
	prune(t, s, t0.Add(time.Hour), 0, 5)
	if got := finishedIDs(t, s); len(got) != 0 {
		t.Fatalf("finished = %v, want none", got)
	}
}

func testPruneCount(t *testing.T, s Store) {
	finishedJobs(t, s, 10)
	prune(t, s, time.Time{}, 20, 0)
	prune(t, s, time.Time{}, 10, 0)
	prune(t, s, time.Time{}, 7, 3)
	// Both bounds: the count keeps 5, the age only 2 of them.
	prune(t, s, t0.Add(8*time.Second), 5, 5)
	if got, want := finishedIDs(t, s), []string{"01F008", "01F009"}; !slices.Equal(got, want) {
		t.Fatalf("finished = %v, want %v", got, want)
	}
	// Ties in finish time order by ID.
	put(t, s, job("01F100", protocol.JobFailed, t0.Add(9*time.Second)), job("01F000", protocol.JobFailed, t0.Add(9*time.Second)))
	prune(t, s, time.Time{}, 2, 2)
	if got, want := finishedIDs(t, s), []string{"01F009", "01F100"}; !slices.Equal(got, want) {
		t.Fatalf("finished = %v, want %v", got, want)
	}
}

// finishedBytes returns the stored bytes of the retained finished jobs and
// their IDs, oldest first.
func finishedBytes(t *testing.T, s Store) (int64, []string) {
	t.Helper()
	snap := load(t, s, 1<<20)
	var n int64
	for i := range snap.Finished {
		n += int64(len(appendRecord(nil, &snap.Finished[i])))
	}
	return n, ids(snap.Finished)
}

func testPruneBytes(t *testing.T, s Store) {
	// Ten finished jobs, 01F000 oldest, with outputs of 1 to 10 KiB: the
	// newest are the largest.
	var b Batch
	size := make([]int64, 10)
	for i := range 10 {
		j := job(fmt.Sprintf("01F%03d", i), protocol.JobComplete, t0.Add(time.Duration(i)*time.Second))
		j.Output = bytes.Repeat([]byte{'x'}, (i+1)<<10)
		size[i] = int64(len(appendRecord(nil, j)))
		b.Jobs = append(b.Jobs, j)
	}
	q := job("01Q", protocol.JobQueued, time.Time{})
	q.Input = [][]byte{bytes.Repeat([]byte{'q'}, 64<<10)} // open jobs are not counted, nor pruned
	b.Jobs = append(b.Jobs, q)
	commit(t, s, &b)
	var all int64
	for _, n := range size {
		all += n
	}
	pruneBytes(t, s, time.Time{}, 0, all, 0)
	// One byte less: the oldest goes, and only it.
	pruneBytes(t, s, time.Time{}, 0, all-1, 1)
	if got, ids := finishedBytes(t, s); got != all-size[0] || ids[0] != "01F001" {
		t.Fatalf("after Prune(bytes %d): %d bytes, %v", all-1, got, ids)
	}
	// The three newest fit in size[7]+size[8]+size[9] (and a byte more);
	// the four newest do not.
	bound := size[7] + size[8] + size[9] + 1
	pruneBytes(t, s, time.Time{}, 0, bound, 6)
	got, left := finishedBytes(t, s)
	if got > bound || !slices.Equal(left, []string{"01F007", "01F008", "01F009"}) {
		t.Fatalf("after Prune(bytes %d): %d bytes in %v; want at most %d in [01F007 01F008 01F009]", bound, got, left, bound)
	}
	// The count bound and the bytes bound together: the tighter wins.
	pruneBytes(t, s, time.Time{}, 1, 1<<30, 2)
	pruneBytes(t, s, time.Time{}, 5, 1<<30, 0)
	// A bound smaller than the newest job alone removes it too.
	pruneBytes(t, s, time.Time{}, 0, size[9]-1, 1)
	if got, left := finishedBytes(t, s); got != 0 || len(left) != 0 {
		t.Fatalf("after Prune(bytes %d): %d bytes in %v; want none", size[9]-1, got, left)
	}
	wantJob(t, s, "01Q", q)
}

func testPruneRequeued(t *testing.T, s Store) {
	finishedJobs(t, s, 3)
	// A failed job retried by hand goes back to the queue: no longer finished.
	r := job("01F001", protocol.JobQueued, time.Time{})
	r.Attempts = 1
	put(t, s, r)
	prune(t, s, t0.Add(time.Hour), 0, 2)
	wantJob(t, s, "01F001", r)
	if got := ids(load(t, s, 10).Jobs); !slices.Equal(got, []string{"01F001", "01Q", "01R"}) {
		t.Fatalf("open jobs = %v", got)
	}
}

func testLoadFinished(t *testing.T, s Store) {
	finishedJobs(t, s, 5)
	for _, tt := range []struct {
		n    int
		want []string
	}{
		{-1, []string{}},
		{0, []string{}},
		{2, []string{"01F003", "01F004"}},
		{9, []string{"01F000", "01F001", "01F002", "01F003", "01F004"}},
	} {
		snap := load(t, s, tt.n)
		if got := ids(snap.Finished); !slices.Equal(got, tt.want) {
			t.Errorf("Load(%d).Finished = %v, want %v", tt.n, got, tt.want)
		}
		if got := ids(snap.Jobs); !slices.Equal(got, []string{"01Q", "01R"}) {
			t.Errorf("Load(%d).Jobs = %v", tt.n, got)
		}
	}
}

func testServices(t *testing.T, s Store) {
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "b", FirstSeen: t0}, {Name: "a", FirstSeen: t0.Add(time.Second).In(time.Local)}}})
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "b", FirstSeen: t0.Add(time.Hour)}}})
	want := []ServiceRecord{{Name: "a", FirstSeen: t0.Add(time.Second)}, {Name: "b", FirstSeen: t0.Add(time.Hour)}}
	if got := load(t, s, 0).Services; !reflect.DeepEqual(got, want) {
		t.Fatalf("Services = %#v, want %#v", got, want)
	}
	// Forgotten: gone from the next Load; forgetting an unknown one is fine.
	commit(t, s, &Batch{Forgets: []string{"a", "nope"}})
	if got := load(t, s, 0).Services; !reflect.DeepEqual(got, want[1:]) {
		t.Fatalf("after forgetting a: Services = %#v, want %#v", got, want[1:])
	}
}

func testCounts(t *testing.T, s Store) {
	if got := load(t, s, 0).Counts; got != nil {
		t.Fatalf("Counts of a new store = %#v, want none", got)
	}
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "a", FirstSeen: t0}, {Name: "b", FirstSeen: t0}, {Name: "c", FirstSeen: t0}},
		Counts: []ServiceCounts{{Name: "b", Completed: 2, Failed: 1}, {Name: "a", Completed: 5, Failed: 0}, {Name: "c", Completed: 1, Failed: 1}}})
	// Upserts replace; zero deletes; counts of a service the store does
	// not know are kept back from Load.
	commit(t, s, &Batch{Counts: []ServiceCounts{{Name: "a", Completed: 7, Failed: 3}, {Name: "c", Completed: 0, Failed: 0}, {Name: "nope", Completed: 1, Failed: 1}}})
	want := []ServiceCounts{{Name: "a", Completed: 7, Failed: 3}, {Name: "b", Completed: 2, Failed: 1}}
	if got := load(t, s, 0).Counts; !reflect.DeepEqual(got, want) {
		t.Fatalf("Counts = %#v, want %#v", got, want)
	}
	// Forgetting a service forgets its counts, also against an upsert of
	// the same batch; a service known again starts from none.
	commit(t, s, &Batch{Counts: []ServiceCounts{{Name: "b", Completed: 9, Failed: 9}}, Forgets: []string{"b"}})
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "b", FirstSeen: t0}}})
	if got := load(t, s, 0).Counts; !reflect.DeepEqual(got, want[:1]) {
		t.Fatalf("after forgetting b: Counts = %#v, want %#v", got, want[:1])
	}
	if err := s.Commit(&Batch{Counts: []ServiceCounts{{Name: "a", Completed: 8, Failed: 3}, {Name: "", Completed: 1, Failed: 0}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("counts without a name: %v, want ErrInvalid", err)
	}
	if got := load(t, s, 0).Counts; !reflect.DeepEqual(got, want[:1]) {
		t.Fatalf("after an invalid batch: Counts = %#v, want %#v", got, want[:1])
	}
}

func testInvalid(t *testing.T, s Store) {
	ok := job("01A", protocol.JobQueued, time.Time{})
	long := string(make([]byte, MaxKeyLen+1))
	for name, b := range map[string]*Batch{
		"no ID":        {Jobs: []*JobRecord{ok, {State: protocol.JobQueued}}},
		"nil job":      {Jobs: []*JobRecord{ok, nil}},
		"bad state":    {Jobs: []*JobRecord{ok, {ID: "01B", State: "done"}}},
		"long key":     {Jobs: []*JobRecord{ok, {ID: "01B", State: protocol.JobQueued, Key: long}}},
		"long ID":      {Jobs: []*JobRecord{ok, {ID: long, State: protocol.JobQueued}}},
		"no service":   {Jobs: []*JobRecord{ok}, Services: []ServiceRecord{{}}},
		"empty delete": {Jobs: []*JobRecord{ok}, Deletes: []string{""}},
	} {
		if err := s.Commit(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Commit = %v, want ErrInvalid", name, err)
		}
	}
	wantJob(t, s, "01A", nil)
	if err := s.Commit(nil); err != nil {
		t.Errorf("Commit(nil) = %v", err)
	}
	if err := s.Commit(&Batch{}); err != nil {
		t.Errorf("Commit(empty) = %v", err)
	}
}

func testNoAliasing(t *testing.T, s Store) {
	j := full("01A")
	want := *j
	want.Params = map[string]string{"str": "Hello, world", "": "empty key", "n": ""}
	want.Input = [][]byte{[]byte("frame one"), {}, nil, {0, 1, 2, 255}}
	want.Output = []byte("partial\x00output")
	code := *j.ExitCode
	want.ExitCode = &code
	put(t, s, j)
	j.Params["str"] = "changed"
	j.Input[0][0] = 'X'
	j.Output[0] = 'X'
	*j.ExitCode = 99
	wantJob(t, s, "01A", &want)
	got, _, _ := s.Job("01A")
	got.Output[0] = 'Y'
	got.Params["new"] = "y"
	wantJob(t, s, "01A", &want)
}

func testClosed(t *testing.T, s Store) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	j := job("01A", protocol.JobQueued, time.Time{})
	errs := map[string]error{"Commit": s.Commit(&Batch{Jobs: []*JobRecord{j}}), "Commit(empty)": s.Commit(&Batch{})}
	_, errs["Load"] = s.Load(1)
	_, _, errs["Job"] = s.Job("01A")
	_, _, errs["JobByKey"] = s.JobByKey("k")
	_, errs["Prune"] = s.Prune(t0, 1, 0)
	for name, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// testConcurrent commits, prunes and reads on several goroutines; the race
// detector checks the rest.
func testConcurrent(t *testing.T, s Store) {
	const writers, batches = 3, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range batches {
				j := job(fmt.Sprintf("01W%d-%03d", w, i), protocol.JobComplete, t0.Add(time.Duration(i)*time.Second))
				j.Key = j.ID
				if err := s.Commit(&Batch{Jobs: []*JobRecord{j}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range batches {
			if _, err := s.Prune(time.Time{}, 5, 0); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Load(3); err != nil {
				t.Error(err)
				return
			}
			if _, _, err := s.Job("01W0-001"); err != nil {
				t.Error(err)
				return
			}
			if _, _, err := s.JobByKey("01W1-001"); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	left := len(load(t, s, 1<<20).Finished)
	prune(t, s, time.Time{}, 5, max(0, left-5))
	if got := len(load(t, s, 1<<20).Finished); got != 5 {
		t.Fatalf("%d finished jobs after Prune(keep 5)", got)
	}
}
