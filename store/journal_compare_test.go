package store_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/store"
)

// TestMemory_MatchesBrokerJournal commits the batches of
// broker/testdata/journal_batches.json to a Memory and compares what it
// then answers with broker/testdata/journal.golden, which the broker's
// TestTestJournal_Golden compares with the journal of its own tests (a
// testJournal: package broker's tests cannot import store). Both agree, so
// the broker's random-sequence test commits as store.Memory would.
func TestMemory_MatchesBrokerJournal(t *testing.T) {
	in, err := os.ReadFile("../broker/testdata/journal_batches.json")
	if err != nil {
		t.Fatal(err)
	}
	var batches []broker.Batch
	if err := json.Unmarshal(in, &batches); err != nil {
		t.Fatal(err)
	}
	m := store.NewMemory()
	var got bytes.Buffer
	for i := range batches {
		err := m.Commit(&batches[i])
		s2, err2 := m.Load(2)
		sAll, err3 := m.Load(100)
		if err2 != nil || err3 != nil {
			t.Fatalf("batch %d: Load: %v, %v", i, err2, err3)
		}
		got.Write(journalDump(t, err, s2, sAll, m))
	}
	want, err := os.ReadFile("../broker/testdata/journal.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("Memory differs from broker/testdata/journal.golden:\ngot:\n%s\nwant:\n%s", got.Bytes(), want)
	}
}

// journalDump is broker's journalDump (broker/journal_golden_test.go):
// keep the two alike.
func journalDump(t *testing.T, err error, s2, sAll broker.Snapshot, a broker.Archive) []byte {
	t.Helper()
	type job struct {
		ID    string
		OK    bool
		Rec   *broker.JobRecord `json:",omitempty"`
		Error bool              `json:",omitempty"`
	}
	type key struct {
		Key, ID string
		OK      bool
	}
	line := struct {
		Failed     bool
		Load2, All broker.Snapshot
		Jobs       []job
		Keys       []key
	}{Failed: err != nil, Load2: s2, All: sAll}
	for _, id := range []string{"J1", "J2", "J3", "J4", "J5", "J6", "J7", "J8", "NOSUCH"} {
		rec, ok, err := a.Job(id)
		x := job{ID: id, OK: ok, Error: err != nil}
		if ok {
			x.Rec = &rec
		}
		line.Jobs = append(line.Jobs, x)
	}
	for _, k := range []string{"k1", "k3", "k7", "kx"} {
		id, ok, _ := a.JobByKey(k)
		line.Keys = append(line.Keys, key{k, id, ok})
	}
	out, err := json.Marshal(line)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}
