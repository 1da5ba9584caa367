package store

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is a Store in memory: for a broker without a data dir, and for
// tests. It keeps each record encoded as Bolt does, so both return the same
// values (nil stays nil, times come back in UTC) and a caller's later
// changes to a committed record never reach the store. Its methods are safe
// for concurrent use; they serialize on one mutex. Prune sorts the finished
// jobs, O(n log n) in the retained jobs.
type Memory struct {
	mu       sync.Mutex
	closed   bool
	services map[string]ServiceRecord
	counts   map[string]ServiceCounts
	scheds   map[string]ScheduleRecord
	jobs     map[string]*memJob
	keys     map[string]string // idempotency key → job ID
	buf      []byte            // Commit's encoding buffer
}

// memJob is a retained job: its encoded record and the fields the indexes
// follow.
type memJob struct {
	rec      []byte
	state    string
	key      string
	finished time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{
		services: make(map[string]ServiceRecord),
		counts:   make(map[string]ServiceCounts),
		scheds:   make(map[string]ScheduleRecord),
		jobs:     make(map[string]*memJob),
		keys:     make(map[string]string),
	}
}

// Commit applies b atomically. It never touches a disk: a nil error means
// only that b is applied.
func (m *Memory) Commit(b *Batch) error {
	if b == nil || b.Len() == 0 {
		if err := m.ifOpen(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	if err := validate(b); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("commit: %w", ErrClosed)
	}
	var u memUndo
	for _, j := range b.Jobs {
		if err := m.put(&u, j); err != nil {
			m.rollback(&u)
			return fmt.Errorf("commit: %w", err)
		}
	}
	for _, id := range b.Deletes {
		m.delete(&u, id)
	}
	for _, s := range b.Services {
		s.FirstSeen = s.FirstSeen.UTC().Round(0)
		m.services[s.Name] = s
	}
	for _, c := range b.Counts {
		if c.Completed == 0 && c.Failed == 0 {
			delete(m.counts, c.Name)
		} else {
			m.counts[c.Name] = c
		}
	}
	for _, name := range b.Forgets {
		delete(m.services, name)
		delete(m.counts, name)
	}
	for _, r := range b.Schedules {
		if r.LastTick.IsZero() {
			delete(m.scheds, r.Name)
			continue
		}
		r.LastTick = r.LastTick.UTC().Round(0)
		m.scheds[r.Name] = r
	}
	return nil
}

// memUndo remembers what a Commit changed, newest last, to roll it back on
// error. A nil *memUndo remembers nothing.
type memUndo struct {
	jobs []memPrevJob
	keys []memPrevKey
}

type memPrevJob struct {
	id   string
	prev *memJob // nil: absent
}

type memPrevKey struct {
	key, prev string // prev "": absent
}

func (m *Memory) saveJob(u *memUndo, id string) {
	if u != nil {
		u.jobs = append(u.jobs, memPrevJob{id, m.jobs[id]})
	}
}

func (m *Memory) saveKey(u *memUndo, key string) {
	if u != nil {
		u.keys = append(u.keys, memPrevKey{key, m.keys[key]})
	}
}

func (m *Memory) rollback(u *memUndo) {
	for _, p := range slices.Backward(u.jobs) {
		if p.prev == nil {
			delete(m.jobs, p.id)
		} else {
			m.jobs[p.id] = p.prev
		}
	}
	for _, p := range slices.Backward(u.keys) {
		if p.prev == "" {
			delete(m.keys, p.key)
		} else {
			m.keys[p.key] = p.prev
		}
	}
}

func (m *Memory) put(u *memUndo, j *JobRecord) error {
	if j.Key != "" {
		if owner, ok := m.keys[j.Key]; ok && owner != j.ID {
			return fmt.Errorf("%w: job %s: key %q names job %s", ErrKeyConflict, j.ID, j.Key, owner)
		}
	}
	m.saveJob(u, j.ID)
	if old := m.jobs[j.ID]; old != nil && old.key != "" && old.key != j.Key {
		m.saveKey(u, old.key)
		delete(m.keys, old.key)
	}
	if j.Key != "" {
		m.saveKey(u, j.Key)
		m.keys[j.Key] = j.ID
	}
	m.buf = appendRecord(m.buf[:0], j)
	rec := bytes.Clone(m.buf)
	f, _ := decodeIndexFields(rec) // the times as stored: UTC, no monotonic reading
	m.jobs[j.ID] = &memJob{rec: rec, state: f.state, key: j.Key, finished: f.finished}
	return nil
}

func (m *Memory) delete(u *memUndo, id string) {
	old := m.jobs[id]
	if old == nil {
		return
	}
	m.saveJob(u, id)
	delete(m.jobs, id)
	if old.key != "" && m.keys[old.key] == id {
		m.saveKey(u, old.key)
		delete(m.keys, old.key)
	}
}

func (m *Memory) ifOpen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Load returns the services, the unfinished jobs and the newest finished ones.
func (m *Memory) Load(finished int) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s Snapshot
	if m.closed {
		return s, fmt.Errorf("load: %w", ErrClosed)
	}
	for _, sv := range m.services {
		s.Services = append(s.Services, sv)
	}
	slices.SortFunc(s.Services, func(a, b ServiceRecord) int { return cmp.Compare(a.Name, b.Name) })
	for name, c := range m.counts {
		if _, ok := m.services[name]; ok {
			s.Counts = append(s.Counts, c)
		}
	}
	slices.SortFunc(s.Counts, func(a, b ServiceCounts) int { return cmp.Compare(a.Name, b.Name) })
	for _, r := range m.scheds {
		s.Schedules = append(s.Schedules, r)
	}
	slices.SortFunc(s.Schedules, func(a, b ScheduleRecord) int { return cmp.Compare(a.Name, b.Name) })
	var done []string
	for id, j := range m.jobs {
		if Finished(j.state) {
			done = append(done, id)
			continue
		}
		r, err := decodeRecord(j.rec)
		if err != nil {
			return Snapshot{}, fmt.Errorf("%w in memory: job %s: %v", ErrCorrupt, id, err)
		}
		s.Jobs = append(s.Jobs, r)
	}
	slices.SortFunc(s.Jobs, func(a, b JobRecord) int { return cmp.Compare(a.ID, b.ID) })
	if finished > 0 {
		m.sortFinished(done)
		for _, id := range done[max(0, len(done)-finished):] {
			r, err := decodeRecord(m.jobs[id].rec)
			if err != nil {
				return Snapshot{}, fmt.Errorf("%w in memory: job %s: %v", ErrCorrupt, id, err)
			}
			s.Finished = append(s.Finished, r)
		}
	}
	return s, nil
}

// sortFinished sorts the IDs of finished jobs as Bolt's index does: by
// finish time, then ID.
func (m *Memory) sortFinished(ids []string) {
	slices.SortFunc(ids, func(a, b string) int {
		sa, sb := finishStamp(m.jobs[a].finished), finishStamp(m.jobs[b].finished)
		if c := bytes.Compare(sa[:], sb[:]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
}

// Job returns the retained job with this ID.
func (m *Memory) Job(id string) (JobRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return JobRecord{}, false, fmt.Errorf("job %s: %w", id, ErrClosed)
	}
	j := m.jobs[id]
	if j == nil {
		return JobRecord{}, false, nil
	}
	r, err := decodeRecord(j.rec)
	if err != nil {
		return JobRecord{}, false, fmt.Errorf("%w in memory: job %s: %v", ErrCorrupt, id, err)
	}
	return r, true, nil
}

// JobByKey returns the ID of the retained job with this idempotency key.
func (m *Memory) JobByKey(key string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", false, fmt.Errorf("job by key: %w", ErrClosed)
	}
	id, ok := m.keys[key] // "" is never a key
	return id, ok, nil
}

// Prune deletes old finished jobs; see Store.
func (m *Memory) Prune(olderThan time.Time, keep int, maxBytes int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("prune: %w", ErrClosed)
	}
	if olderThan.IsZero() && keep <= 0 && maxBytes <= 0 {
		return 0, nil
	}
	var done []string
	for id, j := range m.jobs {
		if Finished(j.state) {
			done = append(done, id)
		}
	}
	m.sortFinished(done)
	n := 0 // done[:n] go
	if keep > 0 {
		n = max(0, len(done)-keep)
	}
	if maxBytes > 0 {
		var sum int64
		for i := len(done) - 1; i >= n; i-- {
			if sum += int64(len(m.jobs[done[i]].rec)); sum > maxBytes {
				n = i + 1
				break
			}
		}
	}
	if !olderThan.IsZero() {
		limit := finishStamp(olderThan)
		for n < len(done) {
			s := finishStamp(m.jobs[done[n]].finished)
			if bytes.Compare(s[:], limit[:]) >= 0 {
				break
			}
			n++
		}
	}
	for _, id := range done[:n] {
		m.delete(nil, id)
	}
	return n, nil
}

// Close empties the store. Later calls return ErrClosed; closing twice is
// not an error.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.services, m.counts, m.jobs, m.keys, m.scheds = nil, nil, nil, nil, nil
	return nil
}
