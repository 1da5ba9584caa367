package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A bbolt file (format version 2) starts with two meta pages, written in the
// machine's byte order: a 16-byte page header (id, flags, count, overflow),
// then magic, version, page size and flags (4 bytes each), the root bucket
// (root page, sequence), the freelist page, the high-water mark pgid and the
// transaction ID (8 bytes each), and an FNV-1a 64 checksum of the 56 bytes
// before it. bbolt uses the valid meta page with the higher transaction ID;
// every page below its pgid must be in the file. These numbers are bbolt's
// on-disk format, which it keeps stable across releases; bbolt exposes no
// API to read them without mapping the pages.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	metaOffset     = 16 // the page header
	metaSumLen     = 56 // the bytes the checksum covers
	metaLen        = metaSumLen + 8
	boltNoFreelist = ^uint64(0)
	minPageSize    = 1024
	maxPageSize    = 1 << 24 // bbolt looks for the second meta page up to here
)

// boltMeta is what checkHeader reads from a meta page.
type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use or free
	txid     uint64
}

// parseMeta decodes and validates the meta page at the start of b.
func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < metaOffset+metaLen {
		return boltMeta{}, errors.New("cut short")
	}
	m := b[metaOffset : metaOffset+metaLen]
	e := binary.NativeEndian
	if e.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("no bbolt magic number")
	}
	if v := e.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d (this zmws reads %d)", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if h.Sum64() != e.Uint64(m[metaSumLen:]) {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	mt := boltMeta{
		pageSize: e.Uint32(m[8:]),
		root:     e.Uint64(m[16:]),
		freelist: e.Uint64(m[32:]),
		pgid:     e.Uint64(m[40:]),
		txid:     e.Uint64(m[48:]),
	}
	switch {
	case mt.pageSize < minPageSize || mt.pageSize > maxPageSize || mt.pageSize&(mt.pageSize-1) != 0:
		return boltMeta{}, fmt.Errorf("page size %d", mt.pageSize)
	case mt.pgid < 3 || mt.pgid > 1<<40:
		return boltMeta{}, fmt.Errorf("high-water mark of %d pages", mt.pgid)
	case mt.root < 2 || mt.root >= mt.pgid:
		return boltMeta{}, fmt.Errorf("root page %d outside [2, %d)", mt.root, mt.pgid)
	case mt.freelist != boltNoFreelist && (mt.freelist < 2 || mt.freelist >= mt.pgid):
		return boltMeta{}, fmt.Errorf("freelist page %d outside [2, %d)", mt.freelist, mt.pgid)
	}
	return mt, nil
}

// readMetaAt reads the meta page at off; a short read is an error.
func readMetaAt(f io.ReaderAt, off int64) (boltMeta, error) {
	var buf [metaOffset + metaLen]byte
	if _, err := f.ReadAt(buf[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			return boltMeta{}, errors.New("cut short")
		}
		return boltMeta{}, err
	}
	return parseMeta(buf[:])
}

// checkHeader reads the journal's two meta pages, picks the one bbolt will
// use and checks that the file holds every page below its high-water mark:
// bbolt maps the file and reads pages without bounds checks, so a shorter
// (truncated) file is a SIGBUS or an assertion panic inside bbolt. It reads
// 160 bytes at most; size is the file's size.
func checkHeader(f io.ReaderAt, path string, size int64) (boltMeta, error) {
	corrupt := func(format string, a ...any) error {
		return fmt.Errorf("%w %s: %s", ErrCorrupt, path, fmt.Sprintf(format, a...))
	}
	if size < 2*minPageSize {
		return boltMeta{}, corrupt("the file is %d bytes, too short for bbolt's two meta pages (truncated, or not a journal)", size)
	}
	m0, err0 := readMetaAt(f, 0)
	// The second meta page is one page in; as bbolt does, look for it at
	// every possible page size when the first does not say.
	var m1 boltMeta
	err1 := errors.New("not found")
	if err0 == nil {
		m1, err1 = readMetaAt(f, int64(m0.pageSize))
	} else {
		for ps := int64(minPageSize); ps <= maxPageSize && ps < size; ps <<= 1 {
			if m1, err1 = readMetaAt(f, ps); err1 == nil && int64(m1.pageSize) == ps {
				break
			}
		}
	}
	var m boltMeta
	switch {
	case err0 != nil && err1 != nil:
		return boltMeta{}, corrupt("no valid bbolt meta page (first: %v; second: %v): not a journal, or damaged", err0, err1)
	case err1 != nil || (err0 == nil && m0.txid >= m1.txid):
		m = m0
	default:
		m = m1
	}
	if need := int64(m.pgid) * int64(m.pageSize); size < need {
		return boltMeta{}, corrupt("truncated: the file is %d bytes, its meta page (transaction %d) needs at least %d (%d pages of %d bytes)",
			size, m.txid, need, m.pgid, m.pageSize)
	}
	return m, nil
}

// markerPath is the file beside the journal at path that says the data dir
// has held a journal: zmws.id beside zmws.db.
func markerPath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".id"
}

// MarkerFile is the name of the marker OpenBolt writes beside a journal it
// creates (or finds without one), in the data dir: with it there, a missing
// or empty journal is an error (ErrMissing), not a fresh start.
const MarkerFile = "zmws.id"

// writeMarker writes the marker of the journal at path durably: a temporary
// file, fsync'd, renamed into place, and the directory fsync'd.
func writeMarker(path string) error {
	marker := markerPath(path)
	tmp := marker + ".tmp"
	text := fmt.Sprintf("zmws journal %s first opened %s\n"+
		"While this file exists, zmwsd refuses to start when %s is missing or empty.\n",
		filepath.Base(path), time.Now().UTC().Format(time.RFC3339), filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("store: write journal marker %s: %w", marker, err)
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, marker)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: write journal marker %s: %w", marker, err)
	}
	if d, err := os.Open(filepath.Dir(marker)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// journalState is what preflight found at a journal's path.
type journalState int

const (
	journalFresh    journalState = iota // missing or empty, in a data dir that never had one
	journalExisting                     // passed checkHeader
)

// preflight decides whether the journal at path may be opened by bbolt:
// missing or empty is fresh only without its marker (ErrMissing otherwise);
// anything else must pass checkHeader.
func preflight(path string) (journalState, error) {
	_, err := os.Stat(markerPath(path))
	marked := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("store: open journal %s: %w", path, err)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		if marked {
			return 0, fmt.Errorf("%w: %s is missing, but %s says this data dir had one", ErrMissing, path, markerPath(path))
		}
		return journalFresh, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: open journal %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("store: open journal %s: %w", path, err)
	}
	if fi.Size() == 0 {
		if marked {
			return 0, fmt.Errorf("%w: %s is empty (0 bytes), but %s says this data dir had a journal", ErrMissing, path, markerPath(path))
		}
		return journalFresh, nil
	}
	if _, err := checkHeader(f, path, fi.Size()); err != nil {
		return 0, err
	}
	return journalExisting, nil
}

// openDB opens the bbolt file, turning a panic inside bbolt into ErrCorrupt.
// A memory fault in this goroutine (a read of a mapped page past the end
// of the file) panics instead of killing the process, so it is caught too;
// preflight's size check is what keeps bbolt from making one in the
// goroutine it starts to rebuild the freelist, which no recover reaches. A
// recovered panic leaves bbolt's file descriptor (and its lock) open: the
// caller is expected to give up on the journal.
func openDB(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w %s: bbolt: %v", ErrCorrupt, path, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return bolt.Open(path, 0o600, o)
}

// guard runs fn, turning a panic (or a memory fault) inside bbolt into
// ErrCorrupt naming the file.
func guard(path string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w %s: bbolt: %v", ErrCorrupt, path, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

// checkTree runs bbolt's own consistency check (Tx.Check: every page
// reachable once, free or in use, keys in order) in a read transaction and
// returns its first few findings. The freelist must already be loaded (a
// writable DB loads it at open), or Check rebuilds it on a goroutine whose
// panics nothing catches.
func checkTree(db *bolt.DB, path string) error {
	const keep = 5
	var found []string
	n := 0
	err := guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				if n < keep {
					found = append(found, err.Error())
				}
				n++
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if n > 0 {
		more := ""
		if n > keep {
			more = fmt.Sprintf(" (and %d more)", n-keep)
		}
		return fmt.Errorf("%w %s: bbolt check: %s%s", ErrCorrupt, path, strings.Join(found, "; "), more)
	}
	return nil
}
