package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

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

// JobRecord is everything the store keeps about one job: the submission, its
// progress, and for a finished job its result. A record is stored and
// returned whole; nil and empty Params, Input, Input frames and Output stay
// distinct. Times come back in UTC without a monotonic reading.
type JobRecord struct {
	ID      string // unique and sortable (a ULID); the primary key
	Service string
	Sync    bool
	State   string // protocol.JobQueued, JobActive, JobComplete or JobFailed
	Params  map[string]string
	Input   [][]byte
	Key     string // idempotency key; "" for none
	Owner   string // who submitted it (a client's public key, "token:NAME"); "" for no one

	Attempts int
	Created  time.Time
	Started  time.Time
	Finished time.Time
	Worker   string

	ExitCode  *int
	Code      string
	Error     string
	Output    []byte
	Truncated bool

	TTR       time.Duration // time to run for this job; 0: the service's default
	Retries   int           // retries left for a job whose command failed (opt-in)
	NotBefore time.Time     // backoff: not dispatched before this instant
}

// Finished reports whether state is a final one (complete or failed). Only
// finished jobs are pruned.
func Finished(state string) bool {
	return state == protocol.JobComplete || state == protocol.JobFailed
}

// ServiceRecord is a service some worker once offered, until a Batch
// forgets it.
type ServiceRecord struct {
	Name      string
	FirstSeen time.Time
}

// ServiceCounts are a service's job counters: how many of its jobs ever
// finished complete and failed. They are kept apart from the service's
// record (a bucket of their own in Bolt), so a journal from before them
// opens as it is, and one with them opens in a zmws from before them.
type ServiceCounts struct {
	Name      string
	Completed uint64
	Failed    uint64
}

// Batch is a set of changes that Commit applies atomically. The caller
// collects every change of a loop turn (or a few milliseconds) in one Batch,
// so that they share one fsync. Upserts are applied in order, then deletes:
// when a job appears twice, the last record wins. The store encodes the
// records during Commit; the caller must not change them until it returns.
type Batch struct {
	Services []ServiceRecord // upserts by Name
	Jobs     []*JobRecord    // upserts by ID, whole records
	Deletes  []string        // job IDs; deleting an absent job is not an error
	// Counts are upserts of services' counters by Name, after Services;
	// counts of zero delete a service's entry.
	Counts []ServiceCounts
	// Forgets are service names to forget, with their counters (after
	// Services and Counts: a batch that records a service and forgets it
	// leaves it forgotten).
	Forgets []string
	// Probe asks for a write of the store's own marker, nothing else: how
	// the broker learns that a store whose commit failed commits again,
	// when no job comes to try it (SERVER-HEALTH, /healthz).
	Probe bool
}

// Len returns the number of changes in b (a Probe counts as one).
func (b *Batch) Len() int {
	n := len(b.Services) + len(b.Jobs) + len(b.Deletes) + len(b.Counts) + len(b.Forgets)
	if b.Probe {
		n++
	}
	return n
}

// Reset empties b, keeping its capacity.
func (b *Batch) Reset() {
	clear(b.Services)
	clear(b.Jobs) // let the records go
	clear(b.Deletes)
	clear(b.Counts)
	clear(b.Forgets)
	b.Services, b.Jobs, b.Deletes, b.Counts, b.Forgets = b.Services[:0], b.Jobs[:0], b.Deletes[:0], b.Counts[:0], b.Forgets[:0]
	b.Probe = false
}

// Snapshot is what Load returns at start-up.
type Snapshot struct {
	Services []ServiceRecord // every service ever seen, sorted by name
	Counts   []ServiceCounts // the counters of services in Services that have any, sorted by name
	Jobs     []JobRecord     // every unfinished (queued, active) job, sorted by ID
	Finished []JobRecord     // the newest finished jobs, oldest first by finish time
}

// Store is where jobs live. Every implementation is safe for concurrent use:
// Commit and Prune may run on different goroutines, lookups on any.
//
// Retention: a job is retained from its first Commit until a Batch deletes it
// or Prune removes it (finished jobs only). While retained, Job finds it by
// ID and JobByKey by its idempotency key.
type Store interface {
	// Commit applies b atomically: all of it or, on error, none of it. When
	// it returns nil, the batch is durable (for Bolt: written and fsync'd).
	// An empty batch is a no-op.
	Commit(b *Batch) error
	// Load returns the services, the unfinished jobs, and the newest
	// `finished` finished jobs (none when finished <= 0). Older finished
	// jobs stay retained and answer Job.
	Load(finished int) (Snapshot, error)
	// Job returns the retained job with this ID; ok is false when there is none.
	Job(id string) (rec JobRecord, ok bool, err error)
	// JobByKey returns the ID of the retained job with this idempotency key.
	JobByKey(key string) (id string, ok bool, err error)
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
		case protocol.JobQueued, protocol.JobActive, protocol.JobComplete, protocol.JobFailed:
		default:
			return fmt.Errorf("%w: job %s: unknown state %q", ErrInvalid, j.ID, j.State)
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
