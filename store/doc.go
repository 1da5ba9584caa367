// Package store is where jobs live: the services ever seen, queued and active
// jobs with their parameters and input, and finished jobs' results while
// they are retained. One interface, Store, has two implementations: Memory
// (for a broker without a data dir, and tests) and Bolt, a durable journal
// in one go.etcd.io/bbolt file. store imports broker (whose record types,
// JobRecord, Batch, Snapshot, ..., it stores, and whose broker.Archive it
// implements), protocol and bbolt only, and builds without cgo; broker
// imports no store.
//
// # Place in the system
//
// The broker decides what to record; the server loop collects those records
// in a Batch and commits them, one Commit per loop turn or few milliseconds
// (group commit), before it sends the replies that depend on them: a job ID
// is handed out only once its job is durable. At start-up Load gives the
// broker its services, its unfinished jobs and its recent history; Job and
// JobByKey answer for retained jobs the broker no longer holds in memory;
// Prune, on its own goroutine, drops old results.
//
//	s, err := store.OpenBolt(filepath.Join(dataDir, store.BoltFile), store.BoltOptions{})
//	if err != nil { return err } // ErrLocked: another zmwsd; ErrCorrupt: operator's call
//	defer s.Close()
//	snap, err := s.Load(100)     // services, queued+active jobs, last 100 finished
//	...
//	var b store.Batch            // per loop turn
//	b.Jobs = append(b.Jobs, &store.JobRecord{ID: id, Service: "STR-REV", State: protocol.JobQueued, ...})
//	if err := s.Commit(&b); err != nil { /* refuse these submissions: 503 */ }
//	b.Reset()                    // now send the job IDs
//	...
//	n, err := s.Prune(now.Add(-7*24*time.Hour), 100_000, 1<<30) // in the background
//	...
//	rep, err := store.Compact(path, store.BoltOptions{}) // closed journals only: gives free pages back
//
// # Semantics
//
//   - A Batch is applied whole or not at all. Upserts replace whole records
//     in order (the last record of a job wins), then deletes run; services,
//     then their counters, then forgets of services (with their counters).
//     An empty batch is a no-op.
//   - Records come back as they went in, nil and empty distinct (Params,
//     Input, each Input frame, Output, ExitCode); times in UTC without a
//     monotonic reading. The store keeps no reference to a caller's record.
//   - Idempotency keys: JobByKey finds the job whose record carries the key,
//     while that job is retained. A record that changes or drops its key
//     frees the old one; deleting or pruning a job frees its key. A batch in
//     which a key would name two jobs fails with ErrKeyConflict: the broker
//     answers a resubmission with the existing job instead.
//   - Commit refuses (ErrInvalid) an empty ID, a state other than the four
//     protocol.Job* states, and IDs, keys or service names longer than
//     MaxKeyLen.
//   - Retention: Prune deletes finished (complete or failed) jobs that
//     finished before a time, and those beyond the newest N; it never touches
//     queued or active jobs, and a failed job put back in the queue is no
//     longer finished. Load returns only the newest finished jobs it is asked
//     for, so a large retention does not cost memory at start-up.
//   - Concurrency: every method of both implementations may be called from
//     any goroutine. Bolt's Commit and Prune transactions take turns on
//     bbolt's writer lock; reads see a consistent snapshot beside them.
//
// # Durability
//
// One Commit is one bbolt write transaction: the changed pages are written
// and fdatasync'd, then the meta page that makes them current, and fsync'd
// again (bbolt's default, NoSync off). When Commit returns nil the batch
// survives a crash of the process or the machine, as far as the disk honours
// fsync. A Commit error (full disk, I/O error, a MaxSize cap) is returned
// wrapped with the file name; the transaction is rolled back and nothing of
// the batch is applied. TestBolt_SurvivesKill kills a committing child with
// SIGKILL and finds every acknowledged batch, and no partial one.
//
// The journal is locked with flock while open: a second process (a second
// zmwsd on the same data dir) gets ErrLocked after BoltOptions.Timeout
// (default 1 s). A record that does not decode is ErrCorrupt naming the file
// and the job, never skipped: restoring a backup or moving the file aside is
// the operator's decision.
//
// # Journal layout (format 1)
//
// Buckets, with keys and values:
//
//	meta      "format" → 0x01; "failedIndex" → the ID of the last write
//	          transaction that kept the failed index, 8 bytes big-endian
//	jobs      job ID → job record
//	services  name → service record: 0x01, time FirstSeen; or 0x02, time
//	          FirstSeen, a flags byte (0x01 paused, 0x02 draining)
//	keys      idempotency key → job ID
//	open      job ID → "" for each queued or active job (Load reads these)
//	finished  8-byte big-endian finish time in Unix ns ++ job ID → idempotency
//	          key, for each finished job (Prune walks this in time order)
//	failed    finish time ++ job ID (as finished) → uvarint-length service,
//	          uvarint-length owner, for each failed job (failed.go: built at
//	          open when missing or stale)
//	counts    name → a service's job counters: 0x01, uvarint Completed,
//	          uvarint Failed; no entry for none. Made by the first Commit
//	          with counters, so a journal from before them (which has no
//	          such bucket) opens unchanged, and a zmws from before them,
//	          which reads only the buckets above, opens a journal that has
//	          one (and ignores it)
//	schedules name → a schedule's last tick: 0x01, time LastTick, string
//	          LastJob; made by the first Commit with one, like counts
//
// Commit maintains keys, open, finished and failed from each record's old and new
// State, Key and Finished. A job record is a version byte and its fields in
// a fixed order, using encoding/binary's varints:
//
//	0x01                      version; a new layout takes 0x02, and decoders
//	                          keep reading the old ones
//	str State, str Key, time Finished    first, so the index upkeep reads
//	                          them without decoding the rest
//	str ID, str Service
//	flags byte                1 Sync, 2 Truncated, 4 ExitCode present,
//	                          8 Owner present, 16 Priority present
//	[varint ExitCode]         when flag 4
//	varint Attempts, varint Retries, varint TTR (ns)
//	time Created, time Started, time NotBefore
//	str Worker, str Code, str Error
//	Params                    uvarint n+1 (0: nil map), n × (str key, str value), keys sorted
//	Input                     uvarint n+1 (0: nil), n × bytes
//	bytes Output
//	[str Owner]               when flag 8
//	[varint Priority]         when flag 16 (never 0: a record without it,
//	                          as every record from before priorities, is 0)
//
//	str   = uvarint length, bytes
//	bytes = uvarint length+1 (0: nil), bytes
//	time  = varint Unix seconds, uvarint nanoseconds (the zero Time is its
//	        own Unix seconds, so it round-trips)
//
// Decoding is strict: unknown versions or flags, short fields and trailing
// bytes are errors. FuzzDecodeRecord checks that the decoder never panics
// and that what it accepts round-trips.
//
// The binary layout was chosen over encoding/json by BenchmarkCodec (AMD
// EPYC, 2 cores): a new job (20-byte input, 2 params) is 130 bytes against
// JSON's 438, encodes in 0.3 µs against 3.7 µs and decodes in 0.9 µs against
// 9.9 µs; a finished job with 4 KiB of output (JSON's base64) is 4,244 bytes
// against 5,928 and decodes in 3.5 µs against 69 µs. Decoding is what Load
// and Job pay for every record.
//
// bbolt runs with NoFreelistSync and the hashmap freelist, as etcd does: the
// freelist is rebuilt from the pages at open instead of written by every
// commit. After pruning 200,000 finished jobs, a one-job Commit took 2.8 ms
// with a synced array freelist and 0.67 ms without; reopening a 435 MB
// journal took 31 ms.
//
// # Measured cost
//
// BenchmarkCommit, new small jobs per Commit (one fsync pair each), on the
// same machine (ext4 on a virtual disk):
//
//	batch      1:  0.62 ms/op    1,600 jobs/s   (memory: 290,000 jobs/s)
//	batch     10:  0.92 ms/op   11,000 jobs/s
//	batch    100:  1.3  ms/op   76,000 jobs/s
//	batch  1,000:  7.3  ms/op  137,000 jobs/s   (memory: 390,000 jobs/s)
//
// BenchmarkCommit_Lifecycle (each job written queued, active, complete)
// finishes 1,050 / 8,500 / 29,000 / 46,000 jobs/s at batches of 1 / 10 /
// 100 / 1,000. Group commit is what makes durability affordable.
// BenchmarkBolt_Prune with ZMWS_BENCH_JOBS=1000000 pruned a million finished
// jobs (1 KiB output each) in 6.9 s, while single-job Commits on another
// goroutine never waited more than 55 ms. BenchmarkBolt_Load loads a
// million queued jobs in 2.3 s.
//
// # Limits
//
// The file never shrinks: pages freed by Prune are reused, and compacting
// is an offline job (bbolt compact). OpenBolt checks the file's size
// against the meta pages' high-water mark before bbolt maps it, runs
// Tx.Check, and turns panics inside bbolt on its own goroutine into
// ErrCorrupt; a damaged page (not a truncation) that makes bbolt panic on
// the goroutine it starts at open to rebuild the freelist still crashes
// the process. Check visits every page under a guard first, so it does not. Memory's Prune sorts
// its finished jobs on each call.
package store
