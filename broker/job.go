package broker

import (
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/zmws/zmws/protocol"
)

type jobState uint8

const (
	stateQueued jobState = iota + 1
	stateActive
	stateComplete
	stateFailed
	stateScheduled // waiting for its time in Broker.delayed (delay.go)
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
	case stateScheduled:
		return protocol.JobScheduled
	}
	return "unknown"
}

// job is one job. Transitions, through moveJob only: queued → active →
// complete | failed, and active → queued when its worker is lost and
// attempts remain; a job submitted with a delay starts scheduled → queued
// at its time (or scheduled → failed, cancelled).
//
// A broker may hold millions of queued jobs, so a job keeps in itself only
// what every queued job needs (80 bytes); the rest is in its extra, which
// most queued jobs do without.
type job struct {
	id      jobID
	svc     *service
	params  map[string]string
	created stamp

	// input is the job's input when it is one frame, the usual case: then
	// it is never nil, even when empty. Otherwise it is nil, and the
	// frames, if any, are x.frames. See setInput.
	input []byte

	attempts int32
	state    jobState
	sync     bool
	dirty    bool // in Broker.dirty
	flushed  bool // in Broker.flushed: its record is being committed

	x *extra // nil until the job needs one (see extra)
}

// extra is what only some jobs have. A job gets one when it is made with
// options, an input of several frames or a client waiting for a reply, or
// when it is first dispatched or ends. A queued async job that has none of
// these has no extra once its ID is handed out.
type extra struct {
	// reply is the request that made the job, to answer its client: kept
	// for a sync job, and for an async one until its ID is handed out
	// (see awaitingCommit); nil otherwise.
	reply *request

	// What a client may ask of one job. Set when the job is made.
	key     string        // idempotency key, or ""
	owner   string        // who submitted it (see protocol.JobInfo.Owner), or ""
	ttr     time.Duration // this job's time-to-run (0: the service's)
	retries int           // retries of a FAIL this job opted in to (-1: the service's)
	// stored: a record of the job was committed, or it was restored from
	// one (kept here, not in job, which stays 80 bytes: only jobs with an
	// idempotency key, which have an extra, ask).
	stored bool
	// priority is the job's priority (higher first; see queue), beside
	// stored in what would be padding.
	priority int32

	frames [][]byte // the input when it is several frames (see job.input)

	// run is nil while the job has never been dispatched nor ended. Every
	// active and finished job has one.
	run *run
}

// ensureExtra returns j's extra, making it if j has none yet.
func (j *job) ensureExtra() *extra {
	if j.x == nil {
		j.x = &extra{retries: -1}
	}
	return j.x
}

// dropReply forgets who asked for j, once its ID is handed out (or
// refused), and then its extra if nothing else is left in it.
func (j *job) dropReply() {
	x := j.x
	if x == nil {
		return
	}
	x.reply = nil
	if x.key == "" && x.owner == "" && x.ttr == 0 && x.retries < 0 && x.frames == nil && x.run == nil && x.priority == 0 {
		j.x = nil
	}
}

// awaitingCommit reports whether j's ID waits for the job store before
// being handed out: an async job keeps its reply-to only until then.
func (j *job) awaitingCommit() bool {
	return !j.sync && j.x != nil && j.x.reply != nil
}

// key returns j's idempotency key, or "".
func (j *job) key() string {
	if j.x == nil {
		return ""
	}
	return j.x.key
}

// owner returns who submitted j, or "".
func (j *job) owner() string {
	if j.x == nil {
		return ""
	}
	return j.x.owner
}

// ttr returns j's own time-to-run, or 0 for its service's.
func (j *job) ttr() time.Duration {
	if j.x == nil {
		return 0
	}
	return j.x.ttr
}

// retries returns the retries j opted in to, or -1 for its service's.
func (j *job) retries() int {
	if j.x == nil {
		return -1
	}
	return j.x.retries
}

// setInput gives j a copy of frames as its input, so that it does not hold
// on to the receive buffers of the message it came in. One frame takes one
// allocation.
func (j *job) setInput(frames [][]byte) {
	switch len(frames) {
	case 0:
	case 1:
		j.input = make([]byte, len(frames[0])) // not nil, even when empty
		copy(j.input, frames[0])
	default:
		j.ensureExtra().frames = copyFrames(frames)
	}
}

// appendInput appends j's input frames to dst.
func (j *job) appendInput(dst [][]byte) [][]byte {
	if j.input != nil {
		return append(dst, j.input)
	}
	if j.x != nil {
		return append(dst, j.x.frames...)
	}
	return dst
}

// inputFrames is how many frames j's input has.
func (j *job) inputFrames() int {
	if j.input != nil {
		return 1
	}
	if j.x != nil {
		return len(j.x.frames)
	}
	return 0
}

// dropInput frees j's input, once j will not run again.
func (j *job) dropInput() {
	j.input = nil
	if j.x != nil {
		j.x.frames = nil
	}
}

// jobID is a job's ID: a ULID, kept as its 16 bytes rather than its
// 26-character text, which would take another allocation per job. String
// gives the text clients see.
type jobID ulid.ULID

func (id jobID) String() string { return ulid.ULID(id).String() }

// text is id's text, as String gives it, without an allocation.
func (id jobID) text() (t [ulid.EncodedSize]byte) {
	_ = ulid.ULID(id).MarshalTextTo(t[:])
	return t
}

// parseJobID returns the ID whose text is s. Only the text String writes
// (upper case) names a job, as when IDs were kept as text.
func parseJobID(s string) (jobID, bool) {
	u, err := ulid.ParseStrict(s)
	if err != nil {
		return jobID{}, false
	}
	id := jobID(u)
	t := id.text()
	return id, string(t[:]) == s
}

// stamp is an instant in Unix nanoseconds: 8 bytes where a time.Time takes
// 24. It keeps neither a monotonic reading nor a location (Time gives it
// in time.Local). The zero stamp is the zero time.
type stamp int64

func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return 0
	}
	return stamp(t.UnixNano())
}

// Time returns s as a time.Time.
func (s stamp) Time() time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(s))
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
	// streamedLen is the partial output forwarded to the sync caller;
	// streamCut says later partials were dropped past Config.MaxStream.
	streamedLen int
	streamCut   bool
}

// hasID reports whether text is j's ID.
func (j *job) hasID(text []byte) bool {
	t := j.id.text()
	return string(t[:]) == string(text)
}

// lastRun returns j's current or last run, or nil if it has none yet.
func (j *job) lastRun() *run {
	if j.x == nil {
		return nil
	}
	return j.x.run
}

// ensureRun returns j's run, making it if j has none yet.
func (j *job) ensureRun() *run {
	x := j.ensureExtra()
	if x.run == nil {
		x.run = &run{}
	}
	return x.run
}

// fail sets j's outcome to a failure with code and text. The caller
// finishes the job (or has it refused).
func (j *job) fail(code, text string) {
	r := j.ensureRun()
	r.code, r.err = code, text
}

// worker returns the worker of j's current or last attempt, or "".
func (j *job) worker() string {
	if r := j.lastRun(); r != nil {
		return r.worker
	}
	return ""
}

// uncommitted reports whether the journal may have no record of j yet: a
// submission awaiting its commit, or a job never committed that changed (a
// retry before its first commit makes a new value, with no one to answer).
// A reply that names j waits for the commit.
func (j *job) uncommitted() bool {
	return j.awaitingCommit() || (j.x == nil || !j.x.stored) && (j.dirty || j.flushed)
}
