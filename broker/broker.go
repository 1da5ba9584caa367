package broker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
)

// Log field keys: the shared ones, and the broker's own.
const (
	keyService = logging.KeyService
	keyWorker  = logging.KeyWorker
	keyClient  = logging.KeyClient
	keyJob     = logging.KeyJob
	keyElapsed = logging.KeyElapsed
	keyAttempt = "attempt"
	keyCode    = "code"
	keyKey     = "key" // the name of a peer's CURVE key
)

// Config holds the broker's tunables. Zero values take the defaults below.
type Config struct {
	// Heartbeat is the interval at which the broker heartbeats every worker
	// and expects to hear from each (default 2.5 s, as in the Guide's brokers).
	Heartbeat time.Duration
	// Liveness is how many heartbeat intervals of silence make a worker dead
	// (default 3).
	Liveness int
	// MaxAttempts bounds how often a job is dispatched when its workers die
	// (default 3). After that it fails with protocol.CodeWorkerLost. A
	// dispatch whose REQUEST could not be sent (see Unreachable) is no
	// attempt: the job never reached the worker.
	MaxAttempts int
	// MaxQueue bounds each service's queue (default 100,000).
	MaxQueue int
	// Rates bound how many jobs a second a service takes, by name; "*"
	// is every service without a rate of its own. Past it a submission is
	// refused rate_limited, never queued (see rate.go).
	Rates map[string]Rate
	// ClientRate bounds how many jobs a second each client submits, and
	// ClientConcurrency how many sync jobs each has unfinished (0: no
	// bound). A client is its CURVE key, else its network address; the
	// in-process gateway limits its own callers (see clientlimit.go).
	ClientRate        Rate
	ClientConcurrency int
	// History is how many finished jobs are kept for SERVER-JOBS and for
	// lookups by ID (default 100).
	History int
	// MaxOutput caps the output kept per job, and sent at once to 7/MDP sync
	// clients (default 256 KiB). 18/MDP clients get every partial as it
	// comes, up to MaxStream.
	MaxOutput int
	// Events turns on lifecycle events (Envelopes to protocol.ToEvents).
	Events bool
	// Subscribed, when set with Events, says whether anyone wants events
	// of a topic (protocol.EventQueued, ...): the broker builds no event
	// nobody wants. nil: every event is wanted.
	Subscribed func(topic string) bool
	// Durable turns on record keeping for a job store (see Flush): replies
	// that hand out job IDs are held until their records are committed
	// (Committed returns them).
	Durable bool
	// TTR is the default time-to-run of a job (0: none). A service's
	// workers may declare their own in READY, a client per job; a job that
	// runs longer is stopped (its worker gets DISCONNECT) and queued again.
	TTR time.Duration
	// RetryBackoff is the first delay before an opt-in retry of a failed
	// job (default 1 s); each further retry doubles it, up to RetryBackoffMax
	// (default 5 min).
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	// Archived says a journal (an Archive) keeps the jobs the broker no
	// longer holds in memory: a request for one (SERVER-JOB, SERVER-CANCEL,
	// SERVER-RETRY, an idempotency key) waits for a Lookup, which the
	// caller answers off its goroutine (see Lookups and LookedUp). false:
	// such requests are answered from memory alone. The broker never reads
	// storage itself.
	Archived bool
	// Access, when set, decides what each authenticated peer may do: the
	// server passes with every message the user the ZAP handler admitted
	// (the peer's CURVE public key). On the client socket a message
	// with no user came through no handshake (inproc: the HTTP gateway,
	// which checks its own tokens) and is trusted; on the worker socket it
	// is refused. nil: every peer may do everything.
	Access Access
	// Reload, when set, is what an admin's SERVER-RELOAD runs: the key set
	// (and whatever else the server reloads on SIGHUP) read again.
	Reload func() error
	// MaxStream bounds the partial output the broker forwards to the caller
	// of one sync job (default 64 MiB): past it the job runs on, its later
	// partials are dropped, and its final reply says output_truncated. The
	// broker cannot know what a caller has read, so this bounds what a
	// caller that stopped reading can make the broker (and libzmq) hold.
	MaxStream int
	// MaxServices bounds the services the broker knows (default 10,000): a
	// READY for a new service past it gets DISCONNECT with
	// protocol.CodeServiceLimit. Each known service is kept, and journaled.
	MaxServices int
	// ForgetAfter is how long a service with no worker and no job is
	// remembered since it was last seen (default a week; negative: for
	// ever). The clock restarts when the broker does.
	ForgetAfter time.Duration
	// KeepGone is how many gone workers each service keeps for
	// SERVER-WORKERS all, the newest (default 10; negative: none). A
	// worker that says READY again under the same routing id leaves its
	// service's gone list. With MaxServices it bounds what workers that
	// come and go make the broker hold, however often they do.
	KeepGone int
	// DedupeWindow, when positive, makes a stock client's resend of a
	// request (the same body to the same service, from the same key)
	// within this long of the first attach to the first's job instead of
	// making another (dedupe.go). 0: every request makes a job.
	DedupeWindow time.Duration
	// Stats turns on the counts Stats reports per service (jobs submitted,
	// finished, requeued and refused; job duration and queue wait
	// histograms): a few increments per job, on the loop goroutine.
	Stats bool
	// Schedules are the recurring jobs the broker fires (schedule.go);
	// check them with CheckSchedules first: New leaves out (logged) any
	// that does not pass.
	Schedules []Schedule
	// Entropy feeds job IDs (ULIDs). Default: crypto/rand, monotonic within a
	// millisecond.
	Entropy io.Reader
	// Logger receives the broker's logs. Default: none.
	Logger zerolog.Logger
}

// Defaults.
const (
	DefaultHeartbeat   = 2500 * time.Millisecond
	DefaultLiveness    = 3
	DefaultMaxAttempts = 3
	DefaultMaxQueue    = 100_000
	DefaultHistory     = 100
	DefaultMaxOutput   = 256 << 10
	DefaultMaxServices = 10_000
	DefaultMaxStream   = 64 << 20
	DefaultForgetAfter = 7 * 24 * time.Hour
	DefaultKeepGone    = 10
)

// forgetEvery is how often the broker looks for services to forget.
const forgetEvery = time.Minute

func (c *Config) setDefaults() {
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Liveness <= 0 {
		c.Liveness = DefaultLiveness
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.History <= 0 {
		c.History = DefaultHistory
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = DefaultMaxOutput
	}
	if c.MaxServices <= 0 {
		c.MaxServices = DefaultMaxServices
	}
	if c.MaxStream <= 0 {
		c.MaxStream = DefaultMaxStream
	}
	if c.ForgetAfter == 0 {
		c.ForgetAfter = DefaultForgetAfter
	}
	switch {
	case c.KeepGone == 0:
		c.KeepGone = DefaultKeepGone
	case c.KeepGone < 0:
		c.KeepGone = 0
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = time.Second
	}
	if c.RetryBackoffMax <= 0 {
		c.RetryBackoffMax = 5 * time.Minute
	}
	if c.Entropy == nil {
		c.Entropy = ulid.Monotonic(rand.Reader, 0)
	}
}

// Access is the broker's view of the authorized keys (auth.Keys implements
// it). Its methods are called on the loop goroutine, once per READY or
// submission, and must be fast: a map lookup, no I/O.
type Access interface {
	// MayOffer reports whether worker key user may offer service.
	MayOffer(user, service string) bool
	// MaySubmit reports whether client key user may submit to service.
	MaySubmit(user, service string) bool
	// MayAdmin reports whether client key user may cancel, retry others' jobs, reload
	// and see other peers' jobs.
	MayAdmin(user string) bool
	// Generation changes whenever the rights may have changed (a reload),
	// so the broker checks its workers' keys again.
	Generation() uint64
	// Name is how logs and refusals call the key user: its name in the
	// key set (users are public keys, which a reload may give another
	// name, or none).
	Name(user string) string
}

// Broker is the broker's state machine. It owns no socket and reads no
// clock: every input carries the time, and every method returns the
// messages to send. A Broker is owned by one goroutine (the server loop);
// it has no mutex.
//
// The Envelopes a method returns, and their frames, stay valid until the
// next call (the broker reuses its output buffer); the caller sends them
// before calling again. Committed's stay valid until the next Flush.
type Broker struct {
	cfg Config
	log zerolog.Logger
	ttl time.Duration // Heartbeat × Liveness

	services map[string]*service
	workers  map[string]*worker
	jobs     jobIndex // queued, active and retained finished jobs
	history  []*job   // ring of the last cfg.History finished jobs
	histNext int      // next index to write in history
	// histSeq counts the jobs ever put in history: the newest has sequence
	// number histSeq, the one before it histSeq-1, … (SERVER-JOBS cursors).
	histSeq uint64

	nextHeartbeat time.Time
	nextExpiry    time.Time // a lower bound of the earliest worker expiry
	nextTTR       time.Time // a lower bound of the earliest time-to-run deadline
	nextForget    time.Time // when to look for services to forget (zero: not yet planned)
	// accepts are addressed sync jobs dispatched at once, whose client is
	// told "accepted" only if the job is still running acceptDelay later
	// (see syncAccepted), oldest first.
	accepts    []dueAccept
	acceptScan time.Time // when accepts are next looked at
	delayed    dueHeap   // scheduled jobs and retries backing off, by time (delay.go)
	// newAt holds the time of each scheduled job submitted since its
	// record was last committed (Config.Durable), so Flush writes it
	// without searching the heap.
	newAt map[*job]stamp

	keys   map[string]*job   // idempotency keys of jobs held in memory
	owners map[string]string // interned owners of jobs (see intern)

	dirty        []*job     // jobs changed since the last Flush
	dirtySvcs    []*service // services whose counters changed since the last Flush
	flushed      []*job     // jobs of the batch being committed
	batch        *Batch     // records being gathered
	recycled     *Batch     // the batch last flushed, recycled for the next Flush
	flushedEmpty bool       // the last flushed batch held no records
	// heldNext are the replies that wait for the commit of the next batch
	// (see hold); heldFlushed those that wait for the batch last flushed.
	heldNext, heldFlushed []protocol.Envelope
	// heldFor and heldForFlushed are, for each held reply, the request it
	// answers when Rejected must refuse it itself (nil: the reply of a new
	// job's submission, which Rejected refuses with its job).
	heldFor, heldForFlushed []*request

	// storeErr is the error of the last commit when it failed (Rejected),
	// since storeFailed; both are cleared when a batch with records is
	// committed. SERVER-HEALTH reports them.
	storeErr    string
	storeFailed time.Time
	probeAt     time.Time // when a failing store is next tried (probeDue)

	out []protocol.Envelope

	// waiting are the requests held for Lookups, by sequence number;
	// lookups the Lookups emitted since the caller last took them (and
	// lookupsSpare the slice it took, reused after).
	waiting      map[uint64]*waiting
	lookups      []Lookup
	lookupsSpare []Lookup
	lookupSeq    uint64

	// at is the time of the input being handled; limit keeps each kind of
	// peer misbehaviour to a few log lines a minute (see peerWarn).
	at    time.Time
	limit logging.Limiter
	// accessGen is the Access generation the workers' keys were checked
	// against (see checkAccess).
	accessGen uint64
	// clients are the per-client allowances (clientlimit.go).
	clients map[string]*clientLimit
	// unknownRefused counts refusals naming no known service (Config.Stats).
	unknownRefused codeCounts
	// resends is the table of Config.DedupeWindow (nil until used).
	resends *resends

	// scheds are the schedules, by name; dirtyScheds those whose record
	// waits for the next Flush; nextSched the earliest planned tick.
	// firedJobs are the jobs ticks made since the last Flush, firedFlushed
	// those of the batch last flushed (made dirty again if it fails).
	scheds                  []*schedule
	dirtyScheds             []*schedule
	nextSched               time.Time
	firedJobs, firedFlushed []*job
}

// service is every service any worker ever announced, until it is
// forgotten (services.go).
type service struct {
	name      string
	queue     queue     // queued jobs, by priority then FIFO (priority.go)
	scheduled int       // its jobs waiting in Broker.delayed in state scheduled
	idle      []*worker // idle workers, least recently used first
	withRoom  []*worker // busy workers with prefetch room, in turn
	workers   int       // live workers (idle + busy)
	active    int       // jobs running now
	completed uint64    // jobs finished complete, ever (journaled: ServiceCounts)
	failed    uint64    // jobs finished failed, ever
	// countsDirty says completed or failed changed since the last Flush
	// (the service is in Broker.dirtySvcs).
	countsDirty bool
	// gone holds the last Config.KeepGone workers of s that went, oldest
	// first, for SERVER-WORKERS all.
	gone      []*worker
	firstSeen time.Time
	lastSeen  time.Time
	ttr       time.Duration // default time-to-run its workers declared
	retries   int           // default retries of failed jobs its workers declared
	stats     *svcStats     // with Config.Stats: its counts, made at its first
	// rate is its submission bucket (Config.Rates), made at its first
	// submission; rated says that was looked up.
	rate  *rate.Limiter
	rated bool
	// paused and draining: an operator stopped its dispatch (pause.go).
	paused, draining bool
}

// worker is a live worker, or a gone one kept in its service's gone list.
// Transitions, through moveWorker only: (READY) → idle → busy (with room
// or full) → idle ...; busy → draining; any state → gone (see goneWorker
// for the reasons). A gone worker holds no job and is not in
// Broker.workers.
//
// A zmws worker that declared a prefetch of N in READY holds up to 1+N
// jobs: it runs jobs[0] and the rest wait at the worker, so its next job is
// there when it finishes one, without a trip to the broker. They run in
// order. A busy worker with room is in its service's with-room list; an idle
// one is given work before any one with room.
type worker struct {
	id       string
	user     string // the key it authenticated with ("" without CURVE)
	gen      uint64 // Access.Generation when its right to offer svc was checked
	svc      *service
	form     protocol.Form
	zmws     bool // sent a meta frame in READY: gets meta frames in REQUEST
	details  *protocol.WorkerDetails
	jobs     []*job // jobs[0] runs, the rest wait at the worker; empty when idle
	prefetch int    // jobs it may hold beyond the running one
	state    workerState
	stop     bool // drained (SERVER-DRAIN): told to stop once it holds no job
	// ownDrain: drained by its identity or HOST:PID, not with its
	// service, so its service's SERVER-RESUME does not end it.
	ownDrain bool
	since    time.Time
	lastSeen time.Time
	// completed and failed count the runs it ended with a final reply.
	completed int
	failed    int
	// goneAt, goneWhy (a protocol.Gone* word) and goneJob (the job it ran
	// then, if any) are set when it goes.
	goneAt  time.Time
	goneWhy string
	goneJob string
}

// New returns a Broker with cfg's defaults filled in.
func New(cfg Config) *Broker {
	cfg.setDefaults()
	b := &Broker{
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "broker").Logger(),
		ttl:      cfg.Heartbeat * time.Duration(cfg.Liveness),
		services: make(map[string]*service),
		workers:  make(map[string]*worker),
		jobs:     newJobIndex(),
		keys:     make(map[string]*job),
		owners:   make(map[string]string),
		waiting:  make(map[uint64]*waiting),
		newAt:    make(map[*job]stamp),
		history:  make([]*job, 0, cfg.History),
		batch:    &Batch{},
		recycled: &Batch{},
	}
	b.newSchedules(cfg.Schedules)
	return b
}

// Deadline is when Tick next has work: a heartbeat to send or a worker that
// may have expired. The loop should call Tick at or after it.
func (b *Broker) Deadline() time.Time {
	if b.nextHeartbeat.IsZero() {
		return time.Time{}
	}
	d := b.nextHeartbeat
	probe := time.Time{}
	if !b.storeFailed.IsZero() {
		probe = b.probeAt
	}
	for _, t := range []time.Time{b.nextExpiry, b.nextTTR, b.nextRetry(), b.nextForget, b.nextAccept(), probe, b.nextSched} {
		if !t.IsZero() && t.Before(d) {
			d = t
		}
	}
	return d
}

// Tick heartbeats the workers when an interval has passed and drops workers
// not heard from for Heartbeat × Liveness, requeueing their jobs.
func (b *Broker) Tick(now time.Time) []protocol.Envelope {
	b.out = b.out[:0]
	b.at = now
	b.checkAccess(now)
	if b.nextHeartbeat.IsZero() {
		b.nextHeartbeat = now.Add(b.cfg.Heartbeat)
	}
	if !b.nextExpiry.IsZero() && !now.Before(b.nextExpiry) {
		b.expire(now)
	}
	if !b.nextTTR.IsZero() && !now.Before(b.nextTTR) {
		b.overrun(now)
	}
	if t := b.nextRetry(); !t.IsZero() && !now.Before(t) {
		b.retryDue(now)
	}
	b.acceptsDue(now)
	b.probeDue(now)
	if len(b.scheds) > 0 && (b.nextSched.IsZero() || !now.Before(b.nextSched)) {
		b.schedulesDue(now)
	}
	if b.cfg.ForgetAfter > 0 {
		if b.nextForget.IsZero() {
			b.nextForget = now.Add(forgetEvery)
		} else if !now.Before(b.nextForget) {
			b.forgetIdle(now)
			b.nextForget = now.Add(forgetEvery)
		}
	}
	if !now.Before(b.nextHeartbeat) {
		for _, w := range b.workers {
			b.sendWorker(w, protocol.Message{Cmd: protocol.CmdHeartbeat})
		}
		b.nextHeartbeat = now.Add(b.cfg.Heartbeat)
	}
	return b.out
}

// CheckWorkers heartbeats every worker now, out of turn: the server calls
// it when a worker connection has closed, so a worker whose connection is
// gone is found unreachable (see Unreachable) at once, before anyone can
// connect under its routing id and be sent its jobs.
func (b *Broker) CheckWorkers(now time.Time) []protocol.Envelope {
	b.out = b.out[:0]
	for _, w := range b.workers {
		b.sendWorker(w, protocol.Message{Cmd: protocol.CmdHeartbeat})
	}
	if len(b.workers) > 0 {
		b.nextHeartbeat = now.Add(b.cfg.Heartbeat)
	}
	return b.out
}

// expire drops every worker silent for longer than ttl and recomputes
// nextExpiry.
func (b *Broker) expire(now time.Time) {
	var next time.Time
	var dead []*worker
	for _, w := range b.workers {
		at := w.lastSeen.Add(b.ttl)
		if now.After(at) {
			dead = append(dead, w)
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	// None of them is given the jobs of another: out of the idle and
	// with-room lists first, then dropped, in routing-id order (not the map's),
	// so the outcome of a Tick depends on its input alone.
	slices.SortFunc(dead, func(x, y *worker) int { return strings.Compare(x.id, y.id) })
	for _, w := range dead {
		b.moveWorker(w, workerDraining)
	}
	for _, w := range dead {
		b.log.Warn().Str(keyWorker, hexID(w.id)).Str(keyService, w.svc.name).
			Dur("silent", now.Sub(w.lastSeen)).Msg("worker expired")
		b.dropWorker(now, w, protocol.GoneExpired, "expired")
	}
	if !next.IsZero() {
		next = next.Add(time.Millisecond) // expiry is "after", not "at"
	}
	b.nextExpiry = next
}

// Shutdown says goodbye: DISCONNECT to every worker, and a failure reply to
// every client waiting on a sync job. Unfinished sync jobs, and async ones
// held only in memory (without Config.Durable), are lost: their count is
// logged. Durable async jobs are kept by the job store (the loop commits
// their records before it calls Shutdown), to be queued again at the next
// start; they are counted apart.
func (b *Broker) Shutdown(now time.Time) []protocol.Envelope {
	b.out = b.out[:0]
	for _, w := range b.workers {
		b.sendWorker(w, protocol.Message{Cmd: protocol.CmdDisconnect})
	}
	dropped, kept := 0, 0
	for j := range b.jobs.all() {
		if j.state != stateQueued && j.state != stateActive && j.state != stateScheduled {
			continue
		}
		switch {
		case j.sync:
			dropped++
			j.fail(protocol.CodeShutdown, "broker shut down before the job finished")
			b.replyFinal(j, protocol.StatusFailed, nil)
		case b.cfg.Durable:
			kept++
		default:
			dropped++
		}
	}
	if dropped > 0 {
		b.log.Warn().Int("jobs", dropped).Msg("unfinished jobs dropped at shutdown")
	}
	if kept > 0 {
		b.log.Info().Int("jobs", kept).Msg("unfinished jobs kept in the job store for the next start")
	}
	return b.out
}

// newID returns a new job ID: a ULID, unique and sortable by creation time.
func (b *Broker) newID(now time.Time) jobID {
	id, err := ulid.New(ulid.Timestamp(now), b.cfg.Entropy)
	if err != nil {
		// Monotonic entropy overflows only after 2^80 IDs in one
		// millisecond; a failing reader is a broken machine.
		b.log.Error().Err(err).Msg("job id entropy")
		id = ulid.MustNew(ulid.Timestamp(now), rand.Reader)
	}
	return jobID(id)
}

// lookup returns the job in memory whose ID is the text id, or nil.
func (b *Broker) lookup(id string) *job {
	if jid, ok := parseJobID(id); ok {
		return b.jobs.get(jid)
	}
	return nil
}

// sendWorker encodes m in w's form and queues it for w.
func (b *Broker) sendWorker(w *worker, m protocol.Message) {
	m.Form = w.form
	b.out = append(b.out, protocol.Envelope{Peer: protocol.ToWorker, To: w.id, Frames: protocol.EncodeWorker(m)})
}

// disconnect tells an unknown or misbehaving peer on the worker socket to go away.
func (b *Broker) disconnect(id string, form protocol.Form) {
	b.out = append(b.out, protocol.Envelope{Peer: protocol.ToWorker, To: id,
		Frames: protocol.EncodeWorker(protocol.Message{Form: form, Cmd: protocol.CmdDisconnect})})
}

// peerWarn starts a warning about a peer's misbehaviour of this kind, or
// returns nil (zerolog's no-op event) when the limiter holds it back: a
// flood of bad input must not flood the log. The line let through carries
// the count held back before it.
func (b *Broker) peerWarn(kind, peer string) *zerolog.Event {
	ok, held := b.limit.Allow(kind, peer, b.at)
	if !ok {
		return nil
	}
	ev := b.log.Warn()
	if held > 0 {
		ev = ev.Int("suppressed", held)
	}
	return ev
}

// keyName is how messages call the key user.
func (b *Broker) keyName(user string) string {
	if b.cfg.Access == nil || user == "" {
		return user
	}
	return b.cfg.Access.Name(user)
}

// forbid tells a worker peer to go away because its key may not do what it
// asked, with a meta frame saying so (MDP peers ignore trailing frames of
// DISCONNECT; zmws workers report it).
func (b *Broker) forbid(id string, form protocol.Form, text string) {
	b.refuseWorker(id, form, protocol.CodeForbidden, text)
}

// refuseWorker tells a worker peer to go away, with the reason's code and
// text in a meta frame after DISCONNECT.
func (b *Broker) refuseWorker(id string, form protocol.Form, code, text string) {
	meta := protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusRefused, Code: code, Error: text})
	b.out = append(b.out, protocol.Envelope{Peer: protocol.ToWorker, To: id,
		Frames: protocol.EncodeWorker(protocol.Message{Form: form, Cmd: protocol.CmdDisconnect, Body: [][]byte{meta}})})
}

// errWorkerGone is the reason text stem for jobs whose worker vanished.
var errWorkerGone = errors.New("worker lost")

// dropWorker forgets w, which is gone for reason (a protocol.Gone* word);
// why says it in words, for the job it held. That job goes back to the
// head of its queue, or fails when its attempts are spent.
func (b *Broker) dropWorker(now time.Time, w *worker, reason, why string) {
	s := w.svc
	b.goneWorker(now, w, reason)
	if len(w.jobs) == 0 {
		return
	}
	j := w.jobs[0]
	b.unstarted(now, w)
	w.jobs = nil
	b.lost(now, j, w, "worker "+hexID(w.id)+" "+why, protocol.CodeWorkerLost)
	b.dispatch(now, s) // lost may not have: jobs given back still wait
}

// goneWorker moves w, gone for reason, out of Broker.workers and keeps it
// in its service's gone list: at most Config.KeepGone a service, the oldest
// leaving first, so workers that come and go, however often, hold the
// broker's memory to that. The caller takes w's jobs away from it.
func (b *Broker) goneWorker(now time.Time, w *worker, reason string) {
	b.moveWorker(w, workerGone)
	w.goneAt, w.goneWhy = now, reason
	if len(w.jobs) > 0 {
		w.goneJob = w.jobs[0].id.String()
	}
	s, keep := w.svc, b.cfg.KeepGone
	switch {
	case keep == 0:
		return
	case len(s.gone) < keep:
		s.gone = append(s.gone, w)
		return
	}
	copy(s.gone, s.gone[1:])
	s.gone[len(s.gone)-1] = w
}

// back takes a worker that says READY under id out of s's gone list.
func (s *service) back(id string) {
	s.gone = slices.DeleteFunc(s.gone, func(g *worker) bool { return g.id == id })
}

// without removes w from ws, keeping the order.
func without(ws []*worker, w *worker) []*worker {
	for i, x := range ws {
		if x == w {
			copy(ws[i:], ws[i+1:])
			ws[len(ws)-1] = nil
			return ws[:len(ws)-1]
		}
	}
	return ws
}

// unstarted puts the jobs waiting at w (prefetched, never started) back at
// the head of their queue, in order, as if never dispatched: their attempt
// is not spent. w keeps only its running job.
func (b *Broker) unstarted(now time.Time, w *worker) {
	if len(w.jobs) < 2 {
		return
	}
	for i := len(w.jobs) - 1; i >= 1; i-- {
		b.requeueUnstarted(now, w, w.jobs[i], "not started: its worker is gone")
		w.jobs[i] = nil
	}
	w.jobs = w.jobs[:1]
}

// requeueUnstarted puts j, dispatched to w but never started there, back at
// the head of its queue as if never dispatched: its attempt is not spent.
// The caller takes j out of w.jobs.
func (b *Broker) requeueUnstarted(now time.Time, w *worker, j *job, why string) {
	r := j.lastRun()
	b.moveJob(now, j, stateQueued)
	j.attempts--
	r.worker = ""
	r.deadline = time.Time{}
	j.svc.queue.PushFront(j)
	b.markDirty(j)
	b.event(now, protocol.EventRequeued, j, func(e *protocol.Event) {
		e.Worker = hexID(w.id)
		e.Error = why
	})
}

// lost puts a job whose run ended without a result (its worker died,
// vanished, or overran the time-to-run) back at the head of its queue, or
// fails it with code when its attempts are spent.
func (b *Broker) lost(now time.Time, j *job, w *worker, why, code string) {
	s, r := j.svc, j.lastRun()
	if r.streamed {
		// Its caller already has part of this run's output: a new run
		// would send it again from the start, interleaved. Say so instead.
		j.fail(code, fmt.Sprintf("%s after its output began streaming to the caller (attempt %d); not run again", why, j.attempts))
		b.finish(now, j, stateFailed)
		b.replyFinal(j, protocol.StatusFailed, nil)
		return
	}
	if budget := j.budget(b.cfg.MaxAttempts); int(j.attempts) >= budget {
		j.fail(code, fmt.Sprintf("%v: %s during attempt %d of %d", errWorkerGone, why, j.attempts, budget))
		if code == protocol.CodeTimeout {
			r.err = fmt.Sprintf("%s during attempt %d of %d", why, j.attempts, budget)
		}
		b.finish(now, j, stateFailed)
		if j.sync {
			b.replyFinal(j, protocol.StatusFailed, nil)
		}
		return
	}
	b.log.Warn().Stringer(keyJob, j.id).Str(keyService, s.name).Str(keyWorker, hexID(w.id)).
		Int32(keyAttempt, j.attempts).Str("reason", why).Msg("job requeued")
	b.moveJob(now, j, stateQueued)
	r.worker = ""
	r.deadline = time.Time{}
	r.output, r.partialLen, r.truncated = r.output[:0], 0, false
	s.queue.PushFront(j)
	b.markDirty(j)
	b.event(now, protocol.EventRequeued, j, func(e *protocol.Event) { e.Worker = hexID(w.id); e.Error = why })
	b.dispatch(now, s)
}

// dispatch hands queued jobs of s to its idle workers, least recently used first.
func (b *Broker) dispatch(now time.Time, s *service) {
	if s.stopped() {
		return
	}
	for s.queue.Len() > 0 && len(s.idle)+len(s.withRoom) > 0 {
		// Busy workers with room take turns (see moveWorker).
		var w *worker
		if len(s.idle) > 0 {
			w = s.idle[0]
		} else {
			w = s.withRoom[0]
		}
		j := s.queue.PopFront()

		b.moveJob(now, j, stateActive)
		j.attempts++
		r := j.ensureRun()
		r.started = now
		r.worker = w.id
		r.notBefore = time.Time{}
		w.jobs = append(w.jobs, j)
		b.moveWorker(w, w.loaded())
		if len(w.jobs) == 1 {
			b.startClock(now, j)
		}
		b.markDirty(j)
		if x := s.stats; x != nil && j.attempts == 1 {
			x.wait.Observe(now.Sub(j.created.Time()))
		}

		id := j.id.String()
		var body [][]byte
		if w.zmws {
			body = make([][]byte, 0, 1+j.inputFrames())
			body = append(body, protocol.EncodeMeta(protocol.Meta{Job: id, Service: s.name, Attempt: int(j.attempts), Params: j.params}))
			body = j.appendInput(body)
		} else if body = j.appendInput(nil); len(body) == 0 {
			// A stock worker gets the parameters as a query string, or one
			// empty frame: many MDP workers expect at least one body frame.
			body = [][]byte{protocol.EncodeParams(j.params)}
		}
		b.sendWorker(w, protocol.Message{Cmd: protocol.CmdRequest, Address: []byte(id), Body: body})
		b.out[len(b.out)-1].Job = id
		if b.log.Debug().Enabled() {
			b.log.Debug().Str(keyJob, id).Str(keyService, s.name).Str(keyWorker, hexID(w.id)).
				Int32(keyAttempt, j.attempts).Msg("job dispatched")
		}
		b.event(now, protocol.EventStarted, j, nil)
	}
}
