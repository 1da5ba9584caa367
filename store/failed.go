package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// The index of failed jobs. The bucket failed holds an entry for each
// retained failed job, keyed as the finished index (finishStamp ++ job ID)
// so a page of them, newest first, is a walk of the index from a cursor;
// its value is the job's service and owner, so the filters of a
// FailedQuery read no record they leave out. Commit and Prune keep it in
// the transaction that changes the job.
//
// A journal written by a zmws without the index, or written since by one
// (a downgrade), gets it rebuilt when OpenBolt opens it: every write
// transaction of this code records its own ID under meta's failedIndex, so
// an index whose mark is not the journal's last transaction was not kept
// by every write, and is built again from the finished jobs (a lookup of
// each one's record). Check, which never writes, checks a current index
// and skips a stale one.

var (
	bucketFailed = []byte("failed")
	// metaFailedIndex holds the ID of the last write transaction that
	// kept the index of failed jobs, 8 bytes big-endian.
	metaFailedIndex = []byte("failedIndex")
)

type (
	// FailedQuery selects failed jobs (see Bolt.Failed).
	FailedQuery = broker.FailedQuery
	// FailedPage is a page of failed jobs.
	FailedPage = broker.FailedPage
)

var (
	_ broker.FailedArchive = (*Bolt)(nil)
	_ broker.FailedArchive = (*Memory)(nil)
)

// failedValue is a failed index entry's value: the service and the owner.
func failedValue(service, owner string) []byte {
	return appendString(appendString(nil, service), owner)
}

// decodeFailedValue splits a failed index entry's value.
func decodeFailedValue(v []byte) (service, owner []byte, err error) {
	d := decoder{b: v}
	service = d.rawString()
	owner = d.rawString()
	return service, owner, d.err
}

// markFailedIndex records that tx kept the index of failed jobs.
func markFailedIndex(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: the meta bucket is missing", ErrCorrupt)
	}
	return meta.Put(metaFailedIndex, binary.BigEndian.AppendUint64(nil, uint64(tx.ID())))
}

// failedIndexCurrent reports whether tx's index of failed jobs was kept by
// the last write transaction before tx (a read transaction).
func failedIndexCurrent(tx *bolt.Tx) bool {
	meta := tx.Bucket(bucketMeta)
	if meta == nil || tx.Bucket(bucketFailed) == nil {
		return false
	}
	v := meta.Get(metaFailedIndex)
	return len(v) == 8 && binary.BigEndian.Uint64(v) == uint64(tx.ID())
}

// rebuildFailed makes the index of failed jobs again from the finished
// jobs' records, in tx (a write transaction), and marks it kept.
func (s *Bolt) rebuildFailed(tx *bolt.Tx) error {
	if tx.Bucket(bucketFailed) != nil {
		if err := tx.DeleteBucket(bucketFailed); err != nil {
			return err
		}
	}
	failed, err := tx.CreateBucket(bucketFailed)
	if err != nil {
		return err
	}
	bk, err := s.buckets(tx)
	if err != nil {
		return err
	}
	err = bk.finished.ForEach(func(k, _ []byte) error {
		if len(k) <= finishKeyLen {
			return fmt.Errorf("%w %s: finished index key %x", ErrCorrupt, s.path, k)
		}
		v := bk.jobs.Get(k[finishKeyLen:])
		if v == nil {
			return s.corrupt(k[finishKeyLen:], fmt.Errorf("in the index of finished jobs but missing"))
		}
		r, err := decodeRecordOf(v, false)
		switch {
		case err != nil:
			return s.corrupt(k[finishKeyLen:], err)
		case r.State != protocol.JobFailed:
			return nil
		}
		return failed.Put(bytes.Clone(k), failedValue(r.Service, r.Owner))
	})
	if err != nil {
		return err
	}
	return markFailedIndex(tx)
}

// Failed returns a page of the retained failed jobs q selects, newest first
// by finish time then ID, without their output (Output nil): a walk of the index of failed jobs from q.After,
// reading the records of the jobs it returns only. A filter by service or
// owner walks the index entries of the jobs it leaves out (not their
// records) until the page is full.
func (s *Bolt) Failed(q FailedQuery) (FailedPage, error) {
	var page FailedPage
	limit := max(q.Limit, 1)
	err := s.view(func(bk buckets) error {
		if bk.failed == nil {
			return fmt.Errorf("%w %s: the index of failed jobs is missing", ErrCorrupt, s.path)
		}
		c := bk.failed.Cursor()
		var k, v []byte
		if q.After == "" {
			k, v = c.Last()
		} else {
			stamp, id, ok := broker.ParseFailedCursor(q.After)
			if !ok {
				return fmt.Errorf("%w: cursor %q", ErrInvalid, q.After)
			}
			// The newest entry before the cursor's job.
			if k, _ = c.Seek(append(binary.BigEndian.AppendUint64(nil, stamp), id...)); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		since := finishStamp(q.Since)
		for ; k != nil; k, v = c.Prev() {
			if len(k) <= finishKeyLen {
				return fmt.Errorf("%w %s: failed index key %x", ErrCorrupt, s.path, k)
			}
			if !q.Since.IsZero() && bytes.Compare(k[:finishKeyLen], since[:]) < 0 {
				break
			}
			service, owner, err := decodeFailedValue(v)
			if err != nil {
				return fmt.Errorf("%w %s: failed index entry of job %q: %v", ErrCorrupt, s.path, k[finishKeyLen:], err)
			}
			if (q.Service != "" && string(service) != q.Service) || (q.Owner != "" && string(owner) != q.Owner) {
				continue
			}
			if len(page.Jobs) == limit {
				last := page.Jobs[limit-1]
				page.Next = broker.FailedCursor(broker.FinishStamp(last.Finished), last.ID)
				break
			}
			id := k[finishKeyLen:]
			v := bk.jobs.Get(id)
			if v == nil {
				return s.corrupt(id, fmt.Errorf("in the index of failed jobs but missing"))
			}
			r, err := decodeRecordOf(v, false)
			if err == nil && r.ID != string(id) {
				err = fmt.Errorf("record names job %q", r.ID)
			}
			if err != nil {
				return s.corrupt(id, err)
			}
			page.Jobs = append(page.Jobs, r)
		}
		return nil
	})
	if err != nil {
		return FailedPage{}, fmt.Errorf("failed jobs: %w", err)
	}
	return page, nil
}

// checkFailed checks a current index of failed jobs against the records:
// an entry, with the job's service and owner, for each failed job and for
// no other. It returns how many failed jobs there are.
func (s *Bolt) checkFailed(bk buckets) (int, error) {
	n := 0
	err := bk.jobs.ForEach(func(id, _ []byte) error {
		r, _, err := s.job(bk, id)
		if err != nil || r.State != protocol.JobFailed {
			return err
		}
		n++
		v := bk.failed.Get(finishKey(r.Finished, r.ID))
		if v == nil || !bytes.Equal(v, failedValue(r.Service, r.Owner)) {
			return s.corrupt(id, fmt.Errorf("failed, but not so in the index of failed jobs"))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if k := bk.failed.Stats().KeyN; k != n {
		return 0, fmt.Errorf("%w %s: %d entries in the index of failed jobs for %d failed jobs", ErrCorrupt, s.path, k, n)
	}
	return n, nil
}

// Failed returns a page of the retained failed jobs q selects, as
// Bolt.Failed does. It decodes every failed job's record and sorts them:
// O(n log n) in the failed jobs.
func (m *Memory) Failed(q FailedQuery) (FailedPage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return FailedPage{}, fmt.Errorf("failed jobs: %w", ErrClosed)
	}
	var cursor []byte
	if q.After != "" {
		stamp, id, ok := broker.ParseFailedCursor(q.After)
		if !ok {
			return FailedPage{}, fmt.Errorf("failed jobs: %w: cursor %q", ErrInvalid, q.After)
		}
		cursor = append(binary.BigEndian.AppendUint64(nil, stamp), id...)
	}
	since := finishStamp(q.Since)
	type entry struct {
		key []byte
		rec JobRecord
	}
	var all []entry
	for id, j := range m.jobs {
		if j.state != protocol.JobFailed {
			continue
		}
		k := finishKey(j.finished, id)
		if (cursor != nil && bytes.Compare(k, cursor) >= 0) || (!q.Since.IsZero() && bytes.Compare(k[:finishKeyLen], since[:]) < 0) {
			continue
		}
		r, err := decodeRecordOf(j.rec, false)
		if err != nil {
			return FailedPage{}, fmt.Errorf("failed jobs: %w in memory: job %s: %v", ErrCorrupt, id, err)
		}
		if (q.Service != "" && r.Service != q.Service) || (q.Owner != "" && r.Owner != q.Owner) {
			continue
		}
		all = append(all, entry{k, r})
	}
	slices.SortFunc(all, func(a, b entry) int { return -cmp.Compare(string(a.key), string(b.key)) })
	limit := max(q.Limit, 1)
	var page FailedPage
	for _, e := range all[:min(limit, len(all))] {
		page.Jobs = append(page.Jobs, e.rec)
	}
	if len(all) > limit {
		last := page.Jobs[limit-1]
		page.Next = broker.FailedCursor(broker.FinishStamp(last.Finished), last.ID)
	}
	return page, nil
}
