package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/protocol"
)

// TestBroker_RandomSequences drives the broker with seeded random
// interleavings of every input it takes (workers coming and going, with
// and without prefetch; async and sync requests, some malformed; partials,
// finals and give-backs, in turn and out of turn, for jobs held and not;
// heartbeats, expiries, time-to-run overruns, retry backoffs, unreachable
// workers; commits that succeed or fail, clean restarts and crashes
// restored from what was committed; archive lookups answered at once, some
// steps later, stale or with an error; submissions with a priority or a
// delay (scheduled); cancel, retry, titanic.close and queries) and
// checks the broker's invariants after every input (see seq.check). At the
// end it drains: workers answer everything, every lookup is answered and
// time runs on, and every request must have had exactly one final answer.
//
// The journal is a testJournal (journal_test.go): this package's tests
// cannot import store, which imports broker.
//
// Replay one seed with -seq.seed N (or ZMWS_SEQ_SEED=N), longer with
// -seq.steps; -seq.verbose logs the broker; ZMWS_SEQ_TRACE=FILE writes
// every input to FILE (diff two runs to see where they part). A seed
// replays exactly: the broker's outcome does not depend on map order.
func TestBroker_RandomSequences(t *testing.T) {
	seeds := []int64{1, 2, 3, 4, 5, 6, 7, 8}
	if s := os.Getenv("ZMWS_SEQ_SEED"); s != "" && *seqSeed == 0 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("ZMWS_SEQ_SEED=%q: %v", s, err)
		}
		*seqSeed = n
	}
	if *seqSeed != 0 {
		seeds = []int64{*seqSeed}
	}
	steps := *seqSteps
	if testing.Short() {
		steps /= 5
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel() // each has its own broker, harness and rng
			start := time.Now()
			s := newSeq(t, seed)
			for s.step = 1; s.step <= steps; s.step++ {
				s.randomStep()
			}
			s.drain()
			t.Logf("seed %d: %d steps in %v (%s)", seed, steps, time.Since(start).Round(time.Millisecond), s.stats())
		})
	}
}

var (
	seqSeed    = flag.Int64("seq.seed", 0, "TestBroker_RandomSequences: replay this seed only")
	seqSteps   = flag.Int("seq.steps", 10_000, "TestBroker_RandomSequences: steps per seed")
	seqVerbose = flag.Bool("seq.verbose", false, "TestBroker_RandomSequences: log the broker")
)

var seqTrace, _ = func() (*os.File, error) {
	if p := os.Getenv("ZMWS_SEQ_TRACE"); p != "" {
		return os.Create(p)
	}
	return nil, nil
}()

var seqServices = []string{"A", "B", "C"}

// seq is one random sequence: the broker under test, the peers it talks
// to as the harness plays them, and what the harness has seen.
type seq struct {
	t    *testing.T
	seed int64
	rng  *rand.Rand
	cfg  Config
	b    *Broker
	st   *testJournal // what the commits so far stored (Durable)

	now  time.Time
	step int
	sub  int      // inputs within the step
	hist []string // the last steps, for failure messages

	workers []*simWorker
	reqs    map[string]*simReq // by client identity: one per request
	nreq    int
	lastKey string   // the idempotency key last made up
	oldKeys []string // every idempotency key made up, in order
	failing bool     // the store refuses commits for now
	then    func()   // run by do after the output, before the checks
	// lookups are the Lookups emitted and not yet answered (Archived), in
	// the order they came; answered keeps a few Answers given, to give
	// them again.
	lookups  []*simLookup
	answered []Answer
	// keyJobs is, per idempotency key, the job ID the first acceptance
	// under it named: every later one must name the same job.
	keyJobs map[string]string
	// svcRetries is the most retries a READY ever declared per service.
	svcRetries map[string]int

	before map[string]bool // do's, reused
	where  map[*job]string // check's, reused

	jobs map[string]*simJob // every job ID seen
	seen []string           // the same, in the order seen
	open map[string]jobID   // the accepted ones not finished (see note)
	// svcs is, per service, the counters the broker is expected to show:
	// its value at the service's start plus the finish events since.
	svcs map[string]*svcCount

	// n counts what happened, for the log line and to see that the
	// generator reaches interesting states.
	n map[string]int
}

type simWorker struct {
	id       string
	up       bool // said READY and not told DISCONNECT (as it sees it)
	zombie   bool // stopped heartbeating: the broker should expire it
	draining bool // gave a job back: the broker sends it no more
	v1       bool // a stock 7/MDP worker (no meta)
	svc      string
	prefetch int
	jobs     []string // REQUESTs received and not answered, in order
	lastSent time.Time
}

type reqKind int

const (
	reqAsync reqKind = iota
	reqSync
	reqQuery     // SERVER-*, mmi.*: answered at once
	reqAdmin     // SERVER-CANCEL, SERVER-RETRY: answered after the commit
	reqMalformed // may get no answer at all
)

type simReq struct {
	client  string
	kind    reqKind
	desc    string
	step    int
	replies int    // final replies (REPLY) delivered
	lost    bool   // the broker crashed before answering: no answer is due
	plain   bool   // sent no meta frame: its replies have none either
	key     string // its idempotency key, "" for none
	waited  bool   // it waited for a Lookup
	job     string
	status  string
}

// simLookup is a Lookup the loop has taken and not yet answered.
type simLookup struct {
	l      Lookup
	client string  // the request that waits for it
	due    int     // the step it is answered at, at the latest
	fail   bool    // the archive read fails
	early  *Answer // read when emitted, not when answered: may be stale
}

type simJob struct {
	id       string
	accepted bool // its ID reached the client that submitted it
	finished bool // per the last event about it
	service  string
	closed   bool // a titanic.close of it was sent: it may be deleted
}

type svcCount struct {
	s                   *service
	completed, failed   uint64 // at its start (new, or restored)
	evCompleted, evFail uint64
}

func newSeq(t *testing.T, seed int64) *seq {
	s := &seq{
		t: t, seed: seed, rng: rand.New(rand.NewSource(seed)),
		now:  time.Unix(1_700_000_000, 0),
		reqs: map[string]*simReq{}, jobs: map[string]*simJob{}, open: map[string]jobID{}, svcRetries: map[string]int{}, before: map[string]bool{}, where: map[*job]string{}, svcs: map[string]*svcCount{}, n: map[string]int{}, keyJobs: map[string]string{},
	}
	s.cfg = Config{
		Heartbeat:       time.Second,
		Liveness:        3,
		MaxAttempts:     3,
		MaxQueue:        40,
		History:         64,
		Events:          true,
		Durable:         seed%2 == 0,
		RetryBackoff:    300 * time.Millisecond,
		RetryBackoffMax: 2 * time.Second,
		KeepGone:        3,
		Entropy:         ulid.Monotonic(rand.New(rand.NewSource(^seed)), 0),
		Logger:          zerolog.Nop(),
	}
	if seed%4 >= 2 {
		s.cfg.History = 16 // finished jobs leave memory: the store or the events answer for them
	}
	if seed%3 == 0 {
		s.cfg.TTR = 2500 * time.Millisecond
	}
	if seed%5 == 0 {
		s.cfg.MaxQueue = 6 // refusals, and requeues past the bound
	}
	if seed%7 == 0 {
		s.cfg.MaxAttempts = 1
		s.cfg.KeepGone = -1
	}
	if *seqVerbose {
		s.cfg.Logger = zerolog.New(zerolog.NewTestWriter(t))
	}
	if s.cfg.Durable {
		s.st = newTestJournal()
		s.cfg.Archived = true
	}
	for i := range 12 {
		s.workers = append(s.workers, &simWorker{id: fmt.Sprintf("w%02d", i)})
	}
	s.b = New(s.cfg)
	s.do("start", func() []protocol.Envelope { return s.b.Tick(s.now) })
	return s
}

func (s *seq) stats() string {
	keys := make([]string, 0, len(s.n))
	for k := range s.n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteString(" ")
		}
		fmt.Fprintf(&sb, "%s=%d", k, s.n[k])
	}
	return sb.String()
}

// fail reports a broken invariant with the seed, the step and the steps
// before it, and how to replay.
func (s *seq) fail(format string, args ...any) {
	s.t.Helper()
	tail := s.hist
	if len(tail) > 40 {
		tail = tail[len(tail)-40:]
	}
	s.t.Fatalf("seed %d, step %d.%d: %s\nlast steps:\n  %s\nreplay: go test ./broker -run 'TestBroker_RandomSequences/seed=%d$' -seq.seed %d -seq.steps %d -v",
		s.seed, s.step, s.sub, fmt.Sprintf(format, args...), strings.Join(tail, "\n  "), s.seed, s.seed, s.step)
}

// do feeds the broker one input (call) described by desc, takes its
// output as the loop would, and checks the invariants.
func (s *seq) do(desc string, call func() []protocol.Envelope) {
	s.t.Helper()
	s.sub++
	s.hist = append(s.hist, fmt.Sprintf("%d.%d @%v %s", s.step, s.sub, s.now.Sub(time.Unix(1_700_000_000, 0)), desc))
	if seqTrace != nil {
		fmt.Fprintln(seqTrace, s.hist[len(s.hist)-1])
	}
	if len(s.hist) > 200 {
		s.hist = slices.Delete(s.hist, 0, 100)
	}
	before := s.before
	clear(before)
	for id := range s.b.workers {
		before[id] = true
	}
	out := call()
	s.deliver(out, before, desc)
	s.takeLookups()
	if s.then != nil {
		s.then()
		s.then = nil
	}
	s.check()
}

// ---- the generator ----

type action struct {
	weight int
	name   string
	run    func()
}

func (s *seq) randomStep() {
	s.sub = 0
	s.now = s.now.Add(time.Duration(s.rng.Intn(60)) * time.Millisecond)
	actions := []action{
		{10, "ready", s.ready},
		{14, "async", func() { s.submit(false) }},
		{8, "sync", func() { s.submit(true) }},
		{22, "answer", s.answer},
		{5, "partial", s.partial},
		{2, "stray", s.stray},
		{24, "heartbeat", s.heartbeat},
		{2, "disconnect", s.workerDisconnect},
		{2, "unreachable", s.unreachable},
		{12, "tick", s.tick},
		{1, "zombie", s.zombie},
		{3, "cancel", s.cancel},
		{2, "retry", s.retry},
		{2, "titanic.close", s.titanicClose},
		{3, "query", s.query},
		{1, "malformed client", s.malformedClient},
		{1, "malformed worker", s.malformedWorker},
		{1, "check workers", func() { s.do("CheckWorkers", func() []protocol.Envelope { return s.b.CheckWorkers(s.now) }) }},
	}
	if s.cfg.Durable {
		actions = append(actions, action{10, "commit", s.commit}, action{1, "store", s.toggleStore},
			action{6, "lookup", s.lookup}, action{1, "answer twice", s.answerTwice})
		if s.rng.Intn(400) == 0 {
			actions = []action{{1, "restart", s.restart}}
		}
	} else {
		actions = append(actions, action{2, "flush", s.flushNotDurable})
	}
	total := 0
	for _, a := range actions {
		total += a.weight
	}
	n := s.rng.Intn(total)
	for _, a := range actions {
		if n < a.weight {
			a.run()
			break
		}
		n -= a.weight
	}
	// The lookups due by now come back: those emitted in this step are
	// answered at once, as by a fast archive.
	for i := 0; i < len(s.lookups); {
		if s.lookups[i].due <= s.step {
			s.answerLookup(i)
			continue
		}
		i++
	}
}

func (s *seq) pick(ws []*simWorker) *simWorker {
	if len(ws) == 0 {
		return nil
	}
	return ws[s.rng.Intn(len(ws))]
}

func (s *seq) upWorkers(filter func(*simWorker) bool) []*simWorker {
	var ws []*simWorker
	for _, w := range s.workers {
		if w.up && (filter == nil || filter(w)) {
			ws = append(ws, w)
		}
	}
	return ws
}

func (s *seq) ready() {
	var down []*simWorker
	for _, w := range s.workers {
		if !w.up {
			down = append(down, w)
		}
	}
	w := s.pick(down)
	if w == nil {
		s.heartbeat()
		return
	}
	s.readyWorker(w, seqServices[s.rng.Intn(len(seqServices))])
}

func (s *seq) readyWorker(w *simWorker, svc string) {
	*w = simWorker{id: w.id, up: true, svc: svc, v1: s.rng.Intn(5) == 0, lastSent: s.now}
	var m protocol.Meta
	if !w.v1 {
		if s.rng.Intn(2) == 0 {
			w.prefetch = 1 + s.rng.Intn(3)
		}
		m.Prefetch = w.prefetch
		if s.rng.Intn(8) == 0 {
			m.TTRMillis = int64(1000 + s.rng.Intn(3000))
		}
		if s.rng.Intn(8) == 0 {
			m.Retries = s.rng.Intn(3)
			s.svcRetries[svc] = max(s.svcRetries[svc], m.Retries)
		}
	}
	desc := fmt.Sprintf("%s READY %s v1=%v prefetch=%d ttr=%d retries=%d", w.id, svc, w.v1, m.Prefetch, m.TTRMillis, m.Retries)
	s.worker(w, desc, func() [][]byte {
		if w.v1 {
			return protocol.EncodeWorker(protocol.Message{Form: seqV1, Cmd: protocol.CmdReady, Service: svc})
		}
		return protocol.EncodeWorker(protocol.Message{Form: seqV2, Cmd: protocol.CmdReady, Service: svc, Body: [][]byte{protocol.EncodeMeta(m)}})
	}())
	s.n["ready"]++
}

var (
	seqV1 = protocol.Form{Version: protocol.V1, Delimiter: true}
	seqV2 = protocol.Form{Version: protocol.V2}
)

func (w *simWorker) form() protocol.Form {
	if w.v1 {
		return seqV1
	}
	return seqV2
}

func (s *seq) worker(w *simWorker, desc string, frames [][]byte) {
	w.lastSent = s.now
	s.do(desc, func() []protocol.Envelope { return s.b.HandleWorker(s.now, w.id, "", frames) })
}

func (s *seq) newClient(kind reqKind, desc string) *simReq {
	s.nreq++
	prefix := [...]string{"a", "s", "q", "x", "m"}[kind]
	r := &simReq{client: fmt.Sprintf("%s%d", prefix, s.nreq), kind: kind, desc: desc, step: s.step}
	s.reqs[r.client] = r
	return r
}

func (s *seq) submit(sync bool) {
	svc := seqServices[s.rng.Intn(len(seqServices))]
	if s.rng.Intn(25) == 0 {
		svc = "NOSUCH"
	}
	name := svc
	kind := reqAsync
	if sync {
		kind = reqSync
		name = [...]string{protocol.SyncPrefixDash, protocol.SyncPrefixColon}[s.rng.Intn(2)] + svc
	}
	var m protocol.Meta
	if s.rng.Intn(3) == 0 {
		m.Params = map[string]string{"n": strconv.Itoa(s.rng.Intn(100))}
	}
	if s.rng.Intn(6) == 0 {
		m.TTRMillis = int64(300 + s.rng.Intn(3000))
	}
	if s.rng.Intn(5) == 0 {
		m.Retries = 1 + s.rng.Intn(3)
	}
	if s.rng.Intn(4) == 0 {
		m.Priority = s.rng.Intn(5) - 2
	}
	if s.rng.Intn(5) == 0 { // scheduled (a sync job is refused bad_request)
		m.DelayMillis = int64(1 + s.rng.Intn(2000))
		s.n["delayed"]++
	}
	switch n := s.rng.Intn(12); {
	case n < 2: // a key used before: a resubmission (or a conflict)
		m.Key = s.lastKey
	case n < 3 && len(s.oldKeys) > 0: // one used long ago: its job may be in the archive only
		m.Key = s.oldKeys[s.rng.Intn(len(s.oldKeys))]
	case n < 5:
		m.Key = fmt.Sprintf("k%d", s.nreq)
		s.lastKey = m.Key
		s.oldKeys = append(s.oldKeys, m.Key)
	}
	form, withMeta := seqV2, true
	switch s.rng.Intn(6) {
	case 0:
		form, withMeta = protocol.Form{Version: protocol.V1, Delimiter: true}, false
	case 1:
		withMeta = false
	}
	r := s.newClient(kind, "")
	r.plain = !withMeta
	if withMeta && !sync {
		r.key = m.Key
	}
	if withMeta && s.rng.Intn(3) > 0 {
		m.Ref = "r" + r.client
	}
	var body [][]byte
	if withMeta {
		body = append(body, protocol.EncodeMeta(m))
	}
	if s.rng.Intn(2) == 0 {
		body = append(body, []byte("input"))
	}
	r.desc = fmt.Sprintf("%s REQUEST %s v%d meta=%v ref=%q key=%q ttr=%d retries=%d priority=%d delay=%d", r.client, name, form.Version, withMeta, m.Ref, m.Key, m.TTRMillis, m.Retries, m.Priority, m.DelayMillis)
	s.client(r, protocol.EncodeClient(protocol.Message{Form: form, Cmd: protocol.CmdRequest, Service: name, Body: body}))
	s.n[map[bool]string{false: "async", true: "sync"}[sync]]++
}

func (s *seq) client(r *simReq, frames [][]byte) {
	s.do(r.desc, func() []protocol.Envelope { return s.b.HandleClient(s.now, r.client, "", frames) })
}

// answer has a worker end one of its jobs: usually the one it runs,
// sometimes one waiting at it (out of turn).
func (s *seq) answer() {
	w := s.pick(s.upWorkers(func(w *simWorker) bool { return len(w.jobs) > 0 }))
	if w == nil {
		s.tick()
		return
	}
	i := 0
	if len(w.jobs) > 1 && s.rng.Intn(6) == 0 {
		i = s.rng.Intn(len(w.jobs))
	}
	id := w.jobs[i]
	w.jobs = slices.Delete(w.jobs, i, i+1)
	if w.v1 {
		s.worker(w, fmt.Sprintf("%s REPLY %s (stock)", w.id, id), protocol.EncodeWorker(protocol.Message{Form: seqV1, Cmd: protocol.CmdReply, Address: []byte(id), Body: [][]byte{[]byte("out")}}))
		s.n["complete"]++
		return
	}
	var m protocol.Meta
	switch n := s.rng.Intn(20); {
	case n < 13:
		m.Status = protocol.StatusComplete
		s.n["complete"]++
	case n < 19:
		m.Status = protocol.StatusFailed
		m.Error = "boom"
		s.n["failed"]++
	default:
		m.Status = protocol.StatusReturned
		w.draining = true
		s.n["returned"]++
	}
	s.worker(w, fmt.Sprintf("%s FINAL %s %s (job %d of %d)", w.id, id, m.Status, i+1, len(w.jobs)+1),
		protocol.EncodeWorker(protocol.Message{Form: seqV2, Cmd: protocol.CmdReply, Address: []byte(id), Body: [][]byte{protocol.EncodeMeta(m), []byte("out")}}))
}

func (s *seq) partial() {
	w := s.pick(s.upWorkers(func(w *simWorker) bool { return len(w.jobs) > 0 }))
	if w == nil {
		s.heartbeat()
		return
	}
	id := w.jobs[0]
	if len(w.jobs) > 1 && s.rng.Intn(5) == 0 {
		id = w.jobs[len(w.jobs)-1]
	}
	s.worker(w, fmt.Sprintf("%s PARTIAL %s", w.id, id), protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: protocol.CmdPartial, Address: []byte(id), Body: [][]byte{[]byte("part")}}))
	s.n["partial"]++
}

// stray sends a REPLY or PARTIAL for a job the worker does not hold: an
// unknown ID, or another worker's job.
func (s *seq) stray() {
	w := s.pick(s.upWorkers(nil))
	if w == nil {
		s.tick()
		return
	}
	id := ulid.MustNew(ulid.Timestamp(s.now), rand.New(rand.NewSource(s.rng.Int63()))).String()
	if o := s.pick(s.upWorkers(func(o *simWorker) bool { return o != w && len(o.jobs) > 0 })); o != nil && s.rng.Intn(2) == 0 {
		id = o.jobs[0]
	}
	cmd := protocol.CmdReply
	if s.rng.Intn(2) == 0 {
		cmd = protocol.CmdPartial
	}
	s.worker(w, fmt.Sprintf("%s %v for a job not held %s", w.id, cmd, id), protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: cmd, Address: []byte(id),
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete})}}))
	s.n["stray"]++
}

// heartbeat: the live worker heard from longest ago, or any.
func (s *seq) heartbeat() {
	ws := s.upWorkers(func(w *simWorker) bool { return !w.zombie })
	if len(ws) == 0 {
		s.tick()
		return
	}
	w := s.pick(ws)
	if s.rng.Intn(4) > 0 {
		for _, x := range ws {
			if x.lastSent.Before(w.lastSent) {
				w = x
			}
		}
	}
	s.worker(w, w.id+" HEARTBEAT", protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: protocol.CmdHeartbeat}))
}

func (s *seq) zombie() {
	if w := s.pick(s.upWorkers(func(w *simWorker) bool { return w.zombie })); w != nil && s.rng.Intn(2) == 0 {
		w.zombie = false // it wakes up: the broker may have forgotten it
		s.worker(w, w.id+" HEARTBEAT (awake again)", protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: protocol.CmdHeartbeat}))
		return
	}
	if w := s.pick(s.upWorkers(nil)); w != nil {
		w.zombie = true
		s.hist = append(s.hist, fmt.Sprintf("%d (%s goes silent)", s.step, w.id))
		s.n["zombie"]++
	}
}

func (s *seq) workerDisconnect() {
	w := s.pick(s.upWorkers(nil))
	if w == nil {
		return
	}
	s.worker(w, w.id+" DISCONNECT", protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: protocol.CmdDisconnect}))
	w.up, w.jobs = false, nil
	s.n["disconnect"]++
}

// unreachable: the loop could not send to a worker; the REQUESTs it last
// got may not have reached it.
func (s *seq) unreachable() {
	w := s.pick(s.upWorkers(nil))
	if w == nil {
		return
	}
	var undelivered []string
	if k := s.rng.Intn(len(w.jobs) + 1); k > 0 {
		undelivered = slices.Clone(w.jobs[len(w.jobs)-k:])
	}
	w.up, w.jobs = false, nil
	s.do(fmt.Sprintf("Unreachable %s undelivered=%v", w.id, undelivered), func() []protocol.Envelope { return s.b.Unreachable(s.now, w.id, undelivered...) })
	s.n["unreachable"]++
}

func (s *seq) tick() {
	switch n := s.rng.Intn(20); {
	case n == 0:
		s.now = s.now.Add(time.Duration(3000+s.rng.Intn(2500)) * time.Millisecond) // workers expire
		s.n["jump"]++
	case n < 6:
		if d := s.b.Deadline(); !d.IsZero() && d.After(s.now) && d.Sub(s.now) < 5*time.Second {
			s.now = d // the loop wakes at the deadline
		}
	default:
		s.now = s.now.Add(time.Duration(s.rng.Intn(400)) * time.Millisecond)
	}
	s.do("Tick", func() []protocol.Envelope { return s.b.Tick(s.now) })
}

// knownJob picks a job the broker holds, one the harness has seen (it may
// be in the archive only), or a made-up one.
func (s *seq) knownJob(filter func(*Broker, *job) bool) string {
	if len(s.seen) > 0 && s.rng.Intn(5) == 0 {
		return s.seen[s.rng.Intn(len(s.seen))]
	}
	var all []*job
	for j := range s.b.jobs.all() {
		all = append(all, j)
	}
	slices.SortFunc(all, func(x, y *job) int { return bytes.Compare(x.id[:], y.id[:]) }) // as their text sorts
	var ids []*job
	for _, j := range all { // in order: filter may use the rng
		if filter == nil || filter(s.b, j) {
			ids = append(ids, j)
		}
	}
	if len(ids) == 0 || s.rng.Intn(10) == 0 {
		return ulid.MustNew(ulid.Timestamp(s.now), rand.New(rand.NewSource(s.rng.Int63()))).String()
	}
	return ids[s.rng.Intn(len(ids))].id.String()
}

func (s *seq) cancel() {
	id := s.knownJob(func(_ *Broker, j *job) bool {
		return s.rng.Intn(4) == 0 || j.state == stateActive || j.state == stateQueued || j.state == stateScheduled
	})
	r := s.newClient(reqAdmin, "")
	r.desc = r.client + " SERVER-CANCEL " + id
	s.client(r, protocol.EncodeClient(protocol.Message{Form: seqV2, Cmd: protocol.CmdRequest, Service: protocol.ServerCancel,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Ref: "c"}), []byte(id)}}))
	s.n["cancel"]++
}

func (s *seq) retry() {
	if !s.cfg.Archived && s.rng.Intn(3) == 0 {
		// A bulk retry of the failed jobs, answered from the history
		// (with an archive it would wait for a Lookup of a FailedQuery,
		// which this harness does not answer).
		params := map[string]string{protocol.ParamState: protocol.JobFailed}
		if s.rng.Intn(2) == 0 {
			params[protocol.ParamService] = seqServices[s.rng.Intn(len(seqServices))]
		}
		r := s.newClient(reqAdmin, "")
		r.desc = fmt.Sprintf("%s SERVER-RETRY %v", r.client, params)
		s.client(r, protocol.EncodeClient(protocol.Message{Form: seqV2, Cmd: protocol.CmdRequest, Service: protocol.ServerRetry,
			Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Params: params, Limit: s.rng.Intn(4)})}}))
		s.n["bulk retry"]++
		return
	}
	id := s.knownJob(func(_ *Broker, j *job) bool { return j.state == stateFailed || s.rng.Intn(5) == 0 })
	r := s.newClient(reqAdmin, "")
	r.desc = r.client + " SERVER-RETRY " + id
	s.client(r, protocol.EncodeClient(protocol.Message{Form: seqV2, Cmd: protocol.CmdRequest, Service: protocol.ServerRetry,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{}), []byte(id)}}))
	s.n["retry"]++
}

// titanicClose sends titanic.close (9/TSP) of a job: cancelled if
// unfinished, and deleted from memory and the journal.
func (s *seq) titanicClose() {
	id := s.knownJob(func(_ *Broker, j *job) bool { return j.state == stateScheduled || s.rng.Intn(6) == 0 })
	sj := s.jobs[id]
	if sj == nil {
		sj = &simJob{id: id}
		s.jobs[id] = sj
		s.seen = append(s.seen, id)
	}
	sj.closed = true
	if j := s.b.lookup(id); j != nil {
		s.n["titanic.close "+j.state.String()]++
	}
	r := s.newClient(reqAdmin, "")
	r.plain = true // Titanic replies carry no meta frame
	r.desc = r.client + " titanic.close " + id
	s.client(r, protocol.EncodeClient(protocol.Message{Form: seqV1, Cmd: protocol.CmdRequest, Service: protocol.TitanicClose, Body: [][]byte{[]byte(id)}}))
	s.n["titanic.close"]++
}

func (s *seq) query() {
	svc := []string{protocol.ServerWorkers, protocol.ServerJobs, protocol.ServerActive, protocol.ServerQueue, protocol.ServerServices,
		protocol.ServerJob, protocol.ServerHealth, protocol.ServerForget, "SERVER-NOSUCH", protocol.MMIService,
		protocol.ServerPause, protocol.ServerResume, protocol.ServerDrain, protocol.ServerResume}[s.rng.Intn(14)]
	body := [][]byte{protocol.EncodeMeta(protocol.Meta{Limit: s.rng.Intn(5)})}
	switch svc {
	case protocol.ServerJob:
		body = append(body, []byte(s.knownJob(nil)))
	case protocol.ServerForget, protocol.MMIService, protocol.ServerPause, protocol.ServerResume:
		body = append(body, []byte(append(seqServices, "NOSUCH")[s.rng.Intn(4)]))
	case protocol.ServerDrain: // a service, or a live worker
		if ws := s.b.Workers(); len(ws) > 0 && s.rng.Intn(2) == 0 {
			body = append(body, []byte(ws[s.rng.Intn(len(ws))].Identity))
		} else {
			body = append(body, []byte(append(seqServices, "NOSUCH")[s.rng.Intn(4)]))
		}
	case protocol.ServerWorkers:
		if s.rng.Intn(2) == 0 {
			body = append(body, []byte(protocol.WorkersAll))
		}
	}
	r := s.newClient(reqQuery, "")
	r.desc = r.client + " " + svc
	s.client(r, protocol.EncodeClient(protocol.Message{Form: seqV2, Cmd: protocol.CmdRequest, Service: svc, Body: body}))
	s.n["query"]++
}

func (s *seq) malformedClient() {
	r := s.newClient(reqMalformed, "")
	var frames [][]byte
	switch s.rng.Intn(4) {
	case 0:
		frames = [][]byte{[]byte("garbage")}
	case 1: // a meta frame that is not JSON
		bad := []byte(protocol.MetaPrefix + "{not json")
		frames = protocol.EncodeClient(protocol.Message{Form: seqV2, Cmd: protocol.CmdRequest, Service: "A", Body: [][]byte{bad}})
	case 2: // two parameters for one variable
		frames = protocol.EncodeClient(protocol.Message{Form: seqV2, Cmd: protocol.CmdRequest, Service: "SYNC-B",
			Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Params: map[string]string{"a-b": "1", "a_b": "2"}})}})
	default: // no service
		frames = protocol.EncodeClient(protocol.Message{Form: seqV2, Cmd: protocol.CmdRequest, Service: "A"})
		frames[1] = nil
	}
	r.desc = fmt.Sprintf("%s malformed %q", r.client, frames)
	s.client(r, frames)
	s.n["malformed"]++
}

func (s *seq) malformedWorker() {
	w := s.pick(s.workers)
	var frames [][]byte
	switch s.rng.Intn(3) {
	case 0:
		frames = [][]byte{[]byte("junk"), []byte("more")}
	case 1: // a second READY: an invalid command from a known worker
		frames = protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: protocol.CmdReady, Service: "A"})
		if s.b.workers[w.id] == nil {
			frames = protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: protocol.CmdRequest, Address: []byte("x")})
		}
	default: // a valid header, a broken command
		frames = [][]byte{nil, []byte(protocol.HeaderWorkerV1), {0x7f}}
	}
	s.worker(w, fmt.Sprintf("%s malformed %q", w.id, frames), frames)
	s.n["malformed"]++
}

// commit is the loop's commit: Flush, the journal's Commit (or a
// failure), then Committed and the replies it releases, or Rejected.
func (s *seq) commit() {
	var batch *Batch
	s.do("Flush", func() []protocol.Envelope { batch = s.b.Flush(); return nil })
	var err error
	if s.failing {
		err = errors.New("disk full")
	} else if err = s.st.Commit(batch); err != nil {
		s.fail("journal refused the broker's batch: %v", err)
	}
	if err != nil {
		var waited []string // the clients of the replies held for the batch
		for _, e := range s.b.heldFlushed {
			waited = append(waited, e.To)
		}
		s.do("Rejected", func() []protocol.Envelope { return s.b.Rejected(s.now, err) })
		s.n["rejected"]++
		// Rejected answers every request whose reply was held for the
		// batch: the submissions of its new jobs, and the others (a keyed
		// resubmission, a SERVER-CANCEL or SERVER-RETRY) with a refusal,
		// store_unavailable, in place of the reply that was held.
		for _, to := range waited {
			if r := s.reqs[to]; r != nil && r.replies == 0 {
				s.fail("request %s (%s, step %d) waited for a commit that failed and got no answer", r.client, r.desc, r.step)
			}
		}
		return
	}
	var released []protocol.Envelope
	s.do("Committed", func() []protocol.Envelope { released = s.b.Committed(); return nil })
	s.sub++
	for _, e := range released {
		if e.Peer != protocol.ToClient || s.reqs[e.To] == nil {
			s.fail("Committed released a reply to %v %q, not a client that asked", e.Peer, e.To)
		}
		s.deliverClient(e, true)
	}
	s.check()
	s.n["committed"]++
}

// flushNotDurable is the loop's commit without Config.Durable: there is
// nothing to commit, and nothing waits for it.
func (s *seq) flushNotDurable() {
	var n int
	var released []protocol.Envelope
	s.do("Flush (not durable)", func() []protocol.Envelope {
		n = s.b.Flush().Len()
		released = s.b.Committed()
		return nil
	})
	if n != 0 || len(released) != 0 {
		s.fail("without Config.Durable, Flush gave %d changes and Committed %d replies", n, len(released))
	}
}

// takeLookups takes the Lookups the last input emitted, as the loop does,
// and decides how each is answered: at the end of this step or some steps
// later, read from the journal now (it may be stale by its answer) or
// then, or failing.
func (s *seq) takeLookups() {
	for _, l := range s.b.Lookups() {
		if !s.cfg.Archived {
			s.fail("a Lookup without Config.Archived: %+v", l)
		}
		w := s.b.waiting[l.seq]
		if w == nil {
			s.fail("Lookup %+v for no waiting request", l)
		}
		r := s.reqs[w.r.client]
		if r == nil || r.replies > 0 || r.waited || s.heldFor(w.r.client) > 0 {
			s.fail("Lookup %+v for %q, not a request that waits", l, w.r.client)
		}
		if (l.ID == "") == (l.Key == "") || (l.Key != "" && l.Key != r.key) {
			s.fail("Lookup %+v for %s (%s): one of ID or its key, please", l, r.client, r.desc)
		}
		r.waited = true
		sl := &simLookup{l: l, client: r.client, due: s.step, fail: s.rng.Intn(8) == 0}
		if s.rng.Intn(3) > 0 {
			sl.due += 1 + s.rng.Intn(30)
		}
		if s.rng.Intn(2) == 0 {
			a := s.ask(sl)
			sl.early = &a
		}
		s.lookups = append(s.lookups, sl)
		s.n[map[bool]string{false: "lookup by ID", true: "lookup by key"}[l.Key != ""]]++
		if sl.fail {
			s.n["lookup fails"]++
		}
	}
}

// ask is the archive's answer to sl.
func (s *seq) ask(sl *simLookup) Answer {
	if sl.fail {
		return Answer{Lookup: sl.l, Err: errors.New("journal read failed")}
	}
	return sl.l.Ask(s.st)
}

// heldFor counts the replies to client held for the next commit.
func (s *seq) heldFor(client string) int {
	n := 0
	for _, e := range s.b.heldNext {
		if e.Peer == protocol.ToClient && e.To == client {
			n++
		}
	}
	return n
}

// lookup answers a pending Lookup, ahead of its due step.
func (s *seq) lookup() {
	if len(s.lookups) == 0 {
		s.tick()
		return
	}
	s.answerLookup(s.rng.Intn(len(s.lookups)))
}

// answerLookup feeds the broker the Answer to s.lookups[i]: its request
// gets its one final reply, now or held for the next commit.
func (s *seq) answerLookup(i int) {
	sl := s.lookups[i]
	s.lookups = slices.Delete(s.lookups, i, i+1)
	a := s.ask(sl)
	if sl.early != nil {
		a = *sl.early
	}
	r := s.reqs[sl.client]
	if r.replies > 0 || s.heldFor(sl.client) > 0 {
		s.fail("%s (%s) has its reply before its Lookup's Answer", r.client, r.desc)
	}
	s.do(fmt.Sprintf("LookedUp %s id=%q key=%q found=%v err=%v early=%v", sl.client, a.Lookup.ID, a.Lookup.Key, a.Found, a.Err, sl.early != nil),
		func() []protocol.Envelope { return s.b.LookedUp(s.now, a) })
	if n, h := r.replies, s.heldFor(sl.client); n+h != 1 {
		s.fail("the Answer to %s (%s) gave %d final replies and %d held ones, want 1", r.client, r.desc, n, h)
	}
	if len(s.answered) < 8 {
		s.answered = append(s.answered, a)
	} else {
		s.answered[s.rng.Intn(len(s.answered))] = a
	}
	s.n["looked up"]++
	if a.Found {
		s.n["looked up: found"]++
	}
}

// answerTwice feeds an Answer already given again: it is ignored.
func (s *seq) answerTwice() {
	if len(s.answered) == 0 {
		s.lookup()
		return
	}
	a := s.answered[s.rng.Intn(len(s.answered))]
	var n int
	held := len(s.b.heldNext)
	s.do(fmt.Sprintf("LookedUp again id=%q key=%q", a.Lookup.ID, a.Lookup.Key), func() []protocol.Envelope {
		out := s.b.LookedUp(s.now, a)
		n = len(out)
		return out
	})
	if n != 0 || len(s.b.heldNext) != held {
		s.fail("an Answer given twice made %d envelopes and held %d", n, len(s.b.heldNext)-held)
	}
	s.n["answered twice"]++
}

func (s *seq) toggleStore() {
	s.failing = !s.failing && s.rng.Intn(3) == 0
	s.hist = append(s.hist, fmt.Sprintf("%d (store failing: %v)", s.step, s.failing))
}

// restart stops the broker, cleanly (commit, Shutdown) or in a crash, and
// starts a new one restored from what the store has.
func (s *seq) restart() {
	crash := s.rng.Intn(3) == 0
	if !crash {
		s.failing = false
		s.commit()
		s.do("Shutdown", func() []protocol.Envelope { return s.b.Shutdown(s.now) })
		s.n["shutdown"]++
	} else {
		s.n["crash"]++
	}
	// The lookups of the broker that is gone come back to no one.
	s.lookups, s.answered = nil, nil
	for _, r := range s.reqs {
		if r.replies == 0 && r.kind != reqMalformed {
			r.lost = true // the broker that had it is gone
		}
	}
	for _, w := range s.workers {
		w.up, w.jobs = false, nil
	}
	s.now = s.now.Add(time.Second)
	snap := s.st.Load(s.cfg.History)
	s.b = New(s.cfg)
	s.svcs = map[string]*svcCount{}
	for _, sj := range s.jobs {
		sj.finished = false // until the restored broker says
		s.note(sj)
	}
	for _, c := range snap.Counts {
		s.svcs[c.Name] = &svcCount{completed: c.Completed, failed: c.Failed}
	}
	// Every job whose ID a client has is in the new broker, or finished in
	// the store.
	s.then = func() { s.restored() }
	s.do(fmt.Sprintf("Restore crash=%v (%d jobs, %d finished)", crash, len(snap.Jobs), len(snap.Finished)), func() []protocol.Envelope {
		return s.b.Restore(s.now, snap)
	})
	s.do("Tick", func() []protocol.Envelope { return s.b.Tick(s.now) })
}

func (s *seq) restored() {
	for id, sj := range s.jobs {
		if !sj.accepted {
			continue
		}
		if j := s.b.lookup(id); j != nil {
			sj.finished = j.state == stateComplete || j.state == stateFailed
			s.note(sj)
			continue
		}
		if sj.closed { // deleted (titanic.close), or finished in the store
			sj.finished = true
			s.note(sj)
			continue
		}
		if i := slices.IndexFunc(s.b.dirty, func(j *job) bool { return j.id.String() == id }); i >= 0 && s.b.dirty[i].state == stateFailed {
			// Failed by the restore (its attempts spent) and pushed out
			// of the history by other such jobs: its record is pending.
			sj.finished = true
			s.note(sj)
			continue
		}
		rec, ok, _ := s.st.Job(id)
		if !ok || !journalFinished(rec.State) {
			s.fail("accepted job %s lost in the restart: not in the restored broker, store has %+v (%v)", id, rec, ok)
		}
		sj.finished = true
		s.note(sj)
	}
}

// note keeps s.open up to date with sj.
func (s *seq) note(sj *simJob) {
	if sj.accepted && !sj.finished {
		id, ok := parseJobID(sj.id)
		if !ok {
			s.fail("job ID %q", sj.id)
		}
		s.open[sj.id] = id
	} else {
		delete(s.open, sj.id)
	}
}

// ---- the loop's side: delivering the broker's output ----

func (s *seq) deliver(out []protocol.Envelope, before map[string]bool, desc string) {
	s.t.Helper()
	for i, e := range out {
		switch e.Peer {
		case protocol.ToEvents:
			s.event(e)
		case protocol.ToWorker:
			s.deliverWorker(e, before, desc, out[i+1:])
		case protocol.ToClient:
			if s.reqs[e.To] == nil {
				s.fail("reply to %q, a client that never asked", e.To)
			}
			s.deliverClient(e, false)
		default:
			s.fail("envelope for peer %d", e.Peer)
		}
	}
}

func (s *seq) event(e protocol.Envelope) {
	var ev struct{ Event, Job, Service string } // of protocol.Event
	if err := json.Unmarshal(e.Frames[0], &ev); err != nil {
		s.fail("event %q: %v", e.Frames[0], err)
	}
	sj := s.jobs[ev.Job]
	if sj == nil {
		sj = &simJob{id: ev.Job, service: ev.Service}
		s.jobs[ev.Job] = sj
		s.seen = append(s.seen, ev.Job)
	}
	switch ev.Event {
	case protocol.EventCompleted, protocol.EventFailed:
		if sj.finished {
			s.fail("job %s finished twice (event %s)", ev.Job, ev.Event)
		}
		sj.finished = true
		s.note(sj)
		c := s.svcs[ev.Service]
		if c == nil || (c.s != nil && s.b.services[ev.Service] != c.s) {
			c = &svcCount{} // a service new in this input (restored)
			s.svcs[ev.Service] = c
		}
		if ev.Event == protocol.EventCompleted {
			c.evCompleted++
		} else {
			c.evFail++
		}
	default:
		sj.finished = false
		s.note(sj)
	}
}

func (s *seq) deliverWorker(e protocol.Envelope, before map[string]bool, desc string, rest []protocol.Envelope) {
	m, err := protocol.DecodeWorker(e.Frames)
	if err != nil {
		s.fail("undecodable envelope to worker %s: %v", e.To, err)
	}
	bw := s.b.workers[e.To]
	if bw == nil && !before[e.To] && !strings.HasPrefix(desc, e.To+" ") {
		s.fail("%v to %s, neither a worker before or after this input nor its sender", m.Cmd, e.To)
	}
	var sw *simWorker
	for _, w := range s.workers {
		if w.id == e.To {
			sw = w
		}
	}
	switch m.Cmd {
	case protocol.CmdRequest:
		id := string(m.Address)
		if e.Job != id {
			s.fail("REQUEST to %s for job %s marked Job %q", e.To, id, e.Job)
		}
		held := bw != nil && slices.ContainsFunc(bw.jobs, func(j *job) bool { return j.id.String() == id })
		if !held && desc == "Tick" && bw == nil && s.stoppedLater(e.To, id, rest) {
			// Known, left as is (tolerated and counted): a job
			// another worker's expiry or overrun requeued goes to this
			// one's prefetch room, and then this one's own running job
			// overruns in the same Tick: it is stopped (DISCONNECT) and
			// the job queued again, its attempt not spent.
			s.n["prefetched to a stopped worker"]++
			held = true
		}
		if !held {
			j := s.b.lookup(id)
			var st string
			if j != nil {
				st = fmt.Sprintf("%v at %q attempt %d", j.state, j.worker(), j.attempts)
			}
			s.fail("REQUEST to %s for job %s, which is not recorded active on that worker after the input (job: %s; worker live: %v)", e.To, id, st, bw != nil)
		}
		if sw == nil || !sw.up {
			s.fail("REQUEST to %s, a worker that is not connected (as it sees it)", e.To)
		}
		if slices.Contains(sw.jobs, id) {
			s.fail("job %s sent to %s, which holds it already", id, e.To)
		}
		if md, _, ok, err := protocol.SplitMeta(m.Body); err == nil && ok && held {
			if j := s.b.lookup(id); j != nil && j.worker() == e.To && md.Attempt != int(j.attempts) {
				s.fail("REQUEST to %s for job %s says attempt %d, the broker counts %d", e.To, id, md.Attempt, j.attempts)
			}
		}
		sw.jobs = append(sw.jobs, id)
		if s.jobs[id] == nil {
			s.jobs[id] = &simJob{id: id}
			s.seen = append(s.seen, id)
		}
		s.n["dispatch"]++
	case protocol.CmdDisconnect:
		if sw != nil && desc != "Shutdown" { // the broker is about to go: the harness restarts them
			sw.up, sw.jobs = false, nil
		}
	case protocol.CmdHeartbeat:
	default:
		s.fail("%v to worker %s", m.Cmd, e.To)
	}
}

// stoppedLater reports whether worker id is told DISCONNECT later in the
// same output, and job id is queued again, its attempt not spent on id.
func (s *seq) stoppedLater(id, jobID string, rest []protocol.Envelope) bool {
	j := s.b.lookup(jobID)
	if j == nil || j.worker() == id {
		return false
	}
	for _, e := range rest {
		if e.Peer == protocol.ToWorker && e.To == id {
			if m, err := protocol.DecodeWorker(e.Frames); err == nil && m.Cmd == protocol.CmdDisconnect {
				return true
			}
		}
	}
	return false
}

// deliverClient hands a reply to its client; released says it was held
// for a commit that succeeded.
func (s *seq) deliverClient(e protocol.Envelope, released bool) {
	r := s.reqs[e.To]
	if r.lost {
		s.fail("reply to %s, whose broker is gone", e.To)
	}
	m, err := protocol.DecodeReply(e.Frames)
	if err != nil {
		s.fail("undecodable reply to %s: %v", e.To, err)
	}
	if m.Cmd == protocol.CmdPartial {
		if r.replies > 0 {
			s.fail("PARTIAL to %s after its final reply", e.To)
		}
		if r.kind != reqSync {
			s.fail("PARTIAL to %s, whose request (%s) was not sync", e.To, r.desc)
		}
		return
	}
	r.replies++
	if r.replies > 1 {
		s.fail("a second final reply to %s (%s): %q", e.To, r.desc, e.Frames)
	}
	md, rest, ok, err := protocol.SplitMeta(m.Body)
	if r.plain || r.kind == reqMalformed {
		// Output that looks like a meta frame (a worker's partial may
		// start with one) is output to a client that sent none.
		md, rest, ok, err = protocol.Meta{}, m.Body, false, nil
	}
	switch {
	case err != nil:
		s.fail("reply to %s with a bad meta frame: %v", e.To, err)
	case ok:
		r.status, r.job = string(md.Status), md.Job
		if md.Code != "" {
			r.status += "/" + md.Code
		}
	case len(rest) > 0 && string(rest[0]) == protocol.FailFrame:
		r.status = "FAIL"
		if len(rest) > 1 {
			r.status += "/" + string(rest[1])
		}
	default:
		r.status = "plain"
		if r.kind == reqAsync && len(rest) == 1 {
			r.job, r.status = string(rest[0]), string(protocol.StatusAccepted)
		}
	}
	if r.kind != reqAsync || !strings.HasPrefix(r.status, string(protocol.StatusAccepted)) {
		return
	}
	// An async job's ID is out: the job is accepted, and with a store
	// its record is committed.
	if _, ok := parseJobID(r.job); !ok {
		s.fail("accepted reply to %s with job ID %q", e.To, r.job)
	}
	sj := s.jobs[r.job]
	if sj == nil {
		if j := s.b.lookup(r.job); j == nil && !s.cfg.Durable {
			s.fail("job %s accepted for %s, unknown to the broker", r.job, e.To)
		}
		sj = &simJob{id: r.job}
		s.jobs[r.job] = sj
		s.seen = append(s.seen, r.job)
	}
	sj.accepted = true
	s.note(sj)
	// With a journal, an acceptance the input returned at once names a job
	// a commit already stored; one Committed released, a job the commit
	// just made stored (or an earlier one).
	if s.cfg.Durable {
		if _, ok, _ := s.st.Job(r.job); !ok && !sj.closed { // a closed job's delete may be in the same commit
			j := s.b.lookup(r.job)
			s.fail("job ID %s handed to %s (released after a commit: %v) before any commit stored the job (in memory: %+v; %q)", r.job, e.To, released, j, e.Frames)
		}
		s.n[map[bool]string{false: "accepted at once", true: "accepted at commit"}[released]]++
	} else if released {
		s.fail("acceptance of %s released by Committed without Config.Durable", r.job)
	}
	// One idempotency key, one job: every acceptance under a key, waiting
	// for a Lookup or not, names the job the first one named. Without a
	// journal a key lasts only as long as its job in memory.
	if r.key != "" {
		if id, ok := s.keyJobs[r.key]; ok && id != r.job && !s.jobs[id].closed && (s.cfg.Durable || s.b.lookup(id) != nil) {
			s.fail("idempotency key %q: %s (%s, waited for a lookup: %v) got job %s, an earlier submission job %s", r.key, r.client, r.desc, r.waited, r.job, id)
		}
		s.keyJobs[r.key] = r.job
	}
}

// ---- the invariants ----

// check checks the broker's state, and the harness's view of it.
func (s *seq) check() {
	s.t.Helper()
	b := s.b
	// Where each job is: queue, delayed, a worker.
	where := s.where
	clear(where)
	put := func(j *job, place string) {
		if j == nil {
			s.fail("nil job in %s", place)
		}
		if p, ok := where[j]; ok {
			s.fail("job %s in two places: %s and %s", j.id, p, place)
		}
		where[j] = place
		if b.jobs.get(j.id) != j {
			s.fail("job %s in %s but not in the job index", j.id, place)
		}
		// Attempts: a job waits with some left, runs one it has. Its
		// budget follows its service's default retries, which the latest
		// READY sets and a restart forgets: the most ever declared.
		budget := j.budget(b.cfg.MaxAttempts)
		if !j.sync && j.retries() < 0 {
			budget = max(budget, 1+s.svcRetries[j.svc.name])
		}
		if n := int(j.attempts); (j.state == stateQueued && n >= budget) || (j.state == stateActive && (n < 1 || n > budget)) {
			s.fail("%v job %s in %s has spent %d attempts of %d", j.state, j.id, place, n, budget)
		}
	}
	for name, sv := range b.services {
		if sv.name != name {
			s.fail("service %q registered as %q", sv.name, name)
		}
		for i := range sv.queue.Len() {
			j := sv.queue.At(i)
			put(j, "queue "+name)
			if i > 0 && sv.queue.At(i-1).priority() < j.priority() {
				s.fail("queue %s: job %s of priority %d after one of %d", name, j.id, j.priority(), sv.queue.At(i-1).priority())
			}
			if j.state != stateQueued || j.svc != sv {
				s.fail("job %s in queue %s is %v of service %s", j.id, name, j.state, j.svc.name)
			}
			if r := j.lastRun(); r != nil && r.worker != "" {
				s.fail("queued job %s still names worker %s", j.id, r.worker)
			}
		}
	}
	for i, d := range b.delayed {
		j := d.j
		put(j, "delayed")
		if j.state != stateQueued && j.state != stateScheduled || b.services[j.svc.name] != j.svc {
			s.fail("delayed job %s is %v of service %s (known: %v)", j.id, j.state, j.svc.name, b.services[j.svc.name] == j.svc)
		}
		if j.state == stateQueued && !d.at.Time().Equal(j.lastRun().notBefore) {
			s.fail("delayed job %s waits until %v, its run until %v", j.id, d.at.Time(), j.lastRun().notBefore)
		}
		if i > 0 && d.before(b.delayed[(i-1)/2]) {
			s.fail("delayed heap out of order at %d", i)
		}
	}
	if len(b.delayed) > 0 && !b.nextRetry().Equal(b.delayed[0].at.Time()) {
		s.fail("nextRetry %v is not the first delayed job's", b.nextRetry())
	}
	type tally struct{ workers, active, scheduled int }
	count := map[*service]*tally{}
	for _, sv := range b.services {
		count[sv] = &tally{}
	}
	for _, d := range b.delayed {
		if c := count[d.j.svc]; c != nil && d.j.state == stateScheduled {
			c.scheduled++
		}
	}
	for id, w := range b.workers {
		if w.id != id {
			s.fail("worker %q registered as %q", w.id, id)
		}
		c := count[w.svc]
		if c == nil || b.services[w.svc.name] != w.svc {
			s.fail("worker %s of service %s, which the broker does not know", id, w.svc.name)
		}
		c.workers++
		c.active += len(w.jobs)
		if len(w.jobs) > 1+w.prefetch {
			s.fail("worker %s holds %d jobs, prefetch %d", id, len(w.jobs), w.prefetch)
		}
		if !w.goneAt.IsZero() {
			s.fail("live worker %s is marked gone (%s)", id, w.goneWhy)
		}
		for i, j := range w.jobs {
			put(j, "worker "+id)
			if j.state != stateActive || j.svc != w.svc {
				s.fail("job %s at worker %s is %v of service %s", j.id, id, j.state, j.svc.name)
			}
			if got := j.worker(); got != id {
				s.fail("job %s at worker %s names worker %q", j.id, id, got)
			}
			if i > 0 && !j.lastRun().deadline.IsZero() {
				s.fail("job %s waiting at worker %s has a time-to-run deadline", j.id, id)
			}
		}
		if len(w.jobs) > 0 {
			if d := w.jobs[0].lastRun().deadline; !d.IsZero() && (b.nextTTR.IsZero() || b.nextTTR.After(d)) {
				s.fail("job %s at %s overruns at %v, but nextTTR is %v: Tick would miss it", w.jobs[0].id, id, d, b.nextTTR)
			}
		}
		if exp := w.lastSeen.Add(b.ttl + time.Millisecond); b.nextExpiry.IsZero() || b.nextExpiry.After(exp) {
			s.fail("worker %s expires at %v, but nextExpiry is %v", id, exp, b.nextExpiry)
		}
		inIdle, inRoom := slices.Contains(w.svc.idle, w), slices.Contains(w.svc.withRoom, w)
		switch {
		case w.state == workerDraining:
			if inIdle || inRoom {
				s.fail("draining worker %s is in its idle (%v) or with-room (%v) list", id, inIdle, inRoom)
			}
		case len(w.jobs) == 0:
			if !inIdle || inRoom {
				s.fail("worker %s holds no job: in idle %v, with-room %v", id, inIdle, inRoom)
			}
		case len(w.jobs) <= w.prefetch:
			if inIdle || !inRoom {
				s.fail("worker %s holds %d jobs of 1+%d: in idle %v, with-room %v", id, len(w.jobs), w.prefetch, inIdle, inRoom)
			}
		default:
			if inIdle || inRoom {
				s.fail("full worker %s: in idle %v, with-room %v", id, inIdle, inRoom)
			}
		}
		// What the broker says a worker holds, the worker got.
		var sw *simWorker
		for _, x := range s.workers {
			if x.id == id {
				sw = x
			}
		}
		for _, j := range w.jobs {
			if !sw.up || !slices.Contains(sw.jobs, j.id.String()) {
				s.fail("worker %s holds job %s per the broker, but never got it (or answered it)", id, j.id)
			}
		}
	}
	for name, sv := range b.services {
		c := count[sv]
		for _, list := range [][]*worker{sv.idle, sv.withRoom} {
			for i, w := range list {
				if b.workers[w.id] != w {
					s.fail("service %s lists worker %s, which is gone", name, w.id)
				}
				if slices.Index(list, w) != i {
					s.fail("service %s lists worker %s twice", name, w.id)
				}
			}
		}
		if sv.workers != c.workers || sv.active != c.active || sv.scheduled != c.scheduled {
			s.fail("service %s counts %d workers, %d active and %d scheduled jobs; recount: %d, %d and %d", name, sv.workers, sv.active, sv.scheduled,
				c.workers, c.active, c.scheduled)
		}
		for _, g := range sv.gone {
			if len(g.jobs) != 0 || b.workers[g.id] == g || g.goneAt.IsZero() {
				s.fail("gone worker %s of %s holds %d jobs (live: %v)", g.id, name, len(g.jobs), b.workers[g.id] == g)
			}
		}
		if len(sv.gone) > b.cfg.KeepGone {
			s.fail("service %s keeps %d gone workers", name, len(sv.gone))
		}
		// Counters: what the service started with, plus the finishes since.
		e := s.svcs[name]
		if e == nil || e.s != sv {
			if e == nil || e.s != nil {
				e = &svcCount{} // new, or forgotten and back
			}
			e.s = sv
			s.svcs[name] = e
		}
		if sv.completed != e.completed+e.evCompleted || sv.failed != e.failed+e.evFail {
			s.fail("service %s counts %d completed and %d failed; expected %d+%d and %d+%d", name, sv.completed, sv.failed,
				e.completed, e.evCompleted, e.failed, e.evFail)
		}
	}
	// Every unfinished job in memory is somewhere; every finished one
	// nowhere.
	for j := range b.jobs.all() {
		_, placed := where[j]
		switch j.state {
		case stateQueued, stateActive:
			if !placed {
				s.fail("%v job %s of %s is in no queue, delay list or worker: lost", j.state, j.id, j.svc.name)
			}
		case stateScheduled:
			if where[j] != "delayed" {
				s.fail("scheduled job %s of %s is not in the delayed heap (in %q)", j.id, j.svc.name, where[j])
			}
		case stateComplete, stateFailed:
			if placed {
				s.fail("%v job %s is in %s", j.state, j.id, where[j])
			}
		default:
			s.fail("job %s in state %d", j.id, j.state)
		}
		if j.state == stateActive && b.workers[j.worker()] == nil {
			s.fail("active job %s names worker %q, which is gone", j.id, j.worker())
		}
		if j.dirty && !slices.Contains(b.dirty, j) {
			s.fail("job %s marked dirty but not in the dirty list", j.id)
		}
	}
	for k, j := range b.keys {
		if j.key() != k {
			s.fail("idempotency key %q names job %s, whose key is %q", k, j.id, j.key())
		}
	}
	// Nothing waits for a commit that never comes.
	if !s.cfg.Durable && (b.Holding() || b.Pending()) {
		s.fail("without Config.Durable: holding %v, pending %v", b.Holding(), b.Pending())
	}
	if !s.cfg.Archived && len(b.waiting) > 0 {
		s.fail("without Config.Archived, %d requests wait for lookups", len(b.waiting))
	}
	if len(b.waiting) != len(s.lookups) {
		s.fail("%d requests wait for lookups, the loop holds %d Lookups", len(b.waiting), len(s.lookups))
	}
	// Every job a client was given the ID of is known, or finished.
	for id, jid := range s.open {
		j := b.jobs.get(jid)
		if j == nil || (j.state != stateQueued && j.state != stateActive && j.state != stateScheduled) {
			s.fail("accepted job %s, not finished by any event, is not scheduled, queued or running in the broker (%v)", id, j != nil)
		}
	}
}

// ---- the end ----

// drain lets every worker answer everything and time run on until no job
// is left, then checks that every request had its one final answer.
func (s *seq) drain() {
	s.step++
	s.sub = 0
	s.failing = false
	s.hist = append(s.hist, "---- drain ----")
	// Paused and draining services dispatch nothing: an admin resumes them.
	for _, name := range seqServices {
		r := s.newClient(reqQuery, "")
		r.desc = r.client + " " + protocol.ServerResume + " " + name
		s.client(r, protocol.EncodeClient(protocol.Message{Form: seqV2, Cmd: protocol.CmdRequest, Service: protocol.ServerResume,
			Body: [][]byte{protocol.EncodeMeta(protocol.Meta{}), []byte(name)}}))
	}
	for round := 0; ; round++ {
		if round > 3000 {
			s.fail("drain: jobs left after %d rounds: %d in memory, %d delayed", round, s.unfinished(), len(s.b.delayed))
		}
		// One good worker per service with work.
		for _, sv := range s.b.sortedServices() {
			if sv.queue.Len() == 0 && sv.active == 0 && !slices.ContainsFunc(s.b.delayed, func(d due) bool { return d.j.svc == sv }) {
				continue
			}
			if len(s.upWorkers(func(w *simWorker) bool { return w.svc == sv.name && !w.zombie && !w.draining })) > 0 {
				continue
			}
			var w *simWorker
			for _, x := range s.workers { // the first down one, or a zombie, or any
				if w == nil || !x.up || (x.zombie && w.up && !w.zombie) {
					w = x
				}
			}
			if w.up {
				s.workerDisconnect0(w)
			}
			s.readyWorker(w, sv.name)
		}
		for _, w := range s.upWorkers(func(w *simWorker) bool { return !w.zombie }) {
			for len(w.jobs) > 0 && w.up {
				id := w.jobs[0]
				w.jobs = w.jobs[1:]
				var frames [][]byte
				if w.v1 {
					frames = protocol.EncodeWorker(protocol.Message{Form: seqV1, Cmd: protocol.CmdReply, Address: []byte(id), Body: [][]byte{[]byte("out")}})
				} else {
					frames = protocol.EncodeWorker(protocol.Message{Form: seqV2, Cmd: protocol.CmdReply, Address: []byte(id),
						Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete})}})
				}
				s.worker(w, fmt.Sprintf("%s FINAL %s complete (drain)", w.id, id), frames)
			}
			if w.up {
				s.worker(w, w.id+" HEARTBEAT", protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: protocol.CmdHeartbeat}))
			}
		}
		for len(s.lookups) > 0 {
			s.answerLookup(0)
		}
		if s.cfg.Durable {
			s.commit()
		}
		if s.unfinished() == 0 && !s.b.Holding() && len(s.lookups) == 0 && len(s.b.accepts) == 0 {
			break
		}
		s.now = s.now.Add(500 * time.Millisecond)
		s.do("Tick", func() []protocol.Envelope { return s.b.Tick(s.now) })
	}
	answered := map[string]int{}
	for _, r := range s.reqs {
		want := 1
		switch {
		case r.lost, r.kind == reqMalformed:
			want = r.replies // may be 0
			if r.lost {
				answered["lost in a restart"]++
			}
		}
		if r.replies != want {
			s.fail("request %s (%s, step %d) got %d final replies, want %d", r.client, r.desc, r.step, r.replies, want)
		}
		answered[r.status]++
	}
	s.t.Logf("answers: %v", answered)
}

func (s *seq) workerDisconnect0(w *simWorker) {
	s.worker(w, w.id+" DISCONNECT", protocol.EncodeWorker(protocol.Message{Form: w.form(), Cmd: protocol.CmdDisconnect}))
	w.up, w.jobs = false, nil
}

func (s *seq) unfinished() int {
	n := 0
	for j := range s.b.jobs.all() {
		if j.state == stateQueued || j.state == stateActive || j.state == stateScheduled {
			n++
		}
	}
	return n
}
