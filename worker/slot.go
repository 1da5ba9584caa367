package worker

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/zmqfd"
	"github.com/zmws/zmws/internal/zmqmsg"
	"github.com/zmws/zmws/protocol"
)

const (
	// maxPoll caps a wait so a slot re-checks its state at least this often
	// even if a wake-up were lost; ctx's end and a handler's output
	// normally wake it at once (nudge).
	maxPoll = time.Second
	// newsPoll bounds how long the loop goes without polling its socket
	// while the handler keeps giving it output or results (partials, or
	// short prefetched jobs in a row): it takes those without a poll, so
	// that a job costs no system call of its own, but reads the broker
	// at least this often.
	newsPoll = time.Millisecond
	// handlerYields is how many times the loop yields to a running handler
	// before it blocks: a few hundred nanoseconds, enough for a short job
	// to return without a wake-up.
	handlerYields = 4
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

// slot is one connection to a broker serving one job at a time: a machine,
// which decides, and a loop (run), which owns the DEALER and does what the
// machine asks. All its fields, and its sockets, belong to the goroutine
// running slot.run, except nudge, which is safe for concurrent use. A
// handler runs on a goroutine of its own and never touches a socket: its
// partial output and its result reach the loop through the running
// record (a channel and a flag) and a nudge.
//
// The loop waits for its DEALER in the Go netpoller (internal/zmqfd), not
// in zmq_poll, until the machine's next deadline (at most maxPoll): a
// parked goroutine holds no OS thread in cgo, so the runtime need not
// hand its P off (docs/PERFORMANCE.md). The broker's messages wake the
// wait; the handler's output and ctx's end interrupt it (nudge). Without
// a socket the loop waits on a timer and nudge's kick channel.
type slot struct {
	w     *Worker
	m     *machine
	nudge nudge

	sock *zmq.Socket // DEALER to the broker; nil while closed
	// rx and tx receive and send whole messages in one cgo call each.
	rx    *zmqmsg.Reader
	tx    zmqmsg.Writer
	watch *curve.Watch // sock's CURVE handshakes (nil without CURVE)
	// deadline is the deadline set on nudge.fdw; stale says an interrupt
	// may be pending on it, so it must be set again before a wait.
	deadline time.Time
	stale    bool
	timer    *time.Timer // the wait without a socket; nil until needed
	// pending holds job messages (PARTIAL, FINAL) the DEALER could not take
	// (its high-water mark was reached), in order. While it is not empty the
	// loop stops reading the job's output, so a fast handler's Write blocks.
	pending [][][]byte

	handlerCtx context.Context // parent of the handlers' contexts
	cur        *running        // the handler in progress, or nil
	announced  bool            // sent a READY on some connection of this Run
	polledAt   time.Time       // the turn that last polled
	finished   bool            // the machine said actFinish
}

// nudge wakes the loop for a handler's output or ctx's end, but only when
// the loop is (or is about to be) waiting: a loop that is awake looks at
// the running record and ctx before it sleeps again, so most jobs cost no
// wake-up.
type nudge struct {
	mu       sync.Mutex
	sleeping bool          // the loop is (about to be) waiting
	woken    bool          // a nudge interrupted fdw during this wait
	fdw      *zmqfd.Waiter // the socket's waiter; nil without a socket
	kick     chan struct{} // wakes a wait without a socket (buffer 1)
}

// nudge tells the loop that the running record has news, or ctx ended.
func (n *nudge) nudge() {
	n.mu.Lock()
	if n.sleeping {
		n.sleeping = false
		if n.fdw != nil {
			n.woken = true
			n.fdw.Interrupt()
		} else {
			select {
			case n.kick <- struct{}{}:
			default:
			}
		}
	}
	n.mu.Unlock()
}

// sleep marks the loop as waiting (loop only).
func (n *nudge) sleep() {
	n.mu.Lock()
	n.sleeping = true
	n.mu.Unlock()
}

// wakeUp marks the loop as awake and reports whether a nudge interrupted
// fdw since sleep (loop only).
func (n *nudge) wakeUp() (interrupted bool) {
	n.mu.Lock()
	interrupted = n.woken
	n.sleeping, n.woken = false, false
	n.mu.Unlock()
	return interrupted
}

// setWaiter installs fdw, or removes it (nil), for the socket the loop
// opened or is about to close (loop only, while awake).
func (n *nudge) setWaiter(fdw *zmqfd.Waiter) {
	n.mu.Lock()
	n.fdw = fdw
	n.mu.Unlock()
}

// running is a handler in progress on a slot.
type running struct {
	job    *Job
	cancel context.CancelFunc
	chunks chan []byte // partial output, in order (see stream)
	// returned is set by the handler goroutine after res and err, when
	// every chunk it wrote is in chunks.
	returned atomic.Bool
	res      []byte
	err      error
}

func newSlot(w *Worker, idx int) (*slot, error) {
	s := &slot{w: w}
	s.nudge.kick = make(chan struct{}, 1)
	s.m = newMachine(&w.cfg, w.ready, w.log.With().Int("slot", idx).Logger())
	return s, nil
}

func (s *slot) close() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// run serves until ctx is cancelled and the slot has shut down. Each turn
// reads the clock once, feeds the machine what has arrived (the handler's
// output, ctx's end, the time), does what it asks, and waits.
func (s *slot) run(ctx context.Context) error {
	s.rx = zmqmsg.NewReader()
	defer s.rx.Close()
	defer s.close()
	stopWake := context.AfterFunc(ctx, s.nudge.nudge)
	defer stopWake()
	s.handlerCtx = context.WithoutCancel(ctx)
	s.m.Start(time.Now())
	for {
		now := time.Now()
		if ctx.Err() != nil {
			s.m.Stop(now)
		}
		s.fromHandler(now)
		// A broker that refused our key will never answer.
		if s.watch != nil && !s.m.Heard() {
			if err := s.watch.Err(); err != nil {
				s.m.Refused(now, err)
			} else if s.watch.Handshaken() {
				s.m.Handshaken()
			}
		}
		s.m.Tick(now)
		if s.perform(now); s.finished {
			return nil
		}
		if err := s.wait(ctx, now); err != nil {
			switch errno(err) {
			case zmq.Errno(syscall.EINTR):
				continue
			case zmq.ETERM:
				return nil
			}
			s.m.log.Error().Err(err).Msg("wait")
			return fmt.Errorf("wait: %w", err)
		}
		if s.finished {
			return nil
		}
	}
}

// perform does what the machine asks, in order, including what it asks
// while doing it (a connection's READY).
func (s *slot) perform(now time.Time) {
	for a, ok := s.m.next(); ok; a, ok = s.m.next() {
		switch a.kind {
		case actSend:
			s.send(a.msg)
		case actSendJob:
			s.sendJob(a.msg)
		case actConnect:
			s.connect(now, a.endpoint)
		case actClose:
			s.drop()
		case actStart:
			s.start(a.job)
		case actCancel:
			if s.cur != nil {
				s.cur.cancel()
			}
		case actFinish:
			s.finish()
		}
	}
}

// wait blocks until the broker sends, the DEALER takes pending output,
// the slot is nudged, or the machine's next deadline, and reads what has
// arrived.
func (s *slot) wait(ctx context.Context, now time.Time) error {
	d := s.timeout(now)
	for i := 0; i < handlerYields && s.cur != nil && !s.handlerNews(); i++ {
		// The handler is runnable or running: yielding lets a short one
		// finish (on this thread, or another) before the loop waits, where
		// only a nudge could reach it.
		runtime.Gosched()
	}
	want := zmq.POLLIN
	if len(s.pending) > 0 {
		want |= zmq.POLLOUT
	}
	if s.handlerNews() {
		if now.Sub(s.polledAt) < newsPoll {
			return nil // take the news first; the socket can wait
		}
		d = 0
	}
	if d > 0 && s.sock != nil {
		// Before sleep: an interrupt from now on must survive it.
		if err := s.setDeadline(now, now.Add(d)); err != nil {
			return err
		}
	}
	s.nudge.sleep()
	if d > 0 && (s.handlerNews() || ctx.Err() != nil) {
		d = 0 // news, or ctx's end, came before sleep: no nudge for it
	}
	s.polledAt = now
	var ev zmq.State
	var err error
	switch {
	case s.sock == nil:
		s.idle(d)
	case d == 0:
		ev, err = s.sock.GetEvents()
	default:
		ev, err = s.nudge.fdw.Wait(want)
		if errors.Is(err, zmqfd.ErrInterrupted) {
			err = nil
		}
	}
	if s.nudge.wakeUp() {
		s.stale = true
	}
	if err != nil {
		return err
	}
	if ev&zmq.POLLOUT != 0 && len(s.pending) > 0 {
		s.flush()
	}
	if ev&zmq.POLLIN != 0 && s.sock != nil {
		s.drainBroker()
	}
	return nil
}

// setDeadline bounds the socket's wait by at most deadline, leaving an
// earlier one in the future in place (a wait that ends early costs a turn,
// setting it costs one on every turn), and clears any interrupt.
func (s *slot) setDeadline(now, deadline time.Time) error {
	if !s.stale && s.deadline.After(now) && !s.deadline.After(deadline) {
		return nil
	}
	s.deadline, s.stale = deadline, false
	return s.nudge.fdw.SetDeadline(deadline)
}

// idle waits without a socket for d, or until a nudge.
func (s *slot) idle(d time.Duration) {
	if d <= 0 {
		return
	}
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d)
	}
	select {
	case <-s.timer.C:
	case <-s.nudge.kick:
		s.timer.Stop()
	}
}

// errno is the ZeroMQ or system error number in err, or 0.
func errno(err error) zmq.Errno {
	var ze zmq.Errno
	if errors.As(err, &ze) {
		return ze
	}
	var se syscall.Errno
	if errors.As(err, &se) {
		return zmq.Errno(se)
	}
	return 0
}

// handlerNews reports whether the running handler has output or a result
// the loop would read now.
func (s *slot) handlerNews() bool {
	r := s.cur
	return r != nil && len(s.pending) == 0 && (len(r.chunks) > 0 || r.returned.Load())
}

// timeout returns how long the loop may sleep: until the machine's next
// deadline, rounded up to a millisecond (so that a wait does not end just
// short of it), at most maxPoll.
func (s *slot) timeout(now time.Time) time.Duration {
	d := maxPoll
	if next := s.m.Next(); !next.IsZero() {
		d = min(d, next.Sub(now))
	}
	if d <= 0 {
		return 0
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// fromHandler gives the machine the running handler's output, in order,
// then its result, while the DEALER takes what they become.
func (s *slot) fromHandler(now time.Time) {
	r := s.cur
	if r == nil {
		return
	}
	for range maxDrain {
		if len(s.pending) > 0 {
			return
		}
		returned := r.returned.Load() // before reading chunks: all are in
		select {
		case c := <-r.chunks:
			s.m.Output(c)
			s.perform(now)
			continue
		default:
		}
		if returned {
			s.cur = nil
			r.cancel()
			s.w.idle.ended(now)
			s.m.JobDone(now, r.res, r.err, r.job.OutputTruncated())
			s.perform(now)
		}
		return
	}
}

// connect opens a fresh DEALER with a new routing id to endpoint ep and tells
// the machine how it went.
func (s *slot) connect(now time.Time, ep int) {
	id := newRoutingID()
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
				err = sock.Connect(s.w.cfg.Brokers[ep])
			}
		}
		if err != nil {
			s.watch.Close() // before the socket: see curve.Watch
			s.watch = nil
			sock.Close()
		}
	}
	if err != nil {
		s.m.ConnectFailed(now, err)
		return
	}
	fdw, err := zmqfd.New(sock)
	if err != nil {
		s.watch.Close() // before the socket: see curve.Watch
		s.watch = nil
		sock.Close()
		s.m.ConnectFailed(now, err)
		return
	}
	s.sock = sock
	s.nudge.setWaiter(fdw)
	s.deadline, s.stale = time.Time{}, false
	s.m.Connected(now, id)
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
		if !s.m.auto() {
			return nil
		}
		// Auto mode watches the handshake to tell a silent broker from one
		// that is down (machine.silence).
		w, err := curve.WatchSocket(sock)
		s.watch = w
		return err
	}
	if err := keys.Apply(sock); err != nil {
		return err
	}
	w, err := curve.WatchSocket(sock)
	s.watch = w
	return err
}

// drop closes the connection at once (linger 0), with what is pending.
func (s *slot) drop() {
	if s.sock == nil {
		return
	}
	s.watch.Close() // before the socket: see curve.Watch
	s.watch = nil
	s.closeWaiter()
	s.sock.Close()
	s.sock = nil
	s.pending = nil
}

// closeWaiter closes the socket's waiter, before the socket.
func (s *slot) closeWaiter() {
	fdw := s.nudge.fdw
	s.nudge.setWaiter(nil)
	fdw.Close()
}

// send sends a control message (READY, HEARTBEAT) to the broker without
// blocking. If the connection cannot take it, it is dropped: the queue to
// the broker is full, and either the job messages ahead of it show the
// broker that the worker lives, or expiry will replace the socket.
func (s *slot) send(m protocol.Message) {
	if s.sock == nil {
		return
	}
	m.Form = s.m.Form()
	if err := s.tx.Send(s.sock, zmq.DONTWAIT, protocol.EncodeWorker(m)); err != nil {
		s.m.log.Debug().Err(err).Stringer("cmd", m.Cmd).Msg("send to broker")
	}
}

// sendJob sends a job message (PARTIAL, FINAL) in order after any pending
// ones, queueing it if the DEALER is full rather than losing it.
func (s *slot) sendJob(m protocol.Message) {
	if s.sock == nil {
		return
	}
	m.Form = s.m.Form()
	s.pending = append(s.pending, protocol.EncodeWorker(m))
	s.flush()
}

// flush sends pending job messages until the DEALER is full again.
func (s *slot) flush() {
	for len(s.pending) > 0 {
		err := s.tx.Send(s.sock, zmq.DONTWAIT, s.pending[0])
		if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
			return
		}
		if err != nil {
			s.m.log.Warn().Err(err).Msg("send to broker")
		}
		s.pending[0] = nil
		s.pending = s.pending[1:]
	}
	s.pending = nil
}

// drainBroker reads what the broker sent, up to maxDrain messages, and
// gives it to the machine, stopping if the connection closes.
func (s *slot) drainBroker() {
	sock := s.sock
	for range maxDrain {
		msg, err := s.rx.Recv(sock, zmq.DONTWAIT, 0, zmqmsg.Bounds{}, 0)
		if err != nil {
			return
		}
		now := time.Now()
		s.m.FromBroker(now, msg.Frames)
		if s.perform(now); s.sock != sock {
			return
		}
	}
}

// start starts the handler for job on a goroutine of its own.
func (s *slot) start(j *Job) {
	chunks := make(chan []byte, chunkQueue)
	j.st = &stream{chunks: chunks, done: make(chan struct{}), nudge: &s.nudge}
	ctx, cancel := context.WithCancel(s.handlerCtx)
	r := &running{job: j, cancel: cancel, chunks: chunks}
	s.cur = r
	s.w.idle.started()
	go s.serve(ctx, r)
}

// serve runs on its own goroutine: it calls the handler, then tells the
// loop. It touches no slot field but nudge.
func (s *slot) serve(ctx context.Context, r *running) {
	res, err := call(ctx, s.w.cfg.Handler, r.job)
	r.job.st.end()
	r.res, r.err = res, err
	r.returned.Store(true)
	s.nudge.nudge()
}

// finish sends what is pending if the DEALER takes it, says DISCONNECT and
// closes the connection; the DISCONNECT gets disconnectLinger to leave. A
// handler still running is abandoned (its context is cancelled; the broker
// requeues the job).
func (s *slot) finish() {
	s.finished = true
	if r := s.cur; r != nil {
		s.cur = nil
		r.cancel()
		r.job.st.abandon()
		s.w.idle.ended(time.Now())
	}
	if s.sock != nil {
		if s.flush(); len(s.pending) > 0 {
			s.m.log.Warn().Int("messages", len(s.pending)).Msg("broker not taking output, dropped at stop")
		}
		s.send(protocol.Message{Cmd: protocol.CmdDisconnect})
		s.watch.Close() // before the socket: see curve.Watch
		s.watch = nil
		s.closeWaiter()
		s.sock.SetLinger(disconnectLinger)
		s.sock.Close()
		s.sock = nil
	}
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

// newRoutingID returns a fresh printable routing id, so a broker sees
// each connection as a new worker.
func newRoutingID() string {
	var b [8]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
