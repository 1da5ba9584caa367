package broker

import "time"

// The broker's records: what it asks a journal to keep (Flush gives a
// Batch), what it restores from one (Restore takes a Snapshot), and what an
// Archive answers for a job it no longer holds in memory. The broker owns
// these types and the interfaces it needs of a journal (Archive); a journal
// (package store) implements them and imports broker, never the reverse.

// JobRecord is everything kept about one job: the submission, its progress,
// and for a finished job its result. A record is stored and returned whole;
// nil and empty Params, Input, Input frames and Output stay distinct. A
// journal returns times in UTC without a monotonic reading.
type JobRecord struct {
	ID      string // unique and sortable (a ULID); the primary key
	Service string
	Sync    bool
	State   string // protocol.JobScheduled, JobQueued, JobActive, JobComplete or JobFailed
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
	NotBefore time.Time     // a scheduled job's time, or a retry's backoff: not dispatched before this instant
	Priority  int           // higher first; 0 by default (and in records from before priorities)
}

// ServiceRecord is a service some worker once offered, until a Batch
// forgets it.
type ServiceRecord struct {
	Name      string
	FirstSeen time.Time
	// Paused and Draining: an operator paused or drained it (SERVER-PAUSE,
	// SERVER-DRAIN) and no SERVER-RESUME ended it yet.
	Paused   bool `json:",omitempty"`
	Draining bool `json:",omitempty"`
}

// ServiceCounts are a service's job counters: how many of its jobs ever
// finished complete and failed. A journal keeps them apart from the
// service's record, so a journal from before them opens as it is.
type ServiceCounts struct {
	Name      string
	Completed uint64
	Failed    uint64
}

// ScheduleRecord is a schedule's last tick (schedule.go): the tick fired
// or skipped last, and the ID of the job its last fired tick made. A
// journal keeps them apart from jobs and services, so a journal from
// before them opens as it is.
type ScheduleRecord struct {
	Name     string
	LastTick time.Time
	LastJob  string
}

// Batch is a set of changes a journal applies atomically (store.Store's
// Commit). Flush gathers every change since the last Flush in one Batch,
// so they share one fsync. Upserts are applied in order, then deletes: when
// a job appears twice, the last record wins. The journal encodes the
// records during Commit; no one changes them until it returns.
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
	// Schedules are upserts of schedules' last ticks by Name; a zero
	// LastTick deletes a schedule's record.
	Schedules []ScheduleRecord
	// Probe asks for a write of the journal's own marker, nothing else: how
	// the broker learns that a journal whose commit failed commits again,
	// when no job comes to try it (SERVER-HEALTH, /healthz).
	Probe bool
}

// Len returns the number of changes in b (a Probe counts as one).
func (b *Batch) Len() int {
	n := len(b.Services) + len(b.Jobs) + len(b.Deletes) + len(b.Counts) + len(b.Forgets) + len(b.Schedules)
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
	clear(b.Schedules)
	b.Schedules = b.Schedules[:0]
	b.Services, b.Jobs, b.Deletes, b.Counts, b.Forgets = b.Services[:0], b.Jobs[:0], b.Deletes[:0], b.Counts[:0], b.Forgets[:0]
	b.Probe = false
}

// Snapshot is what a journal gives Restore at start-up.
type Snapshot struct {
	Services []ServiceRecord // every service ever seen, sorted by name
	Counts   []ServiceCounts // the counters of services in Services that have any, sorted by name
	Jobs     []JobRecord     // every unfinished (queued, active) job, sorted by ID
	Finished []JobRecord     // the newest finished jobs, oldest first by finish time
	// Schedules are the last ticks of schedules, sorted by name (in JSON,
	// left out when none: the dumps of journals from before them stay).
	Schedules []ScheduleRecord `json:",omitempty"`
}

// Archive is the read side of a journal: the retained jobs the broker no
// longer holds in memory. Its methods may block on I/O; the broker never
// calls them (see Lookup): the server does, off the loop goroutine, and
// may call them from any goroutine.
type Archive interface {
	// Job returns the retained job with this ID; ok is false when there is none.
	Job(id string) (rec JobRecord, ok bool, err error)
	// JobByKey returns the ID of the retained job with this idempotency key.
	JobByKey(key string) (id string, ok bool, err error)
}
