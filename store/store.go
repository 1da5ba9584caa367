package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// Errors. Commit, Load and the lookups wrap them with the operation and, for
// a journal, its path; test with errors.Is.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")
	// ErrLocked is returned by OpenBolt when another process holds the
	// journal's file lock for longer than BoltOptions.Timeout.
	ErrLocked = errors.New("store: data dir in use by another process")
	// ErrCorrupt is returned when the journal's file or one of its records
	// cannot be read. The message names the file and, for a record, the job.
	ErrCorrupt = errors.New("store: corrupt journal")
	// ErrMissing is returned by OpenBolt when the journal is missing or
	// empty in a data dir whose marker (MarkerFile) says it had one: a
	// lost journal, not a fresh start.
	ErrMissing = errors.New("store: journal missing")
	// ErrFormat is returned by OpenBolt for a journal written by a newer zmws
	// in a format this binary does not know.
	ErrFormat = errors.New("store: unknown journal format")
	// ErrInvalid is returned by Commit for a record it refuses to store: an
	// empty or too long ID or key, or an unknown state. No part of the
	// batch is applied.
	ErrInvalid = errors.New("store: invalid record")
	// ErrKeyConflict is returned by Commit when a record's idempotency key
	// already names another retained job. No part of the batch is applied.
	ErrKeyConflict = errors.New("store: idempotency key names another job")
)

// MaxKeyLen bounds a job ID, an idempotency key and a service name.
const MaxKeyLen = 1024

// The records a Store keeps are the broker's (broker/record.go): the
// broker decides what to record and the store implements what it needs of a
// journal (broker.Archive), so store imports broker and never the reverse.
// The aliases keep the store's own names for them.
type (
	// JobRecord is everything the store keeps about one job.
	JobRecord = broker.JobRecord
	// ServiceRecord is a service some worker once offered.
	ServiceRecord = broker.ServiceRecord
	// ServiceCounts are a service's job counters.
	ServiceCounts = broker.ServiceCounts
	// Batch is a set of changes that Commit applies atomically.
	Batch = broker.Batch
	// Snapshot is what Load returns at start-up.
	Snapshot = broker.Snapshot
	// ScheduleRecord is a schedule's last tick.
	ScheduleRecord = broker.ScheduleRecord
)

// Finished reports whether state is a final one (complete or failed). Only
// finished jobs are pruned.
func Finished(state string) bool {
	return state == protocol.JobComplete || state == protocol.JobFailed
}

// Store is where jobs live. Every implementation is safe for concurrent use:
// Commit and Prune may run on different goroutines, lookups on any.
//
// Retention: a job is retained from its first Commit until a Batch deletes it
// or Prune removes it (finished jobs only). While retained, Job finds it by
// ID and JobByKey by its idempotency key.
type Store interface {
	// Job and JobByKey (broker.Archive) are the lookups: Job returns the
	// retained job with this ID, ok false when there is none; JobByKey
	// the ID of the retained job with this idempotency key.
	broker.Archive
	// Commit applies b atomically: all of it or, on error, none of it. When
	// it returns nil, the batch is durable (for Bolt: written and fsync'd).
	// An empty batch is a no-op.
	Commit(b *Batch) error
	// Load returns the services, the unfinished jobs, and the newest
	// `finished` finished jobs (none when finished <= 0). Older finished
	// jobs stay retained and answer Job.
	Load(finished int) (Snapshot, error)
	// Prune deletes finished jobs that finished before olderThan, those
	// beyond the newest keep finished jobs, and the oldest ones while the
	// finished jobs' stored bytes (RecordSize of each) exceed maxBytes; it
	// returns how many it deleted. Pruning goes oldest first (by finish
	// time, then ID), so what remains is always the newest finished jobs;
	// a newest job larger than maxBytes on its own goes too. A zero
	// olderThan disables the age bound, keep <= 0 the count bound,
	// maxBytes <= 0 the bytes bound: Prune(time.Time{}, 0, 0) deletes
	// nothing. Unfinished jobs are never pruned, nor counted. Bolt prunes
	// in transactions of at most 1,000 jobs, so Commit is never held up
	// for long.
	Prune(olderThan time.Time, keep int, maxBytes int64) (int, error)
	// Close releases the store. Later calls return ErrClosed.
	Close() error
}

// validate checks what Commit requires of b before it changes anything.
func validate(b *Batch) error {
	for _, s := range b.Services {
		if s.Name == "" || len(s.Name) > MaxKeyLen {
			return fmt.Errorf("%w: service name of %d bytes", ErrInvalid, len(s.Name))
		}
	}
	for _, c := range b.Counts {
		if c.Name == "" || len(c.Name) > MaxKeyLen {
			return fmt.Errorf("%w: counters of a service name of %d bytes", ErrInvalid, len(c.Name))
		}
	}
	for i, j := range b.Jobs {
		switch {
		case j == nil:
			return fmt.Errorf("%w: job %d of the batch is nil", ErrInvalid, i)
		case j.ID == "" || len(j.ID) > MaxKeyLen:
			return fmt.Errorf("%w: job ID of %d bytes", ErrInvalid, len(j.ID))
		case len(j.Key) > MaxKeyLen:
			return fmt.Errorf("%w: job %s: idempotency key of %d bytes exceeds %d", ErrInvalid, j.ID, len(j.Key), MaxKeyLen)
		}
		switch j.State {
		case protocol.JobScheduled, protocol.JobQueued, protocol.JobActive, protocol.JobComplete, protocol.JobFailed:
		default:
			return fmt.Errorf("%w: job %s: unknown state %q", ErrInvalid, j.ID, j.State)
		}
	}
	for _, r := range b.Schedules {
		if r.Name == "" || len(r.Name) > MaxKeyLen {
			return fmt.Errorf("%w: schedule name of %d bytes", ErrInvalid, len(r.Name))
		}
	}
	for _, id := range b.Deletes {
		if id == "" || len(id) > MaxKeyLen {
			return fmt.Errorf("%w: delete of a job ID of %d bytes", ErrInvalid, len(id))
		}
	}
	return nil
}

// RecordSize returns the stored size of j in bytes: its encoded record, as
// the bytes bound of Prune counts it. A journal adds about 60 bytes of index
// entries and bbolt's page overhead (docs/DURABILITY.md has the figures).
func RecordSize(j *JobRecord) int { return len(appendRecord(nil, j)) }

// finishKeyLen is the length of finishStamp's result.
const finishKeyLen = 8

// finishStamp orders finished jobs for Prune: nanoseconds since the Unix
// epoch, big-endian so byte order is time order, clamped to [1970, 2262].
func finishStamp(t time.Time) [finishKeyLen]byte {
	var n uint64
	switch s := t.Unix(); {
	case s < 0:
		n = 0
	case s >= math.MaxInt64/int64(time.Second):
		n = math.MaxInt64
	default:
		n = uint64(t.UnixNano())
	}
	var b [finishKeyLen]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b
}

// finishKey is a finished job's key in the finish-time index: its stamp then
// its ID, so ties order by ID.
func finishKey(t time.Time, id string) []byte {
	s := finishStamp(t)
	return append(s[:], id...)
}
