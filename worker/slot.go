package worker

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/zmqwake"
	"github.com/zmws/zmws/protocol"
)

const (
	// maxPoll caps a wait so a slot re-checks its state at least this often
	// even if a wake-up were lost; ctx cancellation normally wakes it at once
	// (an idle slot through its wake PAIR, a busy one through ctx.Done).
	maxPoll = time.Second
	// maxBusyCheck bounds how long a slot running a job goes without
	// looking at its socket (meanwhile it waits on the handler's channels):
	// a DISCONNECT (the job was cancelled, or the broker gave up on this
	// worker) is noticed within it. It is at most a quarter of the heartbeat
	// interval too.
	maxBusyCheck = 250 * time.Millisecond
	// chunkQueue is how many partial outputs a handler may write ahead of
	// the slot before Write blocks.
	chunkQueue = 64
	// cancelWait is how long a stopping slot waits for a handler to return
	// after cancelling its context at the end of the grace period, before
	// abandoning it.
	cancelWait = time.Second
	// disconnectLinger bounds how long the final DISCONNECT may wait in the
	// background for delivery after the socket is closed.
	disconnectLinger = time.Second
	// maxDrain bounds the messages read from one socket per loop turn, so a
	// flood cannot delay heartbeats.
	maxDrain = 64
)

// wireForm is how this worker speaks: 18/MDP without the empty delimiter.
var wireForm = protocol.Form{Version: protocol.V2}

// slot is one connection to a broker serving one job at a time. All its
// fields, and its sockets, belong to the goroutine running slot.run, except
// wake, which is safe for concurrent use. A handler runs on a goroutine of
// its own and never touches a socket: its partial output and its result
// reach the slot through the running record's channels.
//
// The slot waits in one of two ways. Idle (or with output the DEALER cannot
// take yet) it blocks in zmq_poll on its DEALER and its wake PAIR, so a job
// is picked up the moment it arrives. Running a job with nothing pending, it
// blocks on the job's channels and ctx.Done, so a partial or the result goes
// to the wire without another hop; it reads its socket without blocking at
// least every busyCheck, and at every deadline (heartbeat, expiry, grace).
//
// Connection states: connected (sock != nil) → closed (sock == nil, waiting
// for reconnectAt and for the running handler, if any, to return) →
// connected again with a fresh socket and identity.
type slot struct {
	w    *Worker
	idx  int
	base zerolog.Logger
	log  zerolog.Logger // base plus the current identity
	wake *zmqwake.Waker // wakes an idle slot's poll when ctx ends
	done <-chan struct{}

	sock        *zmq.Socket  // DEALER to the broker; nil while closed
	watch       *curve.Watch // sock's CURVE handshakes (nil without CURVE)
	poller      *zmq.Poller  // sock (item 0, if any) and the wake PAIR
	identity    string
	endpoint    int    // index into Brokers of the current or next connection
	gen         uint64 // connection generation, bumped at each connect
	heard       bool   // got a HEARTBEAT or REQUEST on this connection
	announced   bool   // sent a READY on some connection of this Run
	failures    int    // connections in a row that never heard from a broker
	heartbeatAt time.Time
	expireAt    time.Time
	reconnectAt time.Time
	checkAt     time.Time // when a busy slot next reads its socket
	busyCheck   time.Duration
	timer       *time.Timer // a busy slot's wait bound
	// pending holds job messages (PARTIAL, FINAL) the DEALER could not take
	// (its high-water mark was reached), in order. While it is not empty the
	// slot stops reading the job's output, so a fast handler's Write blocks.
	pending [][][]byte

	handlerCtx context.Context // parent of the handlers' contexts
	cur        *running        // the job in progress, or nil
	// waiting holds REQUESTs the broker sent ahead (Config.Prefetch) while
	// cur runs, in order; each starts when the one before it ends.
	waiting []protocol.Message

	stopping  bool
	graceAt   time.Time // when a stopping slot cancels its handler
	abandonAt time.Time // when it stops waiting for the handler
}

// running is a job in progress on a slot.
type running struct {
	job       *Job
	gen       uint64 // connection the job arrived on
	stock     bool   // the REQUEST had no meta frame: reply without one
	started   time.Time
	cancel    context.CancelFunc
	cancelled bool // cancelled at the end of the grace period

	chunks chan []byte   // partial output, in order (see stream)
	done   chan struct{} // closed by the handler goroutine after res, err are set
	res    []byte
	err    error
}

func newSlot(w *Worker, idx int) (*slot, error) {
	s := &slot{w: w, idx: idx}
	wk, err := zmqwake.New("zmws-worker")
	if err != nil {
		return nil, err
	}
	s.wake = wk
	s.base = w.log.With().Int("slot", idx).Logger()
	s.log = s.base
	s.busyCheck = max(min(maxBusyCheck, w.cfg.Heartbeat/4), time.Millisecond)
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	s.setPoller()
	return s, nil
}

func (s *slot) close() { s.wake.Close() }

// setPoller makes the poller for the current socket.
func (s *slot) setPoller() {
	s.poller = zmq.NewPoller()
	if s.sock != nil {
		s.poller.Add(s.sock, zmq.POLLIN)
	}
	s.poller.Add(s.wake.Socket(), zmq.POLLIN)
}

// run serves until ctx is cancelled and the slot has shut down.
func (s *slot) run(ctx context.Context) error {
	defer s.close()
	stopWake := context.AfterFunc(ctx, s.wake.Wake)
	defer stopWake()
	s.done = ctx.Done()
	s.handlerCtx = context.WithoutCancel(ctx)
	s.reconnectAt = time.Now()

	for {
		now := time.Now()
		if !s.stopping && ctx.Err() != nil {
			s.beginStop(now)
		}
		if s.stopping {
			if s.cur == nil {
				s.finish()
				return nil
			}
			if !s.cur.cancelled && !now.Before(s.graceAt) {
				s.log.Warn().Str(keyJob, s.cur.job.ID).Dur(keyElapsed, now.Sub(s.cur.started)).
					Msg("grace period over, cancelling job")
				s.cur.cancelled = true
				s.cur.cancel()
				s.abandonAt = now.Add(cancelWait)
			}
			if s.cur.cancelled && !now.Before(s.abandonAt) {
				s.log.Error().Str(keyJob, s.cur.job.ID).Msg("handler ignores cancellation, abandoning job")
				s.finish()
				return nil
			}
		}
		if s.sock == nil && !s.stopping && s.cur == nil && !now.Before(s.reconnectAt) {
			s.connect(now)
		}
		if s.sock != nil && !now.Before(s.heartbeatAt) {
			s.send(protocol.Message{Cmd: protocol.CmdHeartbeat})
			s.heartbeatAt = now.Add(s.w.cfg.Heartbeat)
		}

		var err error
		if s.cur != nil && len(s.pending) == 0 {
			s.waitJob(now)
		} else {
			err = s.waitSocket(now)
		}
		if err != nil {
			switch zmq.AsErrno(err) {
			case zmq.Errno(syscall.EINTR):
				continue
			case zmq.ETERM:
				return nil
			}
			s.log.Error().Err(err).Msg("poll")
			return fmt.Errorf("poll: %w", err)
		}
		// A broker that refused our key will never answer: say why at once
		// and try again after the backoff (an operator may add the key).
		if s.sock != nil && !s.heard {
			if err := s.watch.Err(); err != nil {
				s.log.Error().Err(err).Msg("broker refused the connection")
				s.drop(time.Now(), true)
				continue
			}
		}
		// Expiry is checked after reading what has arrived, so that a late
		// turn of this loop does not mistake unread heartbeats for silence.
		if now := time.Now(); s.sock != nil && !now.Before(s.expireAt) {
			s.log.Warn().Str(keyEndpoint, s.w.cfg.Brokers[s.endpoint]).Msg("broker silent, reconnecting")
			s.drop(now, true)
		}
	}
}

// waitSocket blocks in zmq_poll until the broker sends, the DEALER takes
// pending output, the slot is woken, or the next deadline.
func (s *slot) waitSocket(now time.Time) error {
	if s.sock != nil {
		ev := zmq.POLLIN
		if len(s.pending) > 0 {
			ev |= zmq.POLLOUT
		}
		s.poller.Update(0, ev)
	}
	polled, err := s.poller.Poll(s.timeout(now))
	if err != nil {
		return err
	}
	for _, pd := range polled {
		switch {
		case pd.Socket != s.sock:
			s.wake.Drain()
		case pd.Events&zmq.POLLOUT != 0:
			s.flush()
			if pd.Events&zmq.POLLIN != 0 && s.sock != nil {
				s.drainBroker()
			}
		case pd.Events&zmq.POLLIN != 0:
			s.drainBroker()
		}
	}
	s.checkAt = time.Now().Add(s.busyCheck)
	return nil
}

// waitJob waits for the running job's output or result, ctx, or the next
// deadline, whichever comes first, and handles it; then, if it is time, it
// reads the socket without blocking.
func (s *slot) waitJob(now time.Time) {
	r := s.cur
	d := s.timeout(now)
	if s.sock != nil {
		d = min(d, max(s.checkAt.Sub(now), 0))
	}
	done := s.done
	if s.stopping {
		done = nil
	}
	s.timer.Reset(d)
	select {
	case c := <-r.chunks:
		s.onPartial(r, c)
	case <-r.done:
		s.onDone(r)
	case <-done:
	case <-s.timer.C:
	}
	s.timer.Stop()
	// At expiry too: what has arrived is read before the broker is taken
	// for silent.
	if now := time.Now(); s.sock != nil && (!now.Before(s.checkAt) || !now.Before(s.expireAt)) {
		s.drainBroker()
		s.checkAt = now.Add(s.busyCheck)
	}
}

// timeout returns how long the loop may sleep: until the next deadline,
// rounded up to a millisecond (zmq's poll resolution), at most maxPoll.
func (s *slot) timeout(now time.Time) time.Duration {
	next := now.Add(maxPoll)
	at := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	if s.sock != nil {
		at(s.heartbeatAt)
		at(s.expireAt)
	} else if !s.stopping && s.cur == nil {
		at(s.reconnectAt)
	}
	if s.stopping && s.cur != nil {
		if s.cur.cancelled {
			at(s.abandonAt)
		} else {
			at(s.graceAt)
		}
	}
	d := next.Sub(now)
	if d <= 0 {
		return 0
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// connect opens a fresh DEALER with a new identity to the current endpoint
// and announces the service.
func (s *slot) connect(now time.Time) {
	ep := s.w.cfg.Brokers[s.endpoint]
	id := newIdentity()
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err == nil {
		if s.w.sndhwm > 0 {
			sock.SetSndhwm(s.w.sndhwm)
		}
		if err = sock.SetLinger(0); err == nil {
			if err = sock.SetIdentity(id); err == nil {
				err = s.secure(sock)
			}
			if err == nil {
				err = sock.Connect(ep)
			}
		}
		if err != nil {
			s.watch.Close() // before the socket: see curve.Watch
			s.watch = nil
			sock.Close()
		}
	}
	if err != nil {
		s.base.Error().Err(err).Str(keyEndpoint, ep).Msg("connect")
		s.failures++
		s.endpoint = (s.endpoint + 1) % len(s.w.cfg.Brokers)
		s.reconnectAt = now.Add(s.backoff())
		return
	}
	s.sock, s.identity, s.heard = sock, id, false
	s.setPoller()
	s.gen++
	s.log = s.base.With().Str(keyWorker, id).Logger()
	s.heartbeatAt = now.Add(s.w.cfg.Heartbeat)
	s.expireAt = now.Add(s.w.cfg.Heartbeat * time.Duration(s.w.cfg.Liveness))
	s.send(protocol.Message{Cmd: protocol.CmdReady, Service: s.w.cfg.Service, Body: [][]byte{s.w.ready}})
	s.log.Info().Str(keyEndpoint, ep).Msg("ready sent")
	if !s.announced {
		s.announced = true
		if s.w.unready.Add(-1) == 0 && s.w.cfg.Ready != nil {
			s.w.cfg.Ready()
		}
	}
}

// secure makes sock a CURVE client when the worker has keys, watching its
// handshakes.
func (s *slot) secure(sock *zmq.Socket) error {
	keys := s.w.cfg.Curve
	if keys == nil {
		return nil
	}
	if err := keys.Apply(sock); err != nil {
		return err
	}
	w, err := curve.WatchSocket(sock)
	s.watch = w
	return err
}

// drop closes the connection at once (linger 0). A job running on it is
// cancelled: the broker has given up on it (or will), so its result would be
// dropped anyway. The slot reconnects after a backoff, to the next endpoint
// if advance is set, and not before the handler has returned.
func (s *slot) drop(now time.Time, advance bool) {
	s.watch.Close() // before the socket: see curve.Watch
	s.watch = nil
	s.sock.Close()
	s.sock = nil
	s.setPoller()
	s.pending = nil
	s.waiting = nil // the broker queues them again
	if s.heard {
		s.failures = 0
	} else {
		s.failures++
	}
	if advance {
		s.endpoint = (s.endpoint + 1) % len(s.w.cfg.Brokers)
	}
	s.reconnectAt = now.Add(s.backoff())
	if r := s.cur; r != nil && r.gen == s.gen {
		s.log.Warn().Str(keyJob, r.job.ID).Msg("connection lost during job, cancelling it")
		r.cancel()
	}
}

// backoff returns the delay before the next connection: ReconnectMin doubled
// for every failed connection in a row, at most ReconnectMax, plus up to 20%
// jitter so that many slots do not reconnect in step.
func (s *slot) backoff() time.Duration {
	d := s.w.cfg.ReconnectMin
	for i := 1; i < s.failures && d < s.w.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, s.w.cfg.ReconnectMax)
	return d + rand.N(d/5+1)
}

// send sends a control message (READY, HEARTBEAT, DISCONNECT) to the broker
// without blocking. If the connection cannot take it, it is dropped: the
// queue to the broker is full, and either the job messages ahead of it show
// the broker that the worker lives, or expiry will replace the socket.
func (s *slot) send(m protocol.Message) {
	m.Form = wireForm
	if _, err := s.sock.SendMessageDontwait(protocol.EncodeWorker(m)); err != nil {
		s.log.Debug().Err(err).Stringer("cmd", m.Cmd).Msg("send to broker")
	}
}

// sendJob sends a job message (PARTIAL, FINAL) in order after any pending
// ones, queueing it if the DEALER is full rather than losing it.
func (s *slot) sendJob(m protocol.Message) {
	m.Form = wireForm
	s.pending = append(s.pending, protocol.EncodeWorker(m))
	s.flush()
}

// flush sends pending job messages until the DEALER is full again.
func (s *slot) flush() {
	for len(s.pending) > 0 {
		_, err := s.sock.SendMessageDontwait(s.pending[0])
		if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
			return
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("send to broker")
		}
		s.pending[0] = nil
		s.pending = s.pending[1:]
	}
	s.pending = nil
}

func (s *slot) drainBroker() {
	sock := s.sock
	for range maxDrain {
		frames, err := sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			return
		}
		s.onBroker(time.Now(), frames)
		if s.sock != sock { // dropped
			return
		}
	}
}

func (s *slot) onBroker(now time.Time, frames [][]byte) {
	s.expireAt = now.Add(s.w.cfg.Heartbeat * time.Duration(s.w.cfg.Liveness))
	m, err := protocol.DecodeWorker(frames)
	if err != nil {
		s.log.Warn().Err(err).Int("frames", len(frames)).Msg("malformed message from broker")
		return
	}
	switch m.Cmd {
	case protocol.CmdHeartbeat:
		s.heard = true
	case protocol.CmdDisconnect:
		if meta, _, ok, _ := protocol.SplitMeta(m.Body); ok && meta.Code != "" {
			// A refusal: this worker's key may not offer the service.
			s.log.Error().Str(keyEndpoint, s.w.cfg.Brokers[s.endpoint]).Str("code", meta.Code).Str("error", meta.Error).
				Msg("broker refused this worker, reconnecting after a backoff")
			s.heard = false // counts as a failed connection: backoff grows
			s.drop(now, false)
			return
		}
		s.log.Info().Str(keyEndpoint, s.w.cfg.Brokers[s.endpoint]).Msg("broker sent disconnect, reconnecting")
		s.drop(now, false)
	case protocol.CmdRequest:
		s.heard = true
		s.onRequest(now, m)
	default:
		s.log.Warn().Stringer("cmd", m.Cmd).Msg("unexpected command from broker")
	}
}

func (s *slot) onRequest(now time.Time, m protocol.Message) {
	id := string(m.Address)
	switch {
	case s.stopping:
		s.giveBack(m)
		return
	case s.cur != nil || len(s.waiting) > 0:
		if len(s.waiting) >= s.w.cfg.Prefetch {
			s.log.Warn().Str(keyJob, id).Msg("request beyond the prefetch, ignored")
			return
		}
		s.waiting = append(s.waiting, m)
		s.startWaiting(now)
		return
	}
	s.start(now, m)
}

// start starts the job of REQUEST m on the free slot.
func (s *slot) start(now time.Time, m protocol.Message) {
	id := string(m.Address)
	meta, input, hasMeta, err := protocol.SplitMeta(m.Body)
	if err != nil {
		s.log.Warn().Err(err).Str(keyJob, id).Msg("malformed request, failing job")
		s.sendJob(protocol.Message{Cmd: protocol.CmdReply, Address: m.Address, Body: [][]byte{protocol.EncodeMeta(protocol.Meta{
			Status: protocol.StatusFailed, Code: protocol.CodeBadRequest, Error: "worker: " + err.Error(),
		})}})
		return
	}
	chunks, gone := make(chan []byte, chunkQueue), make(chan struct{})
	j := &Job{ID: id, Service: s.w.cfg.Service, Attempt: 1, Params: map[string]string{}, Input: input,
		st: &stream{chunks: chunks, done: gone}}
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
	ctx, cancel := context.WithCancel(s.handlerCtx)
	r := &running{job: j, gen: s.gen, stock: !hasMeta, started: now, cancel: cancel, chunks: chunks, done: make(chan struct{})}
	s.cur = r
	s.w.idle.started()
	s.log.Debug().Str(keyJob, id).Int("attempt", j.Attempt).Msg("job started")
	go s.serve(ctx, r)
}

// serve runs on its own goroutine: it calls the handler, then tells the slot
// by closing r.done. It touches no slot field.
func (s *slot) serve(ctx context.Context, r *running) {
	res, err := call(ctx, s.w.cfg.Handler, r.job)
	r.job.st.end()
	r.res, r.err = res, err
	close(r.done)
}

// panicError is a recovered handler panic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

func call(ctx context.Context, h Handler, j *Job) (res []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return h.ServeJob(ctx, j)
}

// onPartial sends a chunk of the running job's output as a PARTIAL, or drops
// it if the connection the job came on is gone.
func (s *slot) onPartial(r *running, chunk []byte) {
	if s.sock == nil || r.gen != s.gen {
		s.log.Debug().Str(keyJob, r.job.ID).Msg("partial output after connection loss, dropped")
		return
	}
	s.sendJob(protocol.Message{Cmd: protocol.CmdPartial, Address: []byte(r.job.ID), Body: [][]byte{chunk}})
}

// onDone handles a handler's return: output it wrote before returning goes
// first, then the FINAL. If the DEALER fills up on the way, the rest waits
// for the next turn (r.done stays closed, so it comes back here).
func (s *slot) onDone(r *running) {
	for len(s.pending) == 0 {
		select {
		case c := <-r.chunks:
			s.onPartial(r, c)
		default:
			now := time.Now()
			s.onFinal(now, r)
			s.startWaiting(now)
			return
		}
	}
}

func (s *slot) onFinal(now time.Time, r *running) {
	r.cancel()
	s.cur = nil
	s.w.idle.ended(now)
	log := s.log.With().Str(keyJob, r.job.ID).Dur(keyElapsed, now.Sub(r.started)).Logger()
	var pe *panicError
	if errors.As(r.err, &pe) {
		log.Error().Str("panic", fmt.Sprint(pe.value)).Bytes("stack", pe.stack).Msg("handler panicked")
	}
	switch {
	case r.cancelled && errors.Is(r.err, context.Canceled):
		log.Warn().Msg("job cancelled by shutdown, result not sent; the broker will requeue it")
		return
	case s.sock == nil || r.gen != s.gen:
		log.Warn().Msg("result of a job from an earlier connection, dropped")
		return
	}
	s.sendJob(protocol.Message{Cmd: protocol.CmdReply, Address: []byte(r.job.ID), Body: finalBody(r.stock, r.res, r.err, r.job.OutputTruncated())})
	if r.err != nil {
		ev := log.Info().Err(r.err)
		var ee *ExitError
		if errors.As(r.err, &ee) {
			ev = ev.Int(keyExitCode, ee.Code)
		}
		ev.Msg("job failed")
	} else {
		log.Info().Msg("job complete")
	}
}

// finalBody is the body of a FINAL: for a zmws broker a meta frame with the
// outcome (and whether the handler cut the output), then the result; for a
// stock broker (the REQUEST had no meta frame) the result alone, or on
// failure the frames FAIL, job_failed, error text that zmws gives stock
// clients.
func finalBody(stock bool, res []byte, err error, truncated bool) [][]byte {
	if stock {
		if err != nil {
			return [][]byte{[]byte(protocol.FailFrame), []byte(protocol.CodeJobFailed), []byte(err.Error())}
		}
		if len(res) == 0 {
			return nil
		}
		return [][]byte{res}
	}
	meta := protocol.Meta{Status: protocol.StatusComplete, OutputTruncated: truncated}
	if err != nil {
		meta.Status, meta.Error = protocol.StatusFailed, err.Error()
		var ee *ExitError
		if errors.As(err, &ee) {
			code := ee.Code
			meta.ExitCode = &code
		}
	}
	body := [][]byte{protocol.EncodeMeta(meta)}
	if len(res) > 0 {
		body = append(body, res)
	}
	return body
}

// startWaiting starts the next job the broker sent ahead, if the slot is
// free; one that cannot start (a malformed request, failed at once) makes
// way for the next.
func (s *slot) startWaiting(now time.Time) {
	for !s.stopping && s.cur == nil && len(s.waiting) > 0 && s.sock != nil {
		m := s.waiting[0]
		s.waiting[0] = protocol.Message{}
		s.waiting = s.waiting[1:]
		s.start(now, m)
	}
}

// giveBack tells the broker the slot will not run the job of REQUEST m
// (it is stopping): the broker queues it again, its attempt not counted.
func (s *slot) giveBack(m protocol.Message) {
	if len(m.Body) == 0 || !protocol.IsMeta(m.Body[0]) {
		// A stock broker knows no giving back: it requeues the job when
		// the slot says DISCONNECT.
		s.log.Info().Str(keyJob, string(m.Address)).Msg("stopping: job not started")
		return
	}
	s.log.Info().Str(keyJob, string(m.Address)).Msg("stopping: job given back to the broker")
	s.sendJob(protocol.Message{Cmd: protocol.CmdReply, Address: m.Address,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusReturned})}})
}

// beginStop stops taking jobs and gives back those sent ahead, last first
// (the broker puts each at the head of its queue, so they keep their
// order); a running handler gets the grace period.
func (s *slot) beginStop(now time.Time) {
	s.stopping = true
	if s.sock != nil {
		for i := len(s.waiting) - 1; i >= 0; i-- {
			s.giveBack(s.waiting[i])
		}
	}
	s.waiting = nil
	if s.cur != nil {
		s.graceAt = now.Add(s.w.cfg.Grace)
		s.log.Info().Str(keyJob, s.cur.job.ID).Dur("grace", s.w.cfg.Grace).Msg("stopping, waiting for job")
	}
}

// finish says DISCONNECT and closes the connection; the DISCONNECT gets
// disconnectLinger to leave. A job still running is abandoned (its context
// is cancelled; the broker requeues it).
func (s *slot) finish() {
	if r := s.cur; r != nil {
		r.cancel()
		r.job.st.abandon()
		s.w.idle.ended(time.Now())
	}
	if s.sock != nil {
		if s.flush(); len(s.pending) > 0 {
			s.log.Warn().Int("messages", len(s.pending)).Msg("broker not taking output, dropped at stop")
		}
		s.send(protocol.Message{Cmd: protocol.CmdDisconnect})
		s.watch.Close() // before the socket: see curve.Watch
		s.watch = nil
		s.sock.SetLinger(disconnectLinger)
		s.sock.Close()
		s.sock = nil
	}
	s.timer.Stop()
	s.log.Debug().Msg("slot stopped")
}

// newIdentity returns a fresh printable socket identity, so a broker sees
// each connection as a new worker.
func newIdentity() string {
	var b [8]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
