package broker

import (
	"time"

	"github.com/zmws/zmws/protocol"
)

type jobState uint8

const (
	stateQueued jobState = iota + 1
	stateActive
	stateComplete
	stateFailed
)

func (s jobState) String() string {
	switch s {
	case stateQueued:
		return protocol.JobQueued
	case stateActive:
		return protocol.JobActive
	case stateComplete:
		return protocol.JobComplete
	case stateFailed:
		return protocol.JobFailed
	}
	return "unknown"
}

// job is one job. Transitions: queued → active → complete | failed, and
// active → queued when its worker is lost and attempts remain.
type job struct {
	id     string
	svc    *service
	state  jobState
	sync   bool
	params map[string]string
	input  [][]byte

	// reply is the request that made the job, to answer its client: kept
	// for a sync job, and for an async one until its ID is handed out
	// (awaitingCommit); nil otherwise.
	reply *request

	attempts int
	created  time.Time

	ttr     time.Duration // this job's time-to-run (0: the service's)
	retries int           // retries of a FAIL this job opted in to (-1: the service's)

	key            string // idempotency key, or ""
	dirty          bool   // in Broker.dirty
	flushed        bool   // in Broker.flushed: its record is being committed
	awaitingCommit bool   // its ID waits for the job store before being handed out

	// run is nil while the job has never been dispatched nor ended: most
	// queued jobs. Every active and finished job has one.
	run *run
}

// run is what became of a job once it left its queue: its current (or
// last) attempt and its outcome. A job requeued or backing off keeps its
// run, with the worker cleared.
type run struct {
	worker    string
	started   time.Time
	deadline  time.Time // when the running attempt overruns its time-to-run
	notBefore time.Time // a retry waits until then
	finished  time.Time

	exitCode   *int
	code       string
	err        string
	output     []byte // the first MaxOutput bytes of all partials and the final reply
	partialLen int    // how much of output came from partials
	streamed   bool   // partial output went to the (sync) caller
	truncated  bool
}

// ensureRun returns j's run, making it if j has none yet.
func (j *job) ensureRun() *run {
	if j.run == nil {
		j.run = &run{}
	}
	return j.run
}

// fail sets j's outcome to a failure with code and text. The caller
// finishes the job (or has it refused).
func (j *job) fail(code, text string) {
	r := j.ensureRun()
	r.code, r.err = code, text
}

// worker returns the worker of j's current or last attempt, or "".
func (j *job) worker() string {
	if j.run == nil {
		return ""
	}
	return j.run.worker
}
