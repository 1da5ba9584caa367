// Package broker is zmws' broker as a pure state machine: it decides, the
// server loop does. It owns no socket and reads no clock; it imports neither
// zmq4 nor net/http and builds with CGO_ENABLED=0.
//
// It keeps every service any worker ever announced (until it is forgotten:
// Config.ForgetAfter, SERVER-FORGET) with its completed and failed
// counters, the idle workers of each service (least recently used first)
// and its last Config.KeepGone gone workers (with when and why they went),
// a queue per service (bounded by Config.MaxQueue; highest priority first,
// FIFO within one: priority.go), the scheduled jobs and retries waiting for
// their time (a min-heap: delay.go), the active jobs (which worker, since
// when, which attempt) and the last Config.History finished jobs.
//
// A request for NAME is asynchronous: the client gets the new job ID at once.
// SYNC-NAME and SYNC:NAME are synchronous: the client gets the worker's
// partial replies as they come, then the final one. A service no worker ever
// announced is refused at once (protocol.CodeUnknownService). A job whose
// worker expires (silent for Heartbeat × Liveness, busy or not) or
// disconnects goes back to the head of its priority until Config.MaxAttempts
// dispatches are spent, then fails with protocol.CodeWorkerLost. A dispatch
// counts once its REQUEST was sent: one the loop reports it could not send
// (Unreachable, with the job) goes back uncounted.
//
// Schedules (Config.Schedules, schedule.go) are recurring jobs the
// operator declares in cron syntax: Tick makes one async job of each tick
// due by the time it is given (Deadline includes the next tick), and the
// tick is recorded in the batch of its job (ScheduleRecord), so a restart
// fires no recorded tick again and applies the schedule's catch-up rule
// to those it missed.
//
// One goroutine owns a Broker. Usage by a loop:
//
//	b := broker.New(broker.Config{Heartbeat: time.Second})
//	send(b.HandleWorker(now, identity, user, frames))
//	send(b.HandleClient(now, identity, user, frames))
//	send(b.Tick(now)) // at or after b.Deadline()
//
// user is the CURVE key (public, Z85) the peer's handshake was admitted
// with, "" without one. With Config.Access the broker checks each READY and
// each request against the key's rights, refusing with code forbidden, and
// knows a worker by its key as well as its routing id (see Access).
//
// # The journal's side of the contract
//
// The broker never touches storage. It owns the records a journal keeps
// (JobRecord, ServiceRecord, ServiceCounts, Batch, Snapshot: record.go) and
// the read interface it needs of one (Archive); package store implements
// them and imports broker, never the reverse. With Config.Durable and
// Config.Archived a loop runs it as:
//
//	send(b.Restore(now, snapshot))                // once, from the journal's Load
//	send(b.HandleClient(now, from, user, frames)) // any input
//	for _, l := range b.Lookups() {               // requests that wait for the archive
//		go answer(l.Ask(archive))                 // off the loop: it may block
//	}
//	send(b.LookedUp(now, answer))                 // each Answer, once, on the loop
//	batch := b.Flush()                            // when b.Pending() or b.Holding(): commit it off the loop,
//	send(b.Committed())                           // then send the replies held for it,
//	send(b.Rejected(now, err))                    // or, if the commit failed, the refusals
//
// Lookups (lookup.go): a request for a job the broker no longer holds in
// memory (SERVER-JOB, SERVER-CANCEL, SERVER-RETRY of an older job; a
// submission whose idempotency key is not in memory; SERVER-JOBS and
// SERVER-RETRY of the failed jobs, failed.go, whose Lookup carries a
// FailedQuery) is answered after the Lookup it emits comes back, at most
// MaxLookups at once. Durability
// (durable.go): a reply that hands out a job ID is not among what the
// input returns; the broker holds it, with the next Flush's Batch, and
// Committed returns it once that Batch is committed. protocol.Envelope
// knows nothing of durability.
//
// What a method returns is valid until the next call (the broker reuses
// its output buffer): the caller sends it first. Two outputs live longer:
// the Lookups, until the next Lookups, and the replies Committed returns,
// until the next Flush.
package broker
