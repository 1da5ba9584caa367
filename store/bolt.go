package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/zmws/zmws/protocol"
)

// BoltFile is the journal's file name inside a data dir.
const BoltFile = "zmws.db"

// DefaultLockTimeout is how long OpenBolt waits for another process to
// release the journal: long enough to ride out a restart's overlap, short
// enough that a second zmwsd on the same data dir fails at once.
const DefaultLockTimeout = time.Second

// BoltOptions tunes OpenBolt. The zero value takes the defaults.
type BoltOptions struct {
	// Timeout is how long to wait for the journal's file lock (default
	// DefaultLockTimeout). Past it OpenBolt returns ErrLocked.
	Timeout time.Duration
	// InitialMmapSize is the initial size of the journal's memory map in
	// bytes (default 0: as large as the file). A map larger than the file
	// spares writers the remaps that wait for readers to finish.
	InitialMmapSize int
	// MaxSize caps the journal file in bytes (default 0: no cap). A Commit
	// that would grow the file past it fails, as on a full disk.
	MaxSize int
}

// Bucket names. Keys and values:
//
//	meta      "format" → formatV1
//	jobs      job ID → job record (doc.go)
//	services  name → service record
//	keys      idempotency key → job ID
//	open      job ID → "" for each queued or active job
//	finished  finishStamp ++ job ID → idempotency key, for each finished job
//	counts    name → a service's job counters (made by the first Commit
//	          that writes one: a journal from before them has none)
//	failed    finishStamp ++ job ID → service and owner, for each failed
//	          job (failed.go; built at open in a journal from before it)
//	schedules name → a schedule's last tick (made likewise)
var (
	bucketMeta     = []byte("meta")
	bucketJobs     = []byte("jobs")
	bucketServices = []byte("services")
	bucketKeys     = []byte("keys")
	bucketOpen     = []byte("open")
	bucketFinished = []byte("finished")
	bucketCounts   = []byte("counts")
	bucketScheds   = []byte("schedules")

	metaFormat = []byte("format")
	// metaProbe holds the time of the last probe commit (Batch.Probe).
	metaProbe = []byte("probe")
)

// formatV1 is the journal layout above; a new layout takes the next value.
const formatV1 = 1

// pruneChunk is how many jobs one Prune transaction deletes at most.
const pruneChunk = 1000

// arenaKeep bounds the encoding buffer a Bolt keeps between commits.
const arenaKeep = 1 << 20

// Bolt is a Store in a bbolt file: the durable journal. Commit is one bbolt
// write transaction and one fsync. All methods are safe for concurrent use:
// Commit and Prune's transactions take turns on bbolt's single writer lock,
// while Load, Job and JobByKey read a consistent snapshot alongside them. A
// long read (Load of a large journal) can delay a writer that must grow the
// file's memory map; InitialMmapSize avoids that.
type Bolt struct {
	db     *bolt.DB
	path   string
	closed atomic.Bool
	chunk  int // pruneChunk; tests change it
	// backupMu makes Backups take turns (they share a temporary file name).
	backupMu sync.Mutex

	arena []byte // Commit's encoding buffer; used only in a write transaction
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens the journal at path, creating it and its directory (mode
// 0700) when missing. The file is locked for this process: a second OpenBolt
// on it, from any process, fails with ErrLocked after opts.Timeout. A file
// that is not a journal, or is damaged, fails with ErrCorrupt, one from a
// newer zmws with ErrFormat.
//
// Before bbolt maps the file, OpenBolt reads its two meta pages and checks
// that the file is as long as the high-water mark of the one bbolt will use
// (a truncated file would crash bbolt); panics inside bbolt while opening
// become ErrCorrupt. A new journal gets a marker beside it (MarkerFile,
// zmws.id beside zmws.db), as does an old one that lacks it; while the
// marker exists, a missing or empty journal is ErrMissing rather than a
// fresh start.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultLockTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open journal %s: %w", path, err)
	}
	var (
		st  journalState
		db  *bolt.DB
		err error
	)
	// Compact renames a new file over the journal while it holds the old
	// one's lock: an OpenBolt that waited for that lock then holds the
	// lock of a file no name leads to. It looks again.
	for range 3 {
		st, db, err = openOnce(path, opts)
		if err == nil || !errors.Is(err, errReplaced) {
			break
		}
	}
	if errors.Is(err, errReplaced) {
		return nil, fmt.Errorf("%w: %s was replaced while zmws waited for it, three times", ErrLocked, path)
	}
	if err != nil {
		return nil, err
	}
	if st == journalExisting {
		// bbolt's own consistency check; doc.go has its cost.
		if err := checkTree(db, path); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	s := &Bolt{db: db, path: path, chunk: pruneChunk}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if _, err := os.Stat(markerPath(path)); errors.Is(err, fs.ErrNotExist) {
		err = writeMarker(path)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return s, nil
}

// errReplaced says that the journal's file was renamed over while openOnce
// waited for its lock.
var errReplaced = errors.New("replaced while waiting for its lock")

// openOnce runs preflight and opens the bbolt file at path, mapping bbolt's
// errors to the store's, or returns errReplaced when the name leads to another file after the lock is taken
// than before: the file is the one a stat saw before bbolt opened it, so
// the same file after means bbolt holds the named one.
func openOnce(path string, opts BoltOptions) (journalState, *bolt.DB, error) {
	st, err := preflight(path)
	if err != nil {
		return st, nil, err
	}
	before, statErr := os.Stat(path)
	db, err := openDB(path, &bolt.Options{
		Timeout:         opts.Timeout,
		InitialMmapSize: opts.InitialMmapSize,
		MaxSize:         opts.MaxSize,
		// As etcd does: the freelist is rebuilt from the pages at open
		// instead of written at every commit. After Prune frees many
		// pages, a synced freelist made each Commit write it whole
		// (doc.go has the numbers); durability is unchanged.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, ErrCorrupt):
		return st, nil, err
	case errors.Is(err, berrors.ErrTimeout):
		return st, nil, fmt.Errorf("%w: %s is locked (waited %v)", ErrLocked, path, opts.Timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return st, nil, fmt.Errorf("%w %s: %v", ErrCorrupt, path, err)
	case err != nil:
		return st, nil, fmt.Errorf("store: open journal %s: %w", path, err)
	}
	if statErr == nil {
		if after, err := os.Stat(path); err != nil || !os.SameFile(before, after) {
			_ = db.Close()
			return st, nil, errReplaced
		}
	}
	return st, db, nil
}

// init creates the buckets of a new journal and checks the format of an
// old one, and builds its index of failed jobs when it has none or a stale
// one (failed.go).
func (s *Bolt) init() error {
	// An existing journal in this format is opened without a write; the
	// Update below makes what is missing and reports what is wrong.
	ready := false
	err := guard(s.path, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			if meta := tx.Bucket(bucketMeta); meta != nil && bytes.Equal(meta.Get(metaFormat), []byte{formatV1}) {
				_, err := s.buckets(tx)
				ready = err == nil && failedIndexCurrent(tx)
			}
			return nil
		})
	})
	if err != nil || ready {
		return err
	}
	err = guard(s.path, func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			switch v := meta.Get(metaFormat); {
			case v == nil:
				if err := meta.Put(metaFormat, []byte{formatV1}); err != nil {
					return err
				}
			case len(v) != 1:
				return fmt.Errorf("%w %s: format field of %d bytes", ErrCorrupt, s.path, len(v))
			case v[0] != formatV1:
				return fmt.Errorf("%w %d in %s (this zmws reads format %d)", ErrFormat, v[0], s.path, formatV1)
			}
			for _, name := range [][]byte{bucketJobs, bucketServices, bucketKeys, bucketOpen, bucketFinished} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return s.rebuildFailed(tx)
		})
	})
	if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) {
		return fmt.Errorf("store: initialize journal %s: %w", s.path, err)
	}
	return err
}

// Path returns the journal's file name.
func (s *Bolt) Path() string { return s.path }

// buckets are a transaction's buckets. counts is nil in a journal no
// counters were written to yet, scheds in one no schedule was.
type buckets struct {
	jobs, services, keys, open, finished, counts, scheds *bolt.Bucket
	failed                                               *bolt.Bucket // nil until init has built it
}

func (s *Bolt) buckets(tx *bolt.Tx) (buckets, error) {
	bk := buckets{
		jobs:     tx.Bucket(bucketJobs),
		services: tx.Bucket(bucketServices),
		keys:     tx.Bucket(bucketKeys),
		open:     tx.Bucket(bucketOpen),
		finished: tx.Bucket(bucketFinished),
		counts:   tx.Bucket(bucketCounts),
		failed:   tx.Bucket(bucketFailed),
		scheds:   tx.Bucket(bucketScheds),
	}
	if bk.jobs == nil || bk.services == nil || bk.keys == nil || bk.open == nil || bk.finished == nil {
		return bk, fmt.Errorf("%w %s: a bucket is missing", ErrCorrupt, s.path)
	}
	return bk, nil
}

// corrupt describes a record that cannot be read.
func (s *Bolt) corrupt(id []byte, err error) error {
	return fmt.Errorf("%w %s: job %q: %v", ErrCorrupt, s.path, id, err)
}

// dbErr turns bbolt's "not open" into ErrClosed.
func dbErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Commit applies b in one write transaction and fsyncs it.
func (s *Bolt) Commit(b *Batch) error {
	if s.closed.Load() {
		return fmt.Errorf("commit: %w", ErrClosed)
	}
	if b == nil || b.Len() == 0 {
		return nil
	}
	if err := validate(b); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk, err := s.buckets(tx)
		if err != nil {
			return err
		}
		if b.Probe {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				return fmt.Errorf("%w %s: the meta bucket is missing", ErrCorrupt, s.path)
			}
			if err := meta.Put(metaProbe, time.Now().UTC().AppendFormat(nil, time.RFC3339Nano)); err != nil {
				return err
			}
		}
		// bbolt keeps the values until the transaction ends: each record
		// gets its own stretch of the arena, which may grow but is not
		// reused before the next transaction.
		arena := s.arena[:0]
		for _, j := range b.Jobs {
			start := len(arena)
			arena = appendRecord(arena, j)
			if err := s.put(bk, j, arena[start:len(arena):len(arena)]); err != nil {
				return err
			}
		}
		for _, id := range b.Deletes {
			if err := s.delete(bk, []byte(id)); err != nil {
				return err
			}
		}
		for _, sv := range b.Services {
			start := len(arena)
			arena = appendService(arena, sv)
			if err := bk.services.Put([]byte(sv.Name), arena[start:len(arena):len(arena)]); err != nil {
				return err
			}
		}
		if bk.counts == nil && len(b.Counts) > 0 {
			if bk.counts, err = tx.CreateBucket(bucketCounts); err != nil {
				return err
			}
		}
		for _, c := range b.Counts {
			if c.Completed == 0 && c.Failed == 0 {
				if err := bk.counts.Delete([]byte(c.Name)); err != nil {
					return err
				}
				continue
			}
			start := len(arena)
			arena = appendCounts(arena, c)
			if err := bk.counts.Put([]byte(c.Name), arena[start:len(arena):len(arena)]); err != nil {
				return err
			}
		}
		for _, name := range b.Forgets {
			if err := bk.services.Delete([]byte(name)); err != nil {
				return err
			}
			if bk.counts != nil {
				if err := bk.counts.Delete([]byte(name)); err != nil {
					return err
				}
			}
		}
		if bk.scheds == nil && len(b.Schedules) > 0 {
			if bk.scheds, err = tx.CreateBucket(bucketScheds); err != nil {
				return err
			}
		}
		for _, r := range b.Schedules {
			if r.LastTick.IsZero() {
				if err := bk.scheds.Delete([]byte(r.Name)); err != nil {
					return err
				}
				continue
			}
			start := len(arena)
			arena = appendSchedule(arena, r)
			if err := bk.scheds.Put([]byte(r.Name), arena[start:len(arena):len(arena)]); err != nil {
				return err
			}
		}
		if err := markFailedIndex(tx); err != nil {
			return err
		}
		if cap(arena) <= arenaKeep {
			s.arena = arena
		} else {
			s.arena = nil
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: commit %d changes to %s: %w", b.Len(), s.path, dbErr(err))
	}
	return nil
}

// put stores j, encoded as rec, and moves its index entries.
func (s *Bolt) put(bk buckets, j *JobRecord, rec []byte) error {
	id := []byte(j.ID)
	var old indexFields
	prev := bk.jobs.Get(id)
	if prev != nil {
		var err error
		if old, err = decodeIndexFields(prev); err != nil {
			return s.corrupt(id, err)
		}
	}
	key := []byte(j.Key)
	if j.Key != "" {
		if owner := bk.keys.Get(key); owner != nil && !bytes.Equal(owner, id) {
			return fmt.Errorf("%w: job %s: key %q names job %s", ErrKeyConflict, j.ID, j.Key, owner)
		}
	}
	// Old index entries go before the record is replaced: old aliases it.
	if prev != nil {
		if len(old.key) > 0 && !bytes.Equal(old.key, key) {
			if err := deleteIf(bk.keys, old.key, id); err != nil {
				return err
			}
		}
		if Finished(old.state) {
			if err := bk.finished.Delete(finishKey(old.finished, j.ID)); err != nil {
				return err
			}
		}
		if old.state == protocol.JobFailed {
			if err := bk.failed.Delete(finishKey(old.finished, j.ID)); err != nil {
				return err
			}
		}
	}
	if err := bk.jobs.Put(id, rec); err != nil {
		return err
	}
	if j.Key != "" {
		if err := bk.keys.Put(key, id); err != nil {
			return err
		}
	}
	wasOpen := prev != nil && !Finished(old.state)
	switch {
	case Finished(j.State):
		if wasOpen {
			if err := bk.open.Delete(id); err != nil {
				return err
			}
		}
		if j.State == protocol.JobFailed {
			if err := bk.failed.Put(finishKey(j.Finished, j.ID), failedValue(j.Service, j.Owner)); err != nil {
				return err
			}
		}
		return bk.finished.Put(finishKey(j.Finished, j.ID), key)
	case !wasOpen:
		return bk.open.Put(id, []byte{})
	}
	return nil
}

// delete removes the job id and its index entries, if it is there.
func (s *Bolt) delete(bk buckets, id []byte) error {
	prev := bk.jobs.Get(id)
	if prev == nil {
		return nil
	}
	old, err := decodeIndexFields(prev)
	if err != nil {
		return s.corrupt(id, err)
	}
	if len(old.key) > 0 {
		if err := deleteIf(bk.keys, old.key, id); err != nil {
			return err
		}
	}
	if old.state == protocol.JobFailed {
		if err := bk.failed.Delete(finishKey(old.finished, string(id))); err != nil {
			return err
		}
	}
	if Finished(old.state) {
		err = bk.finished.Delete(finishKey(old.finished, string(id)))
	} else {
		err = bk.open.Delete(id)
	}
	if err != nil {
		return err
	}
	return bk.jobs.Delete(id)
}

// deleteIf deletes key from b when its value is want.
func deleteIf(b *bolt.Bucket, key, want []byte) error {
	if v := b.Get(key); v != nil && bytes.Equal(v, want) {
		return b.Delete(key)
	}
	return nil
}

// loadCounts reads the counters of the services the journal knows, by name.
func (s *Bolt) loadCounts(bk buckets) ([]ServiceCounts, error) {
	if bk.counts == nil {
		return nil, nil
	}
	var out []ServiceCounts
	err := bk.counts.ForEach(func(k, v []byte) error {
		c, err := decodeCounts(string(k), v)
		if err != nil {
			return fmt.Errorf("%w %s: counters of service %q: %v", ErrCorrupt, s.path, k, err)
		}
		if bk.services.Get(k) != nil {
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// loadSchedules reads the schedules' last ticks, by name.
func (s *Bolt) loadSchedules(bk buckets) ([]ScheduleRecord, error) {
	if bk.scheds == nil {
		return nil, nil
	}
	var out []ScheduleRecord
	err := bk.scheds.ForEach(func(k, v []byte) error {
		r, err := decodeSchedule(string(k), v)
		if err != nil {
			return fmt.Errorf("%w %s: schedule %q: %v", ErrCorrupt, s.path, k, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// view runs fn in a read transaction, mapping bbolt's errors.
func (s *Bolt) view(fn func(bk buckets) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return dbErr(guard(s.path, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			bk, err := s.buckets(tx)
			if err != nil {
				return err
			}
			return fn(bk)
		})
	}))
}

// job decodes the record of id, checking that it names itself.
func (s *Bolt) job(bk buckets, id []byte) (JobRecord, bool, error) {
	v := bk.jobs.Get(id)
	if v == nil {
		return JobRecord{}, false, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return JobRecord{}, false, s.corrupt(id, err)
	}
	if r.ID != string(id) {
		return JobRecord{}, false, s.corrupt(id, fmt.Errorf("record names job %q", r.ID))
	}
	return r, true, nil
}

// Load reads the services, the unfinished jobs and the newest finished ones
// in one read transaction.
func (s *Bolt) Load(finished int) (Snapshot, error) {
	var snap Snapshot
	err := s.view(func(bk buckets) error {
		err := bk.services.ForEach(func(k, v []byte) error {
			sv, err := decodeService(string(k), v)
			if err != nil {
				return fmt.Errorf("%w %s: service %q: %v", ErrCorrupt, s.path, k, err)
			}
			snap.Services = append(snap.Services, sv)
			return nil
		})
		if err != nil {
			return err
		}
		if snap.Counts, err = s.loadCounts(bk); err != nil {
			return err
		}
		if snap.Schedules, err = s.loadSchedules(bk); err != nil {
			return err
		}
		snap.Jobs = make([]JobRecord, 0, bk.open.Stats().KeyN)
		err = bk.open.ForEach(func(id, _ []byte) error {
			r, ok, err := s.job(bk, id)
			if err == nil && !ok {
				err = s.corrupt(id, errors.New("in the index of open jobs but missing"))
			}
			if err == nil && Finished(r.State) {
				err = s.corrupt(id, fmt.Errorf("in the index of open jobs but %s", r.State))
			}
			if err != nil {
				return err
			}
			snap.Jobs = append(snap.Jobs, r)
			return nil
		})
		if err != nil || finished <= 0 {
			return err
		}
		c := bk.finished.Cursor()
		for k, _ := c.Last(); k != nil && len(snap.Finished) < finished; k, _ = c.Prev() {
			if len(k) <= finishKeyLen {
				return fmt.Errorf("%w %s: finished index key %x", ErrCorrupt, s.path, k)
			}
			id := k[finishKeyLen:]
			r, ok, err := s.job(bk, id)
			if err == nil && !ok {
				err = s.corrupt(id, errors.New("in the index of finished jobs but missing"))
			}
			if err == nil && !Finished(r.State) {
				err = s.corrupt(id, fmt.Errorf("in the index of finished jobs but %s", r.State))
			}
			if err != nil {
				return err
			}
			snap.Finished = append(snap.Finished, r)
		}
		for i, j := 0, len(snap.Finished)-1; i < j; i, j = i+1, j-1 {
			snap.Finished[i], snap.Finished[j] = snap.Finished[j], snap.Finished[i]
		}
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("load: %w", err)
	}
	return snap, nil
}

// Job returns the retained job with this ID.
func (s *Bolt) Job(id string) (rec JobRecord, ok bool, err error) {
	if id == "" {
		return JobRecord{}, false, nil
	}
	err = s.view(func(bk buckets) error {
		rec, ok, err = s.job(bk, []byte(id))
		return err
	})
	if err != nil {
		return JobRecord{}, false, fmt.Errorf("job %s: %w", id, err)
	}
	return rec, ok, nil
}

// JobByKey returns the ID of the retained job with this idempotency key.
func (s *Bolt) JobByKey(key string) (id string, ok bool, err error) {
	if key == "" {
		return "", false, nil
	}
	err = s.view(func(bk buckets) error {
		v := bk.keys.Get([]byte(key))
		id, ok = string(v), v != nil
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("job by key: %w", err)
	}
	return id, ok, nil
}

// Prune deletes old finished jobs (see Store) in transactions of at most
// 1,000 jobs. The count and bytes bounds are taken when Prune starts, in one
// read transaction; jobs finishing meanwhile are kept on top of them. The
// bytes bound reads the size of every retained finished job's record: a
// lookup each, not the record's pages (docs/DURABILITY.md has the cost).
func (s *Bolt) Prune(olderThan time.Time, keep int, maxBytes int64) (int, error) {
	if olderThan.IsZero() && keep <= 0 && maxBytes <= 0 {
		return 0, nil
	}
	// Index keys below limit go.
	var limit []byte
	err := s.view(func(bk buckets) error {
		if keep <= 0 && maxBytes <= 0 {
			return nil
		}
		// Walk from the newest: kept is the oldest key kept so far, k the
		// first that goes.
		var (
			kept []byte
			n    int
			sum  int64
		)
		c := bk.finished.Cursor()
		k, _ := c.Last()
		for ; k != nil; k, _ = c.Prev() {
			if keep > 0 && n == keep {
				break
			}
			if maxBytes > 0 {
				if len(k) <= finishKeyLen {
					return fmt.Errorf("%w %s: finished index key %x", ErrCorrupt, s.path, k)
				}
				if sum += int64(len(bk.jobs.Get(k[finishKeyLen:]))); sum > maxBytes {
					break
				}
			}
			kept, n = k, n+1
		}
		switch {
		case k == nil: // everything fits
		case kept == nil: // even the newest goes: every key up to k
			limit = append(bytes.Clone(k), 0)
		default:
			limit = bytes.Clone(kept)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if !olderThan.IsZero() {
		if age := finishStamp(olderThan); bytes.Compare(age[:], limit) > 0 {
			limit = age[:]
		}
	}
	if limit == nil {
		return 0, nil
	}
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			n = 0
			bk, err := s.buckets(tx)
			if err != nil {
				return err
			}
			var gone [][2][]byte // index key, idempotency key
			c := bk.finished.Cursor()
			for k, v := c.First(); k != nil && bytes.Compare(k, limit) < 0 && len(gone) < s.chunk; k, v = c.Next() {
				gone = append(gone, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
			}
			for _, g := range gone {
				k, key := g[0], g[1]
				if len(k) <= finishKeyLen {
					return fmt.Errorf("%w %s: finished index key %x", ErrCorrupt, s.path, k)
				}
				id := k[finishKeyLen:]
				if err := bk.finished.Delete(k); err != nil {
					return err
				}
				if err := bk.failed.Delete(k); err != nil { // absent: a completed job
					return err
				}
				if len(key) > 0 {
					if err := deleteIf(bk.keys, key, id); err != nil {
						return err
					}
				}
				if err := bk.jobs.Delete(id); err != nil {
					return err
				}
			}
			n = len(gone)
			return markFailedIndex(tx)
		})
		if err != nil {
			return total, fmt.Errorf("store: prune %s: %w", s.path, dbErr(err))
		}
		total += n
		if n < s.chunk {
			return total, nil
		}
	}
}

// Close closes the journal, waiting for running transactions. Later calls
// return ErrClosed; closing twice is not an error.
func (s *Bolt) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close journal %s: %w", s.path, err)
	}
	return nil
}
