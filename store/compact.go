package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// compactTxSize bounds the bytes of records one transaction of Compact's
// copy holds: bbolt keeps a transaction's dirty pages in memory.
const compactTxSize = 64 << 20

// compactSuffix names Compact's copy beside the journal until it is renamed
// over it: zmws.db.compact.
const compactSuffix = ".compact"

// CompactReport is what Compact did.
type CompactReport struct {
	Before  int64 // the journal's size in bytes before
	After   int64 // and after
	Jobs    int   // jobs in the journal (all of them are kept)
	Elapsed time.Duration
}

// Compact rewrites the journal at path without its free pages and renames
// the copy over it. bbolt reuses the pages that deleted and pruned jobs
// free, but never shrinks its file; Compact gives that space back.
//
// It takes the journal's file lock as OpenBolt does, so it fails with
// ErrLocked while a zmwsd (or any other store) has the journal open, and no
// zmwsd can open it while Compact runs. It opens the journal with OpenBolt's
// checks, copies every bucket with bbolt's Compact into path+".compact"
// (pages filled, one fsync at the end), runs Check on the copy and compares
// its job count with the original's, then renames the copy into place and
// fsyncs the directory. On any error the original is left as it was and the
// copy removed. The copy needs free disk space for the journal's data.
func Compact(path string, opts BoltOptions) (CompactReport, error) {
	start := time.Now()
	var rep CompactReport
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("store: compact %s: %w", path, err)
	}
	src, err := OpenBolt(path, opts)
	if err != nil {
		return rep, err
	}
	defer src.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return rep, fmt.Errorf("store: compact %s: %w", path, err)
	}
	rep.Before = fi.Size()
	if err := src.view(func(bk buckets) error {
		rep.Jobs = bk.jobs.Stats().KeyN
		return nil
	}); err != nil {
		return rep, fmt.Errorf("store: compact %s: %w", path, err)
	}

	// We hold the journal's lock: a copy left here is from a Compact that
	// died, and nobody else's.
	tmp := path + compactSuffix
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("store: compact %s: %w", path, err)
	}
	fail := func(err error) (CompactReport, error) {
		_ = os.Remove(tmp)
		return rep, fmt.Errorf("store: compact %s into %s: %w", path, tmp, err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{
		Timeout:        opts.Timeout,
		NoSync:         true, // one Sync at the end
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return fail(err)
	}
	err = guard(path, func() error { return bolt.Compact(dst, src.db, compactTxSize) })
	if err == nil {
		// The copy's index of failed jobs is the journal's, which OpenBolt
		// made current; its transactions are the copy's own.
		err = dst.Update(markFailedIndex)
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	got, err := Check(tmp, opts)
	switch {
	case err != nil:
		return fail(fmt.Errorf("the copy does not check: %w", err))
	case got.Jobs != rep.Jobs:
		return fail(fmt.Errorf("the copy holds %d jobs, the journal %d", got.Jobs, rep.Jobs))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	rep.After = got.Size
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// Space returns the journal file's size and how many of its bytes hold no
// data: pages on bbolt's freelist and the room bbolt grew the file by ahead
// of need. Compact gives back about free.
func (s *Bolt) Space() (size, free int64, err error) {
	if s.closed.Load() {
		return 0, 0, ErrClosed
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0, 0, fmt.Errorf("store: space of %s: %w", s.path, err)
	}
	var hwm int64
	err = dbErr(guard(s.path, func() error {
		return s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil })
	}))
	if err != nil {
		return 0, 0, fmt.Errorf("store: space of %s: %w", s.path, err)
	}
	freePages := int64(s.db.Stats().FreePageN)
	return fi.Size(), fi.Size() - hwm + freePages*int64(s.db.Info().PageSize), nil
}
