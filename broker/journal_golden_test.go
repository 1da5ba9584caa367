package broker

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var updateJournal = flag.Bool("journal.update", false, "TestTestJournal_Golden: rewrite testdata/journal.golden")

// TestTestJournal_Golden commits the batches of testdata/journal_batches.json
// to a testJournal and compares what it then answers with
// testdata/journal.golden, which store's TestMemory_MatchesBrokerJournal
// compares with store.Memory's answers: so the journal of the broker's
// tests keeps store.Memory's semantics (-journal.update rewrites it).
func TestTestJournal_Golden(t *testing.T) {
	in, err := os.ReadFile("testdata/journal_batches.json")
	if err != nil {
		t.Fatal(err)
	}
	var batches []Batch
	if err := json.Unmarshal(in, &batches); err != nil {
		t.Fatal(err)
	}
	j := newTestJournal()
	var got bytes.Buffer
	for i := range batches {
		err := j.Commit(&batches[i])
		s2, sAll := j.Load(2), j.Load(100)
		got.Write(journalDump(t, err, s2, sAll, j))
	}
	if *updateJournal {
		if err := os.WriteFile("testdata/journal.golden", got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/journal.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("testJournal differs from testdata/journal.golden:\ngot:\n%s\nwant:\n%s", got.Bytes(), want)
	}
}

// journalDump is one line of journal.golden: whether a commit failed,
// then Load(2), Load(100) and the lookups of the IDs and keys the batches
// use. store's test has its own copy: keep the two alike.
func journalDump(t *testing.T, err error, s2, sAll Snapshot, a Archive) []byte {
	t.Helper()
	type job struct {
		ID    string
		OK    bool
		Rec   *JobRecord `json:",omitempty"`
		Error bool       `json:",omitempty"`
	}
	type key struct {
		Key, ID string
		OK      bool
	}
	line := struct {
		Failed     bool
		Load2, All Snapshot
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
