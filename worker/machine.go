package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/protocol"
)

// actionKind says what a machine asks its loop to do.
type actionKind uint8

const (
	// actSend sends a control message (READY, HEARTBEAT) without
	// blocking; one the DEALER cannot take is dropped.
	actSend actionKind = iota
	// actSendJob sends a job message (PARTIAL, FINAL) after those queued
	// before it, queueing it while the DEALER is full: it is never dropped
	// while the connection lives.
	actSendJob
	// actConnect opens a fresh DEALER with a new routing id to
	// Brokers[endpoint]; the loop reports Connected or ConnectFailed.
	actConnect
	// actClose closes the connection at once (linger 0), dropping what is
	// queued for it.
	actClose
	// actStart starts the handler for job on a goroutine of its own.
	actStart
	// actCancel cancels the running handler's context.
	actCancel
	// actFinish ends the slot: the loop sends what is queued if it can,
	// then DISCONNECT, closes the connection with disconnectLinger and
	// abandons a handler still running. Nothing follows it.
	actFinish
)

var actionNames = [...]string{"send", "send-job", "connect", "close", "start", "cancel", "finish"}

func (k actionKind) String() string { return actionNames[k] }

// action is one thing a machine asks its loop to do.
type action struct {
	kind     actionKind
	msg      protocol.Message // actSend, actSendJob
	endpoint int              // actConnect
	job      *Job             // actStart, without its stream (the loop adds it)
}

// machine is a slot's decisions, with no socket, no goroutine and no
// clock: when to connect, what READY says, when to heartbeat, when the
// broker is taken for gone and where and after what backoff to reconnect,
// which job runs and which wait (Config.Prefetch), what the handler's
// output becomes on the wire, what is given back at stop, and when a
// stopping slot cancels, then abandons, its handler. Each input takes the
// time; what to do is queued and read with next. It belongs to one
// goroutine (the slot's loop; a test).
//
// Connection states: closed (waiting for reconnectAt, and for the running
// handler, if any, to return) → connecting (actConnect issued) → connected
// → closed again, a fresh socket and routing id each time. Job states: free →
// busy (one handler runs; up to Prefetch REQUESTs wait) → free. Once
// stopping, a machine takes no job; it finishes when its handler returns,
// or when the grace period and cancelWait after it are over.
type machine struct {
	cfg   *Config
	ready []byte // the READY meta frame
	base  zerolog.Logger
	log   zerolog.Logger // base plus the current routing id
	// jitter returns a random duration in [0, n]; tests fix it.
	jitter func(n time.Duration) time.Duration

	connected  bool
	connecting bool // actConnect issued, not yet answered
	endpoint   int  // index into Brokers of the current or next connection
	heard      bool // got a HEARTBEAT or REQUEST on this connection
	// bare: a zmws broker's message came without the empty delimiter on
	// this connection (a plain one always sends it), so in auto mode the
	// worker drops the delimiter too: a frame less each way per job.
	bare bool
	// speak is what the current connection speaks: DialectZMWS,
	// DialectMDP1 or DialectMDP2, never auto. choice holds, per endpoint,
	// what its next connection speaks; with Config.Protocol auto it starts
	// at zmws and flips between zmws and mdp1 after each connection whose
	// broker completed a handshake and then stayed silent (see Tick).
	// silent counts, per endpoint, such connections in a row.
	speak       protocol.Dialect
	choice      []protocol.Dialect
	silent      []int
	handshake   bool // the current connection's peer completed a ZMTP handshake
	failures    int  // connections in a row that never heard from a broker
	heartbeatAt time.Time
	expireAt    time.Time
	reconnectAt time.Time

	busy bool
	cur  current // the running job, if busy
	// waiting holds REQUESTs the broker sent ahead (Config.Prefetch) while
	// cur runs, in order; each starts when the one before it ends.
	waiting []protocol.Message

	stopping  bool
	finished  bool
	graceAt   time.Time // when a stopping machine cancels its handler
	abandonAt time.Time // when it stops waiting for the handler

	out  []action // queued for the loop, out[head:] not yet taken
	head int
}

// current is the machine's view of the running job.
type current struct {
	id    string // the job's ID, printable: for logs
	addr  []byte // the REQUEST's address frame, echoed in PARTIAL and FINAL
	stock bool   // the REQUEST had no meta frame: reply without one
	// held gathers the output of a job on 7/MDP, which has no PARTIAL:
	// it goes ahead of the result in the REPLY.
	held      []byte
	started   time.Time
	lost      bool // its connection closed: its output goes nowhere
	cancelled bool // cancelled at the end of the grace period
}

func newMachine(cfg *Config, ready []byte, log zerolog.Logger) *machine {
	m := &machine{cfg: cfg, ready: ready, base: log, log: log,
		jitter: func(n time.Duration) time.Duration { return rand.N(n + 1) }}
	first := cfg.Protocol
	if first == protocol.DialectAuto || first == "" {
		first = protocol.DialectZMWS
	}
	m.choice = make([]protocol.Dialect, len(cfg.Brokers))
	m.silent = make([]int, len(cfg.Brokers))
	for i := range m.choice {
		m.choice[i] = first
	}
	m.speak = first
	return m
}

// Form is the wire form of the current connection: the specs' form, the
// empty delimiter first, to a plain broker and in auto mode (the Guide's
// brokers take the frame after the routing id for it without looking)
// until a message without it shows the broker is zmws, which sends zmws
// workers none; told zmws, 18/MDP without the delimiter, as zmws workers
// always sent it (a zmws broker takes both). The frame costs libzmq's I/O
// threads one more frame each way per job.
func (m *machine) Form() protocol.Form {
	return protocol.Form{Version: m.speak.Version(), Delimiter: m.speak.Plain() || (m.auto() && !m.bare)}
}

// auto reports whether the machine finds out what its brokers speak.
func (m *machine) auto() bool {
	return m.cfg.Protocol == protocol.DialectAuto || m.cfg.Protocol == ""
}

// Handshaken reports that the current connection's peer completed a ZMTP
// handshake: something that speaks ZeroMQ is there, so its silence is
// about the protocol, not a broker that is down.
func (m *machine) Handshaken() { m.handshake = true }

// next returns the next action to perform, in order, and false when there
// is none. Inputs given while actions are being taken queue theirs after.
func (m *machine) next() (action, bool) {
	if m.head == len(m.out) {
		m.out, m.head = m.out[:0], 0
		return action{}, false
	}
	a := m.out[m.head]
	m.out[m.head] = action{}
	m.head++
	return a, true
}

func (m *machine) do(a action) { m.out = append(m.out, a) }

func (m *machine) send(msg protocol.Message) { m.do(action{kind: actSend, msg: msg}) }

func (m *machine) sendJob(msg protocol.Message) { m.do(action{kind: actSendJob, msg: msg}) }

// Start begins a Run: the first connection is due at once.
func (m *machine) Start(now time.Time) { m.reconnectAt = now }

// Next returns when Tick next has work, or the zero time if only an input
// can change anything.
func (m *machine) Next() time.Time {
	var next time.Time
	at := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	switch {
	case m.finished:
		return time.Time{}
	case m.connected:
		at(m.heartbeatAt)
		at(m.expireAt)
	case !m.connecting && !m.stopping && !m.busy:
		at(m.reconnectAt)
	}
	if m.stopping && m.busy {
		if m.cur.cancelled {
			at(m.abandonAt)
		} else {
			at(m.graceAt)
		}
	}
	return next
}

// Tick does what is due at now: the end of the grace period, a
// connection, expiry of a silent broker, a heartbeat. The loop calls it
// after reading what has arrived, so that unread heartbeats are not taken
// for silence.
func (m *machine) Tick(now time.Time) {
	if m.finished {
		return
	}
	if m.stopping && m.busy {
		if !m.cur.cancelled && !now.Before(m.graceAt) {
			m.log.Warn().Str(keyJob, m.cur.id).Dur(keyElapsed, now.Sub(m.cur.started)).
				Msg("grace period over, cancelling job")
			m.cur.cancelled = true
			m.do(action{kind: actCancel})
			m.abandonAt = now.Add(cancelWait)
		}
		if m.cur.cancelled && !now.Before(m.abandonAt) {
			m.log.Error().Str(keyJob, m.cur.id).Msg("handler ignores cancellation, abandoning job")
			m.finish()
			return
		}
	}
	if !m.connected && !m.connecting && !m.stopping && !m.busy && !now.Before(m.reconnectAt) {
		m.connecting = true
		m.do(action{kind: actConnect, endpoint: m.endpoint})
		return
	}
	if !m.connected {
		return
	}
	if !now.Before(m.expireAt) {
		m.silence()
		m.drop(now, true)
		return
	}
	if !now.Before(m.heartbeatAt) {
		m.send(protocol.Message{Cmd: protocol.CmdHeartbeat})
		m.heartbeatAt = now.Add(m.cfg.Heartbeat)
	}
}

// silence logs a connection on which no broker spoke for
// Heartbeat*Liveness and, in auto mode, picks the protocol of the
// endpoint's next connection: a peer that completed a handshake and then
// ignored an 18/MDP READY may be a 7/MDP broker (the Guide's mdbroker logs
// and drops a message with a header it does not know), and one silent on
// 7/MDP may be an 18/MDP broker that was busy. A peer that never completed
// a handshake is a broker that is down: the protocol stays.
func (m *machine) silence() {
	ep := m.cfg.Brokers[m.endpoint]
	if m.heard {
		m.log.Warn().Str(keyEndpoint, ep).Str("protocol", m.speak.Describe()).Msg("broker silent, reconnecting")
		m.silent[m.endpoint] = 0
		return
	}
	if !m.handshake {
		m.log.Warn().Str(keyEndpoint, ep).Str("protocol", m.speak.Describe()).
			Msg("no broker answers (no ZeroMQ handshake), reconnecting")
		return
	}
	m.silent[m.endpoint]++
	if !m.auto() {
		m.log.Error().Str(keyEndpoint, ep).Str("protocol", m.speak.Describe()).
			Msg("broker accepted the connection but never answered READY: does it speak this protocol? (see --protocol)")
		return
	}
	next := protocol.DialectMDP1
	if m.speak == protocol.DialectMDP1 {
		next = protocol.DialectZMWS
	}
	m.choice[m.endpoint] = next
	if m.silent[m.endpoint] >= 2 {
		m.log.Error().Str(keyEndpoint, ep).Strs("tried", []string{"18/MDP", "7/MDP"}).
			Msg("broker answers READY in neither 18/MDP nor 7/MDP, trying again")
		return
	}
	m.log.Warn().Str(keyEndpoint, ep).Str("protocol", m.speak.Describe()).Str("next", next.Describe()).
		Msg("broker silent after READY, trying the other protocol")
}

// Connected reports that the connection actConnect asked for is open, as
// routing id; the machine announces the service, with the meta frame to a
// zmws broker only.
func (m *machine) Connected(now time.Time, routingID string) {
	m.connecting, m.connected, m.heard, m.handshake, m.bare = false, true, false, false, false
	m.speak = m.choice[m.endpoint]
	m.log = m.base.With().Str(keyWorker, routingID).Logger()
	m.heartbeatAt = now.Add(m.cfg.Heartbeat)
	m.expireAt = now.Add(m.cfg.Heartbeat * time.Duration(m.cfg.Liveness))
	var body [][]byte
	if m.speak == protocol.DialectZMWS {
		body = [][]byte{m.ready}
	}
	m.send(protocol.Message{Cmd: protocol.CmdReady, Service: m.cfg.Service, Body: body})
	m.log.Info().Str(keyEndpoint, m.cfg.Brokers[m.endpoint]).Str("protocol", m.speak.Describe()).Msg("ready sent")
}

// hear notes that the broker spoke on this connection; the first time,
// it logs which protocol works (auto mode sticks to it for the endpoint).
func (m *machine) hear() {
	if m.heard {
		return
	}
	m.heard = true
	m.silent[m.endpoint] = 0
	if m.auto() {
		m.log.Info().Str(keyEndpoint, m.cfg.Brokers[m.endpoint]).Str("protocol", m.speak.Describe()).Msg("broker answers")
	}
}

// ConnectFailed reports that the connection could not be set up; the next
// endpoint is tried after a backoff.
func (m *machine) ConnectFailed(now time.Time, err error) {
	m.connecting = false
	m.base.Error().Err(err).Str(keyEndpoint, m.cfg.Brokers[m.endpoint]).Msg("connect")
	m.failures++
	m.endpoint = (m.endpoint + 1) % len(m.cfg.Brokers)
	m.reconnectAt = now.Add(m.backoff())
}

// Refused reports that the broker refused the connection's CURVE
// handshake. It will never answer: the machine says why at once and tries
// the next endpoint after the backoff (an operator may add the key).
func (m *machine) Refused(now time.Time, err error) {
	if !m.connected {
		return
	}
	m.log.Error().Err(err).Msg("broker refused the connection")
	m.drop(now, true)
}

// Heard reports whether a broker has spoken on the current connection.
func (m *machine) Heard() bool { return m.heard }

// FromBroker takes a message the broker sent on the current connection.
func (m *machine) FromBroker(now time.Time, frames [][]byte) {
	if !m.connected {
		return
	}
	m.expireAt = now.Add(m.cfg.Heartbeat * time.Duration(m.cfg.Liveness))
	msg, err := protocol.DecodeWorker(frames)
	if err != nil {
		m.log.Warn().Err(err).Int("frames", len(frames)).Msg("malformed message from broker")
		return
	}
	if !msg.Form.Delimiter && msg.Form.Version == protocol.V2 {
		m.bare = true
	}
	switch msg.Cmd {
	case protocol.CmdHeartbeat:
		m.hear()
	case protocol.CmdDisconnect:
		if meta, _, ok, _ := protocol.SplitMeta(msg.Body); ok && meta.Code == protocol.CodeDrained {
			// An operator drained this connection or its service: the
			// broker waited for its jobs to end (a job still running here
			// is one the broker no longer counts on). The slot stops for
			// good; Run returns once every slot has.
			m.log.Info().Str(keyEndpoint, m.cfg.Brokers[m.endpoint]).Str("reason", meta.Error).
				Msg("drained by the broker: this slot stops")
			m.stopping = true
			m.finish()
			return
		} else if ok && meta.Code != "" {
			// A refusal: this worker's key may not offer the service.
			m.log.Error().Str(keyEndpoint, m.cfg.Brokers[m.endpoint]).Str("code", meta.Code).Str("error", meta.Error).
				Msg("broker refused this worker, reconnecting after a backoff")
			m.heard = false // counts as a failed connection: backoff grows
			m.drop(now, false)
			return
		}
		m.log.Info().Str(keyEndpoint, m.cfg.Brokers[m.endpoint]).Msg("broker sent disconnect, reconnecting")
		m.drop(now, false)
	case protocol.CmdRequest:
		m.hear()
		m.onRequest(now, msg)
	default:
		m.log.Warn().Stringer("cmd", msg.Cmd).Msg("unexpected command from broker")
	}
}

func (m *machine) onRequest(now time.Time, msg protocol.Message) {
	switch {
	case m.stopping:
		m.giveBack(msg)
	case m.busy || len(m.waiting) > 0:
		if len(m.waiting) >= m.cfg.Prefetch {
			m.log.Warn().Str(keyJob, string(msg.Address)).Msg("request beyond the prefetch, ignored")
			return
		}
		m.waiting = append(m.waiting, msg)
		m.log.Debug().Str(keyJob, string(msg.Address)).Int("waiting", len(m.waiting)).Msg("job waiting")
		m.startWaiting(now)
	default:
		m.start(now, msg)
	}
}

// start starts the job of REQUEST msg on the free machine, or fails it at
// once if it is malformed.
func (m *machine) start(now time.Time, msg protocol.Message) {
	id := string(msg.Address)
	meta, input, hasMeta, err := protocol.SplitMeta(msg.Body)
	if err != nil {
		m.log.Warn().Err(err).Str(keyJob, id).Msg("malformed request, failing job")
		m.sendJob(protocol.Message{Cmd: protocol.CmdReply, Address: msg.Address, Body: [][]byte{protocol.EncodeMeta(protocol.Meta{
			Status: protocol.StatusFailed, Code: protocol.CodeBadRequest, Error: "worker: " + err.Error(),
		})}})
		return
	}
	if !hasMeta {
		// A plain broker's address frame is its client's routing id,
		// often binary: the handler (and a command's environment) gets
		// it printable.
		id = printableID(msg.Address)
	}
	j := &Job{ID: id, Service: m.cfg.Service, Attempt: 1, Params: map[string]string{}, Input: input}
	if hasMeta {
		if meta.Service != "" {
			j.Service = meta.Service
		}
		if meta.Attempt > 0 {
			j.Attempt = meta.Attempt
		}
		if meta.Params != nil {
			j.Params = meta.Params
		}
	}
	m.busy, m.cur = true, current{id: id, addr: msg.Address, stock: !hasMeta, started: now}
	m.log.Debug().Str(keyJob, id).Int("attempt", j.Attempt).Msg("job started")
	m.do(action{kind: actStart, job: j})
}

// Output takes a chunk of the running job's output, written before the
// handler returned: a PARTIAL, or nothing if the job's connection is gone.
func (m *machine) Output(chunk []byte) {
	if !m.busy {
		return
	}
	if m.cur.lost {
		m.log.Debug().Str(keyJob, m.cur.id).Msg("partial output after connection loss, dropped")
		return
	}
	if m.speak.Version() == protocol.V1 {
		m.cur.held = append(m.cur.held, chunk...)
		return
	}
	m.sendJob(protocol.Message{Cmd: protocol.CmdPartial, Address: m.cur.addr, Body: [][]byte{chunk}})
}

// JobDone takes the running handler's return, after all its output: the
// FINAL (unless the job was lost or cancelled by shutdown), then the next
// waiting job, or the end of a stopping machine.
func (m *machine) JobDone(now time.Time, res []byte, err error, truncated bool) {
	if !m.busy {
		return
	}
	r := m.cur
	m.busy, m.cur = false, current{}
	log := m.log.With().Str(keyJob, r.id).Dur(keyElapsed, now.Sub(r.started)).Logger()
	var pe *panicError
	if errors.As(err, &pe) {
		log.Error().Str("panic", fmt.Sprint(pe.value)).Bytes("stack", pe.stack).Msg("handler panicked")
	}
	switch {
	case r.cancelled && errors.Is(err, context.Canceled):
		log.Warn().Msg("job cancelled by shutdown, result not sent; the broker will requeue it")
	case r.lost:
		log.Warn().Msg("result of a job from an earlier connection, dropped")
	default:
		if len(r.held) > 0 {
			res = append(r.held, res...)
		}
		m.sendJob(protocol.Message{Cmd: protocol.CmdReply, Address: r.addr, Body: finalBody(r.stock, res, err, truncated)})
		if err != nil {
			ev := log.Info().Err(err)
			var ee *ExitError
			if errors.As(err, &ee) {
				ev = ev.Int(keyExitCode, ee.Code)
			}
			ev.Msg("job failed")
		} else {
			log.Info().Msg("job complete")
		}
	}
	if m.stopping {
		m.finish()
		return
	}
	m.startWaiting(now)
}

// startWaiting starts the next job the broker sent ahead, if the machine
// is free; one that cannot start (a malformed request, failed at once)
// makes way for the next.
func (m *machine) startWaiting(now time.Time) {
	for !m.stopping && !m.busy && len(m.waiting) > 0 && m.connected {
		msg := m.waiting[0]
		m.waiting[0] = protocol.Message{}
		m.waiting = m.waiting[1:]
		m.start(now, msg)
	}
	if len(m.waiting) == 0 {
		m.waiting = nil
	}
}

// Stop stops taking jobs and gives back those sent ahead, last first (the
// broker puts each at the head of its queue, so they keep their order). A
// running handler gets the grace period; a free machine finishes at once.
func (m *machine) Stop(now time.Time) {
	if m.stopping {
		return
	}
	m.stopping = true
	if m.connected {
		for i := len(m.waiting) - 1; i >= 0; i-- {
			m.giveBack(m.waiting[i])
		}
	}
	m.waiting = nil
	if !m.busy {
		m.finish()
		return
	}
	m.graceAt = now.Add(m.cfg.Grace)
	m.log.Info().Str(keyJob, m.cur.id).Dur("grace", m.cfg.Grace).Msg("stopping, waiting for job")
}

// giveBack tells the broker the machine will not run the job of REQUEST
// msg (it is stopping): the broker queues it again, its attempt not
// counted.
func (m *machine) giveBack(msg protocol.Message) {
	if len(msg.Body) == 0 || !protocol.IsMeta(msg.Body[0]) {
		// A stock broker knows no giving back: it requeues the job when
		// the slot says DISCONNECT.
		m.log.Info().Str(keyJob, string(msg.Address)).Msg("stopping: job not started")
		return
	}
	m.log.Info().Str(keyJob, string(msg.Address)).Msg("stopping: job given back to the broker")
	m.sendJob(protocol.Message{Cmd: protocol.CmdReply, Address: msg.Address,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusReturned})}})
}

func (m *machine) finish() {
	m.finished, m.connected, m.busy = true, false, false
	m.do(action{kind: actFinish})
	m.log.Debug().Msg("slot stopped")
}

// drop closes the connection. A job running on it is cancelled: the broker
// has given up on it (or will), so its result would be dropped anyway. The
// machine reconnects after a backoff, to the next endpoint if advance is
// set, and not before the handler has returned; the jobs waiting go with
// the connection (the broker queues them again).
func (m *machine) drop(now time.Time, advance bool) {
	m.connected = false
	m.do(action{kind: actClose})
	m.waiting = nil
	if m.heard {
		m.failures = 0
	} else {
		m.failures++
	}
	if advance {
		m.endpoint = (m.endpoint + 1) % len(m.cfg.Brokers)
	}
	m.reconnectAt = now.Add(m.backoff())
	if m.busy && !m.cur.lost {
		m.log.Warn().Str(keyJob, m.cur.id).Msg("connection lost during job, cancelling it")
		m.cur.lost = true
		m.do(action{kind: actCancel})
	}
}

// backoff returns the delay before the next connection: ReconnectMin doubled
// for every failed connection in a row, at most ReconnectMax, plus up to 20%
// jitter so that many slots do not reconnect in step.
func (m *machine) backoff() time.Duration {
	d := m.cfg.ReconnectMin
	for i := 1; i < m.failures && d < m.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, m.cfg.ReconnectMax)
	return d + m.jitter(d/5)
}

// printableID returns addr as it is when it is printable ASCII, else
// "mdp-" and its hex: a plain broker's address frame is a routing id.
func printableID(addr []byte) string {
	for _, c := range addr {
		if c < 0x21 || c > 0x7e {
			return "mdp-" + hex.EncodeToString(addr)
		}
	}
	return string(addr)
}
