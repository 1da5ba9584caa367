package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MetaPrefix starts a zmws meta frame. A zmws peer puts one meta frame first
// in a body; a stock MDP peer never does (the leading NUL byte keeps it out of
// any printable payload). The rest of the frame is a JSON object (Meta).
const MetaPrefix = "\x00ZMWS1"

// Service name conventions.
const (
	SyncPrefixDash  = "SYNC-" // SYNC-NAME: wait for the worker's output
	SyncPrefixColon = "SYNC:" // SYNC:NAME: same, the original's spelling
	ServerPrefix    = "SERVER-"
	MMIPrefix       = "mmi."
	MMIService      = "mmi.service"

	ServerWorkers  = "SERVER-WORKERS"
	ServerJobs     = "SERVER-JOBS"
	ServerActive   = "SERVER-ACTIVE"
	ServerQueue    = "SERVER-QUEUE"
	ServerServices = "SERVER-SERVICES"
	ServerJob      = "SERVER-JOB"
	ServerCancel   = "SERVER-CANCEL" // body [id]: remove a queued job, stop a running one
	ServerRetry    = "SERVER-RETRY"  // body [id]: queue a failed job again
	ServerReload   = "SERVER-RELOAD" // admin: read the authorized keys again
	ServerForget   = "SERVER-FORGET" // body [name]: forget a service with no worker and no job
	ServerHealth   = "SERVER-HEALTH" // the broker's own state (HealthInfo): is its job store failing
	ServerPause    = "SERVER-PAUSE"  // admin, body [service]: queue its jobs, dispatch none
	ServerResume   = "SERVER-RESUME" // admin, body [service]: end a pause or a drain
	ServerDrain    = "SERVER-DRAIN"  // admin, body [service or worker identity]: no new jobs, stop once idle
)

// FailFrame is the first body frame of a failure reply to a stock MDP client
// (one that sent no meta frame): FAIL, code, message.
const FailFrame = "FAIL"

// SplitSync reports whether service asks for a synchronous job, and the name
// of the service that does the work.
func SplitSync(service string) (name string, sync bool) {
	if strings.HasPrefix(service, SyncPrefixDash) {
		return service[len(SyncPrefixDash):], true
	}
	if strings.HasPrefix(service, SyncPrefixColon) {
		return service[len(SyncPrefixColon):], true
	}
	return service, false
}

// MaxServiceLen bounds a service name a worker may announce.
const MaxServiceLen = 255

// ValidWorkerService reports why a worker may not announce name, or nil. Names
// reserved for the broker (SYNC-, SYNC:, SERVER-, mmi., titanic.) and names
// with control characters or spaces are refused.
func ValidWorkerService(name string) error {
	switch {
	case name == "":
		return ErrNoService
	case len(name) > MaxServiceLen:
		return fmt.Errorf("service name of %d bytes exceeds %d", len(name), MaxServiceLen)
	case strings.HasPrefix(name, SyncPrefixDash), strings.HasPrefix(name, SyncPrefixColon),
		strings.HasPrefix(name, ServerPrefix), strings.HasPrefix(name, MMIPrefix),
		strings.HasPrefix(name, "titanic."):
		return fmt.Errorf("service name %q uses a reserved prefix", name)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("service name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == '/' || r == '?' || r == '#' {
			return fmt.Errorf("service name %q contains %q", name, r)
		}
	}
	return nil
}

// Status is a job's or a reply's outcome as it travels in a Meta frame.
type Status string

// Statuses. These strings are wire-visible and never change.
const (
	StatusAccepted Status = "accepted" // async job queued; Meta.Job is its ID
	StatusComplete Status = "complete" // job finished well (or a query answered)
	StatusFailed   Status = "failed"   // job finished badly; Code, Error, ExitCode say how
	StatusRefused  Status = "refused"  // request refused; no job was made
	// StatusReturned, in a worker's FINAL, gives back a job it did not start
	// (it is stopping with jobs it had prefetched): the broker queues the
	// job again as if never dispatched and sends that worker no more jobs.
	StatusReturned Status = "returned"
)

// Error codes carried in Meta.Code and in stock-client FAIL replies. Stable,
// wire-visible.
const (
	CodeUnknownService   = "unknown_service"   // no worker ever announced the service
	CodeQueueFull        = "queue_full"        // the service's queue is at its bound
	CodeBadRequest       = "bad_request"       // malformed meta or parameters
	CodeNotFound         = "not_found"         // SERVER-JOB: no such job retained
	CodeJobFailed        = "job_failed"        // the worker said FAIL
	CodeWorkerLost       = "worker_lost"       // attempts ran out: workers died or vanished
	CodeShutdown         = "shutdown"          // the broker stopped before the job ended
	CodeStoreUnavailable = "store_unavailable" // the job store failed: the job was not accepted
	CodeTimeout          = "timeout"           // the job ran past its time-to-run on its last attempt
	CodeCancelled        = "cancelled"         // cancelled by SERVER-CANCEL
	CodeConflict         = "conflict"          // SERVER-CANCEL/RETRY of a job in the wrong state
	CodeForbidden        = "forbidden"         // the peer's key may not do this (see docs/SECURITY.md)
	CodeServiceLimit     = "service_limit"     // a READY for a new service past --max-services
	CodeNoWorker         = "no_worker"         // in an acceptance: no worker is connected for the service, the job waits
	CodeRateLimited      = "rate_limited"      // the service takes no more jobs a second (--rate); try again later
	CodeDrained          = "drained"           // DISCONNECT to a worker: an operator drained it or its service; stop, do not reconnect
)

// Meta is the zmws meta frame. Each direction uses some fields:
//
//	client → broker REQUEST   Params, Key (Limit, After: a paged listing)
//	broker → client reply     Status, Job, Code, Error, ExitCode, Attempt (Next: a paged listing)
//	broker → worker REQUEST   Job, Attempt, Params, Service
//	worker → broker READY     Worker (optional details)
//	worker → broker REPLY     Status (complete|failed), Error, ExitCode
type Meta struct {
	Job     string            `json:"job,omitempty"`
	Service string            `json:"service,omitempty"`
	Attempt int               `json:"attempt,omitempty"`
	Params  map[string]string `json:"params,omitempty"`
	Key     string            `json:"key,omitempty"`
	// Owner says on whose behalf a trusted in-process client (the HTTP
	// gateway: "token:NAME") submits; ignored from any other peer, whose
	// owner is its CURVE key.
	Owner    string         `json:"owner,omitempty"`
	Status   Status         `json:"status,omitempty"`
	Code     string         `json:"code,omitempty"`
	Error    string         `json:"error,omitempty"`
	ExitCode *int           `json:"exit_code,omitempty"`
	Worker   *WorkerDetails `json:"worker,omitempty"`
	// TTRMillis is a time-to-run in milliseconds: per job in a client
	// REQUEST, or the service's default in a worker's READY. A job running
	// longer is stopped and queued again (attempt + 1).
	TTRMillis int64 `json:"ttr_ms,omitempty"`
	// Retries opts in to retrying a job whose worker said FAIL, up to this
	// many times, with exponential backoff: per job in a client REQUEST, or
	// the service's default in a worker's READY.
	Retries int `json:"retries,omitempty"`
	// Ref is a client's reference for a request, echoed in every reply to
	// it (accepted, refused, a query's answer, a sync job's PARTIALs and
	// FINAL), so a client with many requests in flight on one connection can
	// match replies, which may come back out of order (a refusal is sent at
	// once, an accepted durable job only once its record is committed). See
	// docs/PROTOCOL.md, "Addressed replies".
	Ref string `json:"ref,omitempty"`
	// Prefetch, in a worker's READY, asks the broker to send it up to this
	// many jobs beyond the one it runs (capped by the broker), which it runs
	// in order: its next job is there when it finishes one.
	Prefetch int `json:"prefetch,omitempty"`
	// OutputTruncated, in a worker's FINAL, says the worker cut the job's
	// output (zmws-run's max_output): the broker marks the job's output
	// truncated.
	OutputTruncated bool `json:"output_truncated,omitempty"`
	// Limit, in a request for a paged listing (SERVER-SERVICES,
	// SERVER-JOBS), asks for at most this many entries; 0 means the
	// listing's default, and more than its maximum means the maximum (see
	// DefaultServicesPage and the others). A negative limit is refused.
	Limit int `json:"limit,omitempty"`
	// After, in a request for a paged listing, is the cursor to go on from:
	// the Next of the page before. Empty: the first page.
	After string `json:"after,omitempty"`
	// Next, in the reply to a request for a paged listing, is the cursor of
	// the next page (for After); empty when this page is the last.
	Next string `json:"next,omitempty"`
	// Priority, in a client REQUEST, is the job's priority: the broker
	// dispatches a service's higher priorities first, FIFO within one
	// (default 0; negative is below the default). Strict: see
	// docs/PROTOCOL.md, "Priorities".
	Priority int `json:"priority,omitempty"`
	// DelayMillis, in a client REQUEST for an async job, makes the job wait
	// this many milliseconds before it is queued (state scheduled).
	DelayMillis int64 `json:"delay_ms,omitempty"`
	// At, in a client REQUEST for an async job, is an RFC 3339 time before
	// which the job is not queued (state scheduled); one in the past
	// queues it now. Give DelayMillis or At, not both.
	At string `json:"at,omitempty"`
}

// MaxDelay bounds how far ahead a job may be scheduled (meta delay_ms or
// at): a submission whose time is further ahead is refused bad_request.
const MaxDelay = 366 * 24 * time.Hour

// Page sizes of the paged listings. A request's Limit of 0 means the
// default; a larger one than the maximum, the maximum. A page also ends
// after the entry that takes its JSON past MaxPageBytes (it holds one entry
// at least), so a page with fewer entries than asked for is not the last
// unless its reply has no Next.
const (
	DefaultServicesPage = 1000
	MaxServicesPage     = 5000
	DefaultJobsPage     = 100
	MaxJobsPage         = 1000
	MaxPageBytes        = 4 << 20
)

// WorkerDetails is what a zmws worker tells about itself in READY.
type WorkerDetails struct {
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
	Name string `json:"name,omitempty"` // e.g. "zmws-run/0.1"
}

// ErrMeta reports a meta frame that is not valid JSON.
var ErrMeta = errors.New("protocol: malformed meta frame")

// IsMeta reports whether frame is a zmws meta frame.
func IsMeta(frame []byte) bool {
	return len(frame) >= len(MetaPrefix) && string(frame[:len(MetaPrefix)]) == MetaPrefix
}

// EncodeMeta encodes m as a meta frame. Metas made only of plain ASCII
// strings (the usual case: job IDs, service names, statuses) are written
// directly, in the field order and form encoding/json uses; anything else
// goes through encoding/json.
func EncodeMeta(m Meta) []byte {
	if b, ok := appendMetaFast(make([]byte, 0, 96), &m); ok {
		return b
	}
	var buf bytes.Buffer
	buf.Grow(64)
	buf.WriteString(MetaPrefix)
	// Encoding a Meta cannot fail: all fields are strings, ints and string maps.
	_ = json.NewEncoder(&buf).Encode(m)
	b := buf.Bytes()
	return b[:len(b)-1] // drop the encoder's newline
}

// Frames the broker decodes most, answered without encoding/json.
var (
	metaEmpty    = MetaPrefix + "{}"
	metaComplete = MetaPrefix + `{"status":"complete"}`
)

// DecodeMeta decodes a meta frame.
func DecodeMeta(frame []byte) (Meta, error) {
	switch string(frame) {
	case metaEmpty:
		return Meta{}, nil
	case metaComplete:
		return Meta{Status: StatusComplete}, nil
	}
	return decodeMetaJSON(frame)
}

// decodeMetaJSON is DecodeMeta through encoding/json: apart, so that the
// Meta it decodes into (which escapes to the heap) is not allocated for the
// frames DecodeMeta answers itself.
func decodeMetaJSON(frame []byte) (Meta, error) {
	var m Meta
	if !IsMeta(frame) {
		return m, fmt.Errorf("%w: missing prefix", ErrMeta)
	}
	if err := json.Unmarshal(frame[len(MetaPrefix):], &m); err != nil {
		return Meta{}, fmt.Errorf("%w: %v", ErrMeta, err)
	}
	return m, nil
}

// appendMetaFast appends m's frame when every string in it is plain (see
// plain) and it has no Worker details; ok is false otherwise. The output is
// byte for byte what encoding/json writes (a test holds it to that).
func appendMetaFast(b []byte, m *Meta) ([]byte, bool) {
	if m.Worker != nil || !plain(m.Job) || !plain(m.Service) || !plain(m.Key) || !plain(m.Owner) ||
		!plain(string(m.Status)) || !plain(m.Code) || !plain(m.Error) || !plain(m.Ref) ||
		!plain(m.After) || !plain(m.Next) || !plain(m.At) {
		return nil, false
	}
	keys := make([]string, 0, len(m.Params))
	for k, v := range m.Params {
		if !plain(k) || !plain(v) {
			return nil, false
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = append(b, MetaPrefix...)
	b = append(b, '{')
	first := true
	str := func(name, v string) {
		if v == "" {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":"`...)
		b = append(b, v...)
		b = append(b, '"')
	}
	num := func(name string, v int64) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, v, 10)
	}
	str("job", m.Job)
	str("service", m.Service)
	if m.Attempt != 0 {
		num("attempt", int64(m.Attempt))
	}
	if len(m.Params) > 0 {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `"params":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, k...)
			b = append(b, `":"`...)
			b = append(b, m.Params[k]...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	str("key", m.Key)
	str("owner", m.Owner)
	str("status", string(m.Status))
	str("code", m.Code)
	str("error", m.Error)
	if m.ExitCode != nil {
		num("exit_code", int64(*m.ExitCode))
	}
	if m.TTRMillis != 0 {
		num("ttr_ms", m.TTRMillis)
	}
	if m.Retries != 0 {
		num("retries", int64(m.Retries))
	}
	str("ref", m.Ref)
	if m.Prefetch != 0 {
		num("prefetch", int64(m.Prefetch))
	}
	if m.OutputTruncated {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `"output_truncated":true`...)
	}
	if m.Limit != 0 {
		num("limit", int64(m.Limit))
	}
	str("after", m.After)
	str("next", m.Next)
	if m.Priority != 0 {
		num("priority", int64(m.Priority))
	}
	if m.DelayMillis != 0 {
		num("delay_ms", m.DelayMillis)
	}
	str("at", m.At)
	return append(b, '}'), true
}

// plain reports whether s is printable ASCII that JSON writes as it is: no
// quote, backslash, or the characters encoding/json escapes for HTML.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// SplitMeta takes a leading meta frame off body. ok is false when body has no
// meta frame (a stock peer); err is set when it has a malformed one.
func SplitMeta(body [][]byte) (m Meta, rest [][]byte, ok bool, err error) {
	if len(body) == 0 || !IsMeta(body[0]) {
		return Meta{}, body, false, nil
	}
	m, err = DecodeMeta(body[0])
	return m, body[1:], true, err
}

// EncodeParams encodes params as a URL query string with sorted keys: what a
// stock MDP worker receives as its body when a job has parameters but no input.
func EncodeParams(params map[string]string) []byte {
	if len(params) == 0 {
		return nil
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(params[k]))
	}
	return []byte(b.String())
}

// WorkerInfo is one entry of SERVER-WORKERS: a live worker, or with the
// request frame WorkersAll one that is gone (State WorkerGone).
type WorkerInfo struct {
	Identity string `json:"identity"`
	Service  string `json:"service"`
	State    string `json:"state"` // idle | busy | gone
	// Job is the job a busy worker runs; of a gone worker, the one it ran
	// when it went (queued again or failed since).
	Job           string    `json:"job,omitempty"`
	Protocol      string    `json:"protocol"` // MDPW01 | MDPW02
	Zmws          bool      `json:"zmws"`     // speaks the zmws meta conventions
	Since         time.Time `json:"since"`    // its READY
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// JobsDone counts the runs it ended with a final reply: Completed +
	// Failed (a failed run may be retried elsewhere).
	JobsDone  int `json:"jobs_done"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// GoneAt and GoneWhy say when and why a gone worker went (GoneWhy: one
	// of the Gone* words).
	GoneAt  time.Time      `json:"gone_at,omitzero"`
	GoneWhy string         `json:"gone_why,omitempty"`
	Details *WorkerDetails `json:"details,omitempty"`
	// Draining: it gets no new job and is told to stop once it holds none
	// (SERVER-DRAIN of it or of its service).
	Draining bool `json:"draining,omitempty"`
}

// JobInfo describes one job in SERVER-JOBS, SERVER-ACTIVE, SERVER-JOB.
type JobInfo struct {
	ID       string            `json:"id"`
	Service  string            `json:"service"`
	Sync     bool              `json:"sync"`
	State    string            `json:"state"` // scheduled | queued | active | complete | failed
	Created  time.Time         `json:"created"`
	Started  *time.Time        `json:"started,omitempty"`
	Finished *time.Time        `json:"finished,omitempty"`
	Attempts int               `json:"attempts"`
	Worker   string            `json:"worker,omitempty"`
	ExitCode *int              `json:"exit_code,omitempty"`
	Code     string            `json:"code,omitempty"`
	Error    string            `json:"error,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
	// Owner is who submitted the job, with CURVE or HTTP tokens: the
	// client's public key, or "token:NAME"; "" for no one in particular.
	Owner string `json:"owner,omitempty"`
	// Priority is the job's priority (0, the default, is left out).
	Priority int `json:"priority,omitempty"`
	// NotBefore is when a scheduled job is queued, or when a failed job
	// backing off is retried.
	NotBefore *time.Time `json:"not_before,omitempty"`
	Output    []byte     `json:"output,omitempty"` // SERVER-JOB only; base64 in JSON
	// OutputTruncated says Output holds only the first bytes of the result.
	OutputTruncated bool `json:"output_truncated,omitempty"`
}

// QueueInfo is one entry of SERVER-QUEUE.
type QueueInfo struct {
	Service string    `json:"service"`
	Queued  int       `json:"queued"`
	Oldest  string    `json:"oldest,omitempty"` // ID of the job at the head
	Since   time.Time `json:"since,omitzero"`   // when the head job was created
	Jobs    []string  `json:"jobs"`             // up to the first 100 queued job IDs, in dispatch order
	// Priorities counts the queued jobs of each priority, highest first;
	// left out when every queued job has priority 0.
	Priorities []PriorityCount `json:"priorities,omitempty"`
	// Scheduled is how many of its jobs wait for their time (state
	// scheduled); ScheduledJobs are up to the first 100 of them, earliest
	// first.
	Scheduled     int            `json:"scheduled"`
	ScheduledJobs []ScheduledJob `json:"scheduled_jobs,omitempty"`
}

// PriorityCount is how many jobs of one priority a queue holds.
type PriorityCount struct {
	Priority int `json:"priority"`
	Queued   int `json:"queued"`
}

// ScheduledJob is a job waiting for its time, and the time.
type ScheduledJob struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// Values of HealthInfo.Store. Wire-visible, never changed.
const (
	StoreNone    = "none"    // no job store: jobs are kept in memory only
	StoreOK      = "ok"      // the last commit succeeded (or none was needed yet)
	StoreFailing = "failing" // the last commit failed: submissions are refused
)

// HealthInfo is the answer of SERVER-HEALTH, open to every key. Store is
// StoreFailing from a failed commit until a later one, with records in it,
// succeeds (the next submission or job end that reaches the store).
type HealthInfo struct {
	Store string `json:"store"`
	// StoreError is the failed commit's error; sent to admins only (it may
	// name files).
	StoreError string `json:"store_error,omitempty"`
	// StoreFailedSince is when commits began to fail.
	StoreFailedSince *time.Time `json:"store_failed_since,omitempty"`
}

// ServiceInfo is one entry of SERVER-SERVICES.
type ServiceInfo struct {
	Name        string    `json:"name"`
	Queued      int       `json:"queued"`
	Scheduled   int       `json:"scheduled,omitempty"` // jobs waiting for their time
	Active      int       `json:"active"`
	WorkersIdle int       `json:"workers_idle"`
	WorkersBusy int       `json:"workers_busy"`
	Completed   uint64    `json:"completed"`
	Failed      uint64    `json:"failed"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"` // last time a worker of it was heard
	// Paused: its jobs are accepted and queued, none dispatched
	// (SERVER-PAUSE). Draining: the same, and its workers are told to stop
	// once they hold no job (SERVER-DRAIN). Both end with SERVER-RESUME and
	// are journaled.
	Paused   bool `json:"paused,omitempty"`
	Draining bool `json:"draining,omitempty"`
}

// Event is a job lifecycle event, published as [topic, JSON] on the events
// socket, topic = Event.
type Event struct {
	Event    string    `json:"event"` // queued | started | completed | failed | requeued
	Time     time.Time `json:"time"`
	Job      string    `json:"job"`
	Service  string    `json:"service"`
	Attempt  int       `json:"attempt,omitempty"`
	Worker   string    `json:"worker,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Code     string    `json:"code,omitempty"`
	Error    string    `json:"error,omitempty"`
	Elapsed  float64   `json:"elapsed_s,omitempty"` // seconds since start (completed/failed)
}

// Event names (topics). Stable, wire-visible.
const (
	EventQueued    = "queued"
	EventStarted   = "started"
	EventCompleted = "completed"
	EventFailed    = "failed"
	EventRequeued  = "requeued"
)

// Job states in JobInfo.State. Stable, wire-visible.
const (
	JobQueued   = "queued"
	JobActive   = "active"
	JobComplete = "complete"
	JobFailed   = "failed"
	// JobScheduled is a job submitted with a delay, waiting for its time
	// before it is queued.
	JobScheduled = "scheduled"
)

// Worker states in WorkerInfo.State. Stable, wire-visible.
const (
	WorkerIdle = "idle"
	WorkerBusy = "busy"
	WorkerGone = "gone" // listed only when asked for with WorkersAll
)

// WorkersAll is the body frame of a SERVER-WORKERS request (after the meta
// frame, for zmws clients) that asks for the gone workers the broker keeps
// as well as the live ones. Without it SERVER-WORKERS lists live workers
// only.
const WorkersAll = "all"

// Why a worker is gone, in WorkerInfo.GoneWhy. Stable, wire-visible. The
// broker tells apart what it sees: it cannot know whether a process it
// lost exited, crashed or was killed, only how the loss showed.
const (
	// GoneDisconnected: the worker said DISCONNECT (it stopped on purpose).
	GoneDisconnected = "disconnected"
	// GoneExpired: nothing heard from it for heartbeat × liveness (hung,
	// cut off by the network, or dead without its connection closing).
	GoneExpired = "expired"
	// GoneUnreachable: a message to it could not be sent: its connection
	// had closed (the process exited, crashed or was killed) or its send
	// queue was full.
	GoneUnreachable = "unreachable"
	// GoneProtocolError: it sent a malformed message, a command out of
	// turn (a second READY, a REQUEST), or a message past the broker's
	// size bounds, and was told DISCONNECT.
	GoneProtocolError = "protocol_error"
	// GoneForbidden: a key check dropped it: after a reload its key may no
	// longer offer its service, or a message came from its routing id
	// under another key.
	GoneForbidden = "forbidden"
	// GoneTimeout: the broker stopped it (DISCONNECT) because its job ran
	// past its time-to-run.
	GoneTimeout = "timeout"
	// GoneCancelled: the broker stopped it (DISCONNECT) because a job it
	// held was cancelled (SERVER-CANCEL).
	GoneCancelled = "cancelled"
	// GoneDrained: an operator drained it or its service (SERVER-DRAIN):
	// once it held no job the broker told it to stop (DISCONNECT with
	// CodeDrained).
	GoneDrained = "drained"
)

// 8/MMI answers.
const (
	MMIFound          = "200"
	MMINotFound       = "404"
	MMINotImplemented = "501"
)
