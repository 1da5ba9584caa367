package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zmws/zmws/protocol"
)

func TestStore_ScheduleRecords(t *testing.T) {
	zone := time.FixedZone("CEST", 2*3600)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			a := ScheduleRecord{Name: "a", LastTick: t0.In(zone), LastJob: "01JQ0000000000000000000001"}
			b := ScheduleRecord{Name: "b", LastTick: time.Now()} // a monotonic reading
			commit(t, s, &Batch{Schedules: []ScheduleRecord{b, a}})
			want := []ScheduleRecord{{Name: "a", LastTick: t0.UTC(), LastJob: a.LastJob}, {Name: "b", LastTick: b.LastTick.Round(0).UTC()}}
			if got := load(t, s, 0).Schedules; !reflect.DeepEqual(got, want) {
				t.Fatalf("schedules %+v, want %+v", got, want)
			}
			// Upsert, a zero record deletes, deleting an absent one is no error.
			a2 := ScheduleRecord{Name: "a", LastTick: t0.Add(time.Second).UTC()}
			commit(t, s, &Batch{Schedules: []ScheduleRecord{a2, {Name: "b"}, {Name: "none"}}})
			if got := load(t, s, 0).Schedules; !reflect.DeepEqual(got, []ScheduleRecord{a2}) {
				t.Fatalf("schedules %+v, want %+v", got, a2)
			}
			// A batch refused for its jobs keeps no schedule record either:
			// a tick and its job are committed together or not at all.
			k1, k2 := job("01A", protocol.JobQueued, time.Time{}), job("01B", protocol.JobQueued, time.Time{})
			k1.Key, k2.Key = "k", "k"
			err := s.Commit(&Batch{Jobs: []*JobRecord{k1, k2}, Schedules: []ScheduleRecord{{Name: "a", LastTick: t0.Add(time.Hour)}}})
			if !errors.Is(err, ErrKeyConflict) {
				t.Fatalf("Commit = %v, want ErrKeyConflict", err)
			}
			if got := load(t, s, 0).Schedules; !reflect.DeepEqual(got, []ScheduleRecord{a2}) {
				t.Fatalf("after a refused batch: schedules %+v, want %+v", got, a2)
			}
			if err := s.Commit(&Batch{Schedules: []ScheduleRecord{{LastTick: t0}}}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Commit of a schedule without a name = %v, want ErrInvalid", err)
			}
		})
	}
}

// A journal from before the schedules (testdata/journal-v1.db has no
// schedules bucket) opens and loads with none, gets the bucket with the
// first record written, keeps it across a reopen, and Check and Salvage
// read and copy it.
func TestBolt_SchedulesInAnOldJournal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, BoltFile)
	copyFile(t, oldJournal, path)
	s := openBolt(t, path, BoltOptions{})
	if snap := load(t, s, 10); snap.Schedules != nil {
		t.Fatalf("old journal: schedules %+v, want none", snap.Schedules)
	}
	rec := ScheduleRecord{Name: "nightly", LastTick: t0.UTC(), LastJob: "01JQ0000000000000000000009"}
	commit(t, s, &Batch{Schedules: []ScheduleRecord{rec}})
	closeBolt(t, s)

	s = openBolt(t, path, BoltOptions{})
	snap := load(t, s, 10)
	if !reflect.DeepEqual(snap.Schedules, []ScheduleRecord{rec}) {
		t.Fatalf("after reopen: schedules %+v, want %+v", snap.Schedules, rec)
	}
	_, _, open, _ := oldRecords()
	if len(snap.Jobs) != len(open) {
		t.Fatalf("after reopen: %d open jobs, want %d", len(snap.Jobs), len(open))
	}
	closeBolt(t, s)

	if _, err := Check(path, BoltOptions{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	to := filepath.Join(dir, "saved.db")
	if _, err := Salvage(path, to, BoltOptions{}); err != nil {
		t.Fatalf("Salvage: %v", err)
	}
	s = openBolt(t, to, BoltOptions{})
	if got := load(t, s, 10).Schedules; !reflect.DeepEqual(got, []ScheduleRecord{rec}) {
		t.Fatalf("salvaged: schedules %+v, want %+v", got, rec)
	}
	closeBolt(t, s)
}

func TestBolt_CorruptScheduleRecordIsAClearError(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	s := openBolt(t, path, BoltOptions{})
	commit(t, s, &Batch{Schedules: []ScheduleRecord{{Name: "nightly", LastTick: t0}}})
	closeBolt(t, s)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketScheds).Put([]byte("nightly"), []byte{99}) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	s = openBolt(t, path, BoltOptions{})
	if _, err := s.Load(0); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `schedule "nightly"`) {
		t.Fatalf("Load = %v, want ErrCorrupt naming the schedule", err)
	}
	closeBolt(t, s)
}
