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

// BackupReport is what Backup wrote.
type BackupReport struct {
	Path    string // the copy
	Size    int64  // its size in bytes: the journal's pages in use or free, not the room it grew by ahead of need
	Jobs    int    // jobs in it, as Check counts them
	Elapsed time.Duration
}

// backupSuffix names the copy while Backup writes it, beside its final name.
const backupSuffix = ".tmp"

// Backup writes a consistent copy of the journal to the file to while the
// journal stays in use: the copy is the journal as one read transaction
// sees it (bbolt's Tx.WriteTo: both meta pages, then every page up to the
// high-water mark), so it holds every job committed before Backup began and
// none half-written, whatever Commit and Prune do meanwhile. A plain copy of
// the file (cp, rsync) while zmwsd runs is not consistent: pages change under
// it.
//
// The copy is written to to+".tmp" (a stale one from a Backup that died is
// replaced), fsync'd, checked as Check does, and then renamed over to, and
// its directory (made with mode 0700 when missing) fsync'd: to is always a
// whole, sound journal, the old one or the new. Backups of one Bolt run one at
// a time. On an error to is left as it was and the temporary file removed.
//
// Cost: the read transaction lasts while the copy is written (about a second
// per GB with a warm page cache) and checked. Commits go on meanwhile, but
// one that must grow the journal's memory map waits until the transaction
// ends, and pages freed meanwhile are reused only after it; so a backup
// can delay job acceptance for its duration when the journal grows.
func (s *Bolt) Backup(to string) (BackupReport, error) {
	start := time.Now()
	rep := BackupReport{Path: to}
	if s.closed.Load() {
		return rep, ErrClosed
	}
	s.backupMu.Lock()
	defer s.backupMu.Unlock()
	if same, err := samePath(s.path, to); err != nil || same {
		if err == nil {
			err = errors.New("that is the journal itself")
		}
		return rep, fmt.Errorf("store: back up %s to %s: %w", s.path, to, err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return rep, fmt.Errorf("store: back up %s: %w", s.path, err)
	}
	tmp := to + backupSuffix
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("store: back up %s: %w", s.path, err)
	}
	fail := func(err error) (BackupReport, error) {
		_ = os.Remove(tmp)
		return rep, fmt.Errorf("store: back up %s to %s: %w", s.path, tmp, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(err)
	}
	err = dbErr(guard(s.path, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			n, err := tx.WriteTo(f)
			rep.Size = n
			return err
		})
	}))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	got, err := Check(tmp, BoltOptions{})
	if err != nil {
		return fail(fmt.Errorf("the copy does not check: %w", err))
	}
	rep.Jobs = got.Jobs
	if err := os.Rename(tmp, to); err != nil {
		return fail(err)
	}
	if d, err := os.Open(filepath.Dir(to)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// samePath reports whether a and b name one file (b need not exist).
func samePath(a, b string) (bool, error) {
	aa, err := filepath.Abs(a)
	if err != nil {
		return false, err
	}
	bb, err := filepath.Abs(b)
	if err != nil {
		return false, err
	}
	if aa == bb {
		return true, nil
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb), nil
}
