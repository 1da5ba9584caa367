package broker

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/zmws/zmws/protocol"
)

// testJournal is a journal in memory for the broker's own tests, which
// cannot import package store (store imports broker). It applies a Batch
// as store.Memory does: upserts of whole jobs (the last record of a job
// wins), then deletes, then services, then counters (zeros delete), then
// forgets, then schedules' last ticks (zeros delete); a job whose idempotency key names another job refuses the whole
// batch. Records are copied in and out, as an encoding would, so nil and
// empty stay distinct, times come back in UTC without a monotonic
// reading, and a caller's later changes never reach it. Not safe for
// concurrent use: the tests call it from one goroutine.
type testJournal struct {
	services map[string]ServiceRecord
	counts   map[string]ServiceCounts
	jobs     map[string]JobRecord
	keys     map[string]string // idempotency key → job ID
	scheds   map[string]ScheduleRecord
}

var _ Archive = (*testJournal)(nil)

var errJournalKeyConflict = errors.New("journal: idempotency key names another job")

func newTestJournal() *testJournal {
	return &testJournal{
		services: map[string]ServiceRecord{},
		counts:   map[string]ServiceCounts{},
		jobs:     map[string]JobRecord{},
		keys:     map[string]string{},
		scheds:   map[string]ScheduleRecord{},
	}
}

// Commit applies b: all of it, or on error none of it.
func (t *testJournal) Commit(b *Batch) error {
	if b == nil || b.Len() == 0 {
		return nil
	}
	for _, j := range b.Jobs {
		if j == nil || j.ID == "" {
			return fmt.Errorf("commit: invalid job record %v", j)
		}
		switch j.State {
		case protocol.JobScheduled, protocol.JobQueued, protocol.JobActive, protocol.JobComplete, protocol.JobFailed:
		default:
			return fmt.Errorf("commit: job %s: unknown state %q", j.ID, j.State)
		}
	}
	// Check the keys as the upserts go, on copies of the key index, so a
	// refused batch changes nothing.
	keys, owners := maps.Clone(t.keys), map[string]string{} // owners: job ID → its key, as of this batch
	keyOf := func(id string) string {
		if k, ok := owners[id]; ok {
			return k
		}
		return t.jobs[id].Key
	}
	for _, j := range b.Jobs {
		if j.Key != "" {
			if owner, ok := keys[j.Key]; ok && owner != j.ID {
				return fmt.Errorf("commit: %w: job %s: key %q names job %s", errJournalKeyConflict, j.ID, j.Key, owner)
			}
		}
		if old := keyOf(j.ID); old != "" && old != j.Key {
			delete(keys, old)
		}
		if j.Key != "" {
			keys[j.Key] = j.ID
		}
		owners[j.ID] = j.Key
	}
	t.keys = keys
	for _, j := range b.Jobs {
		t.jobs[j.ID] = copyRecord(j)
	}
	for _, id := range b.Deletes {
		old, ok := t.jobs[id]
		if !ok {
			continue
		}
		delete(t.jobs, id)
		if old.Key != "" && t.keys[old.Key] == id {
			delete(t.keys, old.Key)
		}
	}
	for _, s := range b.Services {
		s.FirstSeen = s.FirstSeen.UTC().Round(0)
		t.services[s.Name] = s
	}
	for _, c := range b.Counts {
		if c.Completed == 0 && c.Failed == 0 {
			delete(t.counts, c.Name)
		} else {
			t.counts[c.Name] = c
		}
	}
	for _, name := range b.Forgets {
		delete(t.services, name)
		delete(t.counts, name)
	}
	for _, r := range b.Schedules {
		if r.LastTick.IsZero() {
			delete(t.scheds, r.Name)
			continue
		}
		r.LastTick = r.LastTick.UTC().Round(0)
		t.scheds[r.Name] = r
	}
	return nil
}

// Load returns the services, the counters of those, the unfinished jobs by
// ID and the newest finished ones, oldest first by finish time then ID.
func (t *testJournal) Load(finished int) Snapshot {
	var s Snapshot
	for _, sv := range t.services {
		s.Services = append(s.Services, sv)
	}
	slices.SortFunc(s.Services, func(a, b ServiceRecord) int { return cmp.Compare(a.Name, b.Name) })
	for name, c := range t.counts {
		if _, ok := t.services[name]; ok {
			s.Counts = append(s.Counts, c)
		}
	}
	slices.SortFunc(s.Counts, func(a, b ServiceCounts) int { return cmp.Compare(a.Name, b.Name) })
	for _, r := range t.scheds {
		s.Schedules = append(s.Schedules, r)
	}
	slices.SortFunc(s.Schedules, func(a, b ScheduleRecord) int { return cmp.Compare(a.Name, b.Name) })
	var done []JobRecord
	for _, j := range t.jobs {
		if journalFinished(j.State) {
			done = append(done, j)
		} else {
			s.Jobs = append(s.Jobs, copyRecord(&j))
		}
	}
	slices.SortFunc(s.Jobs, func(a, b JobRecord) int { return cmp.Compare(a.ID, b.ID) })
	if finished > 0 {
		slices.SortFunc(done, func(a, b JobRecord) int {
			return cmp.Or(cmp.Compare(finishNanos(a.Finished), finishNanos(b.Finished)), cmp.Compare(a.ID, b.ID))
		})
		for _, j := range done[max(0, len(done)-finished):] {
			s.Finished = append(s.Finished, copyRecord(&j))
		}
	}
	return s
}

// Job returns the retained job with this ID.
func (t *testJournal) Job(id string) (JobRecord, bool, error) {
	j, ok := t.jobs[id]
	if !ok {
		return JobRecord{}, false, nil
	}
	return copyRecord(&j), true, nil
}

// JobByKey returns the ID of the retained job with this idempotency key.
func (t *testJournal) JobByKey(key string) (string, bool, error) {
	id, ok := t.keys[key]
	return id, ok, nil
}

// journalFinished is store.Finished.
func journalFinished(state string) bool {
	return state == protocol.JobComplete || state == protocol.JobFailed
}

// finishNanos orders finished jobs as store's finish-time index does:
// nanoseconds since the epoch, clamped to [1970, 2262].
func finishNanos(t time.Time) int64 {
	switch s := t.Unix(); {
	case s < 0:
		return 0
	case s >= (1<<63-1)/int64(time.Second):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// copyRecord is j as a journal returns it: shares no memory with j, nil
// and empty kept apart, times in UTC without a monotonic reading.
func copyRecord(j *JobRecord) JobRecord {
	r := *j
	r.Params = maps.Clone(j.Params)
	if j.Input != nil {
		r.Input = make([][]byte, len(j.Input))
		for i, f := range j.Input {
			r.Input[i] = bytes.Clone(f)
		}
	}
	r.Output = bytes.Clone(j.Output)
	if j.ExitCode != nil {
		c := *j.ExitCode
		r.ExitCode = &c
	}
	for _, p := range []*time.Time{&r.Created, &r.Started, &r.Finished, &r.NotBefore} {
		*p = p.UTC().Round(0)
	}
	return r
}
