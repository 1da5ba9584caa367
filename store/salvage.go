package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CheckReport is what Check found in a sound journal.
type CheckReport struct {
	Fresh    bool // no journal yet, in a data dir that never had one
	Size     int64
	PageSize int
	Pages    uint64 // the high-water mark
	Jobs     int    // Open + Finished
	Open     int    // queued or active
	Finished int
	Services int
	// Failed counts the failed jobs, checked against the index of failed
	// jobs; -1 when the index is missing or stale (a journal from before
	// it, or last written by such a zmws): OpenBolt builds it again.
	Failed int
}

// Check reads the journal at path without changing it: the meta pages and
// the file's size (as OpenBolt does), then every bucket, record and index
// entry, then bbolt's own consistency check (Tx.Check). It opens the file
// read-only and shares its lock with other readers, so it fails with
// ErrLocked while a zmwsd has the journal open. A journal that is missing or
// empty is fine (Fresh) unless its marker says otherwise (ErrMissing).
func Check(path string, opts BoltOptions) (CheckReport, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultLockTimeout
	}
	st, err := preflight(path)
	if err != nil || st == journalFresh {
		return CheckReport{Fresh: err == nil}, err
	}
	db, err := openReadOnly(path, opts.Timeout)
	if err != nil {
		return CheckReport{}, err
	}
	defer db.Close()
	var rep CheckReport
	if fi, err := os.Stat(path); err == nil {
		rep.Size = fi.Size()
	}
	rep.PageSize = db.Info().PageSize
	s := &Bolt{db: db, path: path}
	err = guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			rep.Pages = uint64(tx.Size()) / uint64(rep.PageSize)
			// Visit every page of every tree here, under guard: bbolt's
			// check below rebuilds the freelist on a goroutine of its own,
			// where a damaged page would be a panic nothing catches.
			if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error { return touch(b) }); err != nil {
				return err
			}
			return s.checkRecords(tx, &rep)
		})
	})
	if err != nil {
		return CheckReport{}, err
	}
	if err := checkTree(db, path); err != nil {
		return CheckReport{}, err
	}
	return rep, nil
}

// openReadOnly opens the bbolt file at path read-only (O_RDONLY, a shared
// lock), mapping bbolt's errors as OpenBolt does.
func openReadOnly(path string, timeout time.Duration) (*bolt.DB, error) {
	db, err := openDB(path, &bolt.Options{ReadOnly: true, Timeout: timeout, FreelistType: bolt.FreelistMapType})
	switch {
	case err == nil || errors.Is(err, ErrCorrupt):
		return db, err
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s is locked (waited %v)", ErrLocked, path, timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("%w %s: %v", ErrCorrupt, path, err)
	default:
		return nil, fmt.Errorf("store: open journal %s: %w", path, err)
	}
}

// touch walks every key of b and of the buckets inside it.
func touch(b *bolt.Bucket) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if child := b.Bucket(k); child != nil {
				if err := touch(child); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkRecords decodes every service and job and checks the indexes: each
// job is in exactly one of open and finished, as its state says, and each
// idempotency key names a job that carries it.
func (s *Bolt) checkRecords(tx *bolt.Tx, rep *CheckReport) error {
	if m := tx.Bucket(bucketMeta); m == nil || !bytes.Equal(m.Get(metaFormat), []byte{formatV1}) {
		return fmt.Errorf("%w %s: no format %d marker in the meta bucket", ErrCorrupt, s.path, formatV1)
	}
	bk, err := s.buckets(tx)
	if err != nil {
		return err
	}
	err = bk.services.ForEach(func(k, v []byte) error {
		if _, err := decodeService(string(k), v); err != nil {
			return fmt.Errorf("%w %s: service %q: %v", ErrCorrupt, s.path, k, err)
		}
		rep.Services++
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := s.loadCounts(bk); err != nil {
		return err
	}
	if _, err := s.loadSchedules(bk); err != nil {
		return err
	}
	err = bk.jobs.ForEach(func(id, v []byte) error {
		r, _, err := s.job(bk, id)
		if err != nil {
			return err
		}
		open := bk.open.Get(id) != nil
		fin := bk.finished.Get(finishKey(r.Finished, r.ID)) != nil
		switch {
		case Finished(r.State) && (!fin || open):
			return s.corrupt(id, fmt.Errorf("%s, but not (only) in the index of finished jobs", r.State))
		case !Finished(r.State) && (!open || fin):
			return s.corrupt(id, fmt.Errorf("%s, but not (only) in the index of open jobs", r.State))
		case r.Key != "" && !bytes.Equal(bk.keys.Get([]byte(r.Key)), id):
			return s.corrupt(id, fmt.Errorf("its key %q does not name it", r.Key))
		}
		if open {
			rep.Open++
		} else {
			rep.Finished++
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.Jobs = rep.Open + rep.Finished
	if n := bk.open.Stats().KeyN; n != rep.Open {
		return fmt.Errorf("%w %s: %d entries in the index of open jobs for %d open jobs", ErrCorrupt, s.path, n, rep.Open)
	}
	if n := bk.finished.Stats().KeyN; n != rep.Finished {
		return fmt.Errorf("%w %s: %d entries in the index of finished jobs for %d finished jobs", ErrCorrupt, s.path, n, rep.Finished)
	}
	err = bk.keys.ForEach(func(k, id []byte) error {
		if bk.jobs.Get(id) == nil {
			return fmt.Errorf("%w %s: idempotency key %q names job %q, which is missing", ErrCorrupt, s.path, k, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.Failed = -1
	if failedIndexCurrent(tx) {
		rep.Failed, err = s.checkFailed(bk)
	}
	return err
}

// SalvageReport is what Salvage copied out.
type SalvageReport struct {
	Saved    int // jobs written to the new journal
	Lost     int // jobs named by a readable index or record but not saved
	Services int // services written to the new journal
	Damaged  bool
	Problem  error // what Check said of the original; nil when it was sound
}

// Salvage copies every job and service (with its counters) it can read
// from the journal at src into a new journal at dst, which must not exist,
// and never writes to src (it is opened read-only). It walks each bucket from both ends, so that a
// damaged page costs only the jobs on it and the ones a walk cannot get past;
// each job named by a readable index entry is then looked up by its ID. Jobs
// whose records do not decode, and IDs found in an index whose records
// cannot be read, count as Lost; a job whose ID is on no readable page
// cannot be counted. Records go into dst through Commit, so its indexes are
// rebuilt from the records.
func Salvage(src, dst string, opts BoltOptions) (SalvageReport, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultLockTimeout
	}
	var rep SalvageReport
	if _, err := os.Stat(dst); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("store: salvage to %s: it exists (or cannot be checked: %v); name a new file", dst, err)
	}
	if _, err := Check(src, opts); err != nil {
		if errors.Is(err, ErrLocked) || errors.Is(err, ErrMissing) {
			return rep, err
		}
		rep.Damaged, rep.Problem = true, err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return rep, fmt.Errorf("store: salvage %s: %w", src, err)
	}
	if fi.Size() == 0 {
		return rep, fmt.Errorf("store: salvage %s: the file is empty, there is nothing to copy", src)
	}
	db, err := openReadOnly(src, opts.Timeout)
	if err != nil {
		return rep, err
	}
	defer db.Close()

	jobs := map[string][]byte{} // ID → record bytes, copied out of the map
	known := map[string]bool{}
	var services []ServiceRecord
	walk := func(bucket []byte, fn func(k, v []byte)) {
		for _, backward := range []bool{false, true} {
			_ = guard(src, func() error {
				return db.View(func(tx *bolt.Tx) error {
					b := tx.Bucket(bucket)
					if b == nil {
						return nil
					}
					c := b.Cursor()
					first, next := c.First, c.Next
					if backward {
						first, next = c.Last, c.Prev
					}
					for k, v := first(); k != nil; k, v = next() {
						fn(k, v)
					}
					return nil
				})
			})
		}
	}
	walk(bucketJobs, func(k, v []byte) {
		known[string(k)] = true
		if v != nil {
			jobs[string(k)] = bytes.Clone(v)
		}
	})
	walk(bucketOpen, func(k, _ []byte) { known[string(k)] = true })
	walk(bucketFinished, func(k, _ []byte) {
		if len(k) > finishKeyLen {
			known[string(k[finishKeyLen:])] = true
		}
	})
	walk(bucketKeys, func(_, v []byte) { known[string(v)] = true })
	seen := map[string]bool{}
	walk(bucketServices, func(k, v []byte) {
		if sv, err := decodeService(string(k), v); err == nil && !seen[sv.Name] {
			seen[sv.Name] = true
			services = append(services, sv)
		}
	})
	var counts []ServiceCounts
	seenCounts := map[string]bool{}
	walk(bucketCounts, func(k, v []byte) {
		if c, err := decodeCounts(string(k), v); err == nil && seen[c.Name] && !seenCounts[c.Name] {
			seenCounts[c.Name] = true
			counts = append(counts, c)
		}
	})
	var scheds []ScheduleRecord
	seenScheds := map[string]bool{}
	walk(bucketScheds, func(k, v []byte) {
		if r, err := decodeSchedule(string(k), v); err == nil && !seenScheds[r.Name] {
			seenScheds[r.Name] = true
			scheds = append(scheds, r)
		}
	})
	for id := range known {
		if _, ok := jobs[id]; ok || id == "" {
			continue
		}
		_ = guard(src, func() error {
			return db.View(func(tx *bolt.Tx) error {
				if b := tx.Bucket(bucketJobs); b != nil {
					if v := b.Get([]byte(id)); v != nil {
						jobs[id] = bytes.Clone(v)
					}
				}
				return nil
			})
		})
	}

	var recs []*JobRecord
	for id, v := range jobs {
		if r, err := decodeRecord(v); err == nil && r.ID == id {
			recs = append(recs, &r)
		}
	}
	slices.SortFunc(recs, func(a, b *JobRecord) int { return strings.Compare(a.ID, b.ID) })

	out, err := OpenBolt(dst, opts)
	if err != nil {
		return rep, err
	}
	saved, err := copyInto(out, &Batch{Services: services, Counts: counts, Schedules: scheds}, recs)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	_ = os.Remove(markerPath(dst)) // dst is not a data dir's journal (yet)
	if err != nil {
		return rep, err
	}
	rep.Saved, rep.Services = saved, len(services)
	rep.Lost = len(known) - saved
	return rep, nil
}

// copyInto commits first (services, their counters, schedules) then recs
// to s in batches; a batch that fails is retried one job at a time, and
// jobs that still fail are left out.
func copyInto(s *Bolt, first *Batch, recs []*JobRecord) (int, error) {
	if err := s.Commit(first); err != nil {
		return 0, err
	}
	const chunk = 1000
	saved := 0
	for len(recs) > 0 {
		n := min(chunk, len(recs))
		part := recs[:n]
		recs = recs[n:]
		if err := s.Commit(&Batch{Jobs: part}); err == nil {
			saved += n
			continue
		}
		for _, r := range part {
			if err := s.Commit(&Batch{Jobs: []*JobRecord{r}}); err == nil {
				saved++
			} else if !errors.Is(err, ErrKeyConflict) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrCorrupt) {
				return saved, err
			}
		}
	}
	return saved, nil
}
