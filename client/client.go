package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/zmqfd"
	"github.com/zmws/zmws/internal/zmqmsg"
	"github.com/zmws/zmws/protocol"
)

// Defaults for the zero values of Config.
const (
	DefaultBroker  = "tcp://127.0.0.1:5555"
	DefaultTimeout = 5 * time.Second
	DefaultRetries = 3
	// DefaultLiveness is the broker's default heartbeat times its liveness
	// (2.5 s x 3): the silence after which the broker would count a worker
	// dead, and after which Call asks the broker about its job.
	DefaultLiveness = 7500 * time.Millisecond
)

// watchSlice is how often the socket's loop looks at its CURVE handshakes
// while requests are in flight.
const watchSlice = 50 * time.Millisecond

// maxDrain bounds the replies read per loop turn, so sending is never
// starved by a stream of replies.
const maxDrain = 256

// Log field keys, the same across zmws.
const (
	keyService  = "service"
	keyJob      = "job"
	keyEndpoint = "endpoint"
	keyElapsed  = "elapsed"
	keyAttempt  = "attempt"
)

// form is how a Client speaks: 18/MDP from a DEALER, no delimiter frame.
var form = protocol.Form{Version: protocol.V2}

// Config configures a Client. Zero values mean the defaults.
type Config struct {
	// Broker is the broker's client endpoint (DefaultBroker).
	Broker string
	// Timeout bounds each attempt of a Submit or a query: how long to wait
	// for the reply (DefaultTimeout). Call is not bounded by it; bound Call
	// with its ctx.
	Timeout time.Duration
	// Retries is how many times a query (or a Submit with a Key) is sent
	// again after a timeout (DefaultRetries; negative means never).
	Retries int
	// Liveness is how long a Call waits without hearing anything of its
	// job before it asks the broker about the job (DefaultLiveness;
	// negative: never ask). See Call.
	Liveness time.Duration
	// Curve, when set, speaks CURVE to the broker: its public key
	// authenticates the broker, and the client's own key pair must be one
	// the broker authorizes (curve.LoadClient reads both from files). A
	// handshake the broker refuses ends the requests in flight at once with
	// an error matching curve.ErrRefused (or curve.ErrHandshake). nil: no
	// security.
	Curve *curve.Client
	// Protocol says what the client speaks to its broker (docs/PROTOCOL.md,
	// "Against a plain Majordomo broker"). "" and DialectZMWS: 18/MDP with
	// the zmws meta frame, a zmws broker. DialectMDP1, DialectMDP2: plain
	// 7/MDP or 18/MDP, no meta frame: only Call (the service as the
	// worker announced it) and Query of mmi.* work, and replies are
	// matched to requests by service, oldest first. DialectAuto asks
	// mmi.service in 18/MDP with a meta frame and in 7/MDP at once, before
	// the first request, and speaks what answers (see Dialect).
	Protocol protocol.Dialect
	// Logger receives the client's logs (default: none).
	Logger zerolog.Logger
}

// Client talks to one broker over one socket, with any number of requests
// in flight on it (see the package doc). Its methods are safe for
// concurrent use.
//
// One goroutine, the loop, owns the socket: it sends what requests queue in
// the outbox and hands each reply to the request whose reference it
// carries. Requests wait on their own, each with its own deadline and ctx,
// so one that gives up leaves the socket and the others alone.
type Client struct {
	cfg Config
	log zerolog.Logger

	// detect serializes finding out what the broker speaks (auto); speak
	// is the answer (c.mu), empty until then.
	detect sync.Mutex
	speak  protocol.Dialect

	mu      sync.Mutex
	calls   map[string]*call // requests in flight, by reference
	outbox  []*call          // requests waiting to be sent
	seq     uint64           // the last reference given out
	closed  bool
	polling bool // the loop is (about to be) waiting for the socket or kick
	woken   bool // a wake-up is pending for this wait
	// The loop waits for sock in the Go netpoller through fdw; callers
	// interrupt that wait (wake). Set by the loop, read by wake.
	fdw *zmqfd.Waiter

	kick     chan struct{} // wakes the loop while it has no socket
	done     chan struct{} // closed by Close
	loopDone chan struct{} // closed when the loop has closed the socket
	once     sync.Once

	// Owned by the loop.
	sock *zmq.Socket // nil after a failure, until the next request
	// rx and tx receive and send whole messages in one cgo call each
	// (loop only).
	rx      *zmqmsg.Reader
	tx      zmqmsg.Writer
	watch   *curve.Watch
	blocked bool // the socket refused a send: wait for POLLOUT
	stale   bool // fdw's deadline was set or interrupted: set it again
}

// New returns a Client for cfg.Broker. The socket connects in the
// background, so New succeeds while the broker is down; requests then wait
// for it (within their timeout).
func New(cfg Config) (*Client, error) {
	if cfg.Broker == "" {
		cfg.Broker = DefaultBroker
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = DefaultRetries
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.Liveness == 0 {
		cfg.Liveness = DefaultLiveness
	}
	switch cfg.Protocol {
	case "":
		cfg.Protocol = protocol.DialectZMWS
	case protocol.DialectAuto, protocol.DialectZMWS, protocol.DialectMDP1, protocol.DialectMDP2:
	default:
		return nil, fmt.Errorf("client: unknown protocol %q (want auto, zmws, mdp1 or mdp2)", cfg.Protocol)
	}
	c := &Client{
		cfg:      cfg,
		speak:    known(cfg.Protocol),
		log:      cfg.Logger.With().Str("component", "client").Str(keyEndpoint, cfg.Broker).Logger(),
		calls:    map[string]*call{},
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	if err := c.open(); err != nil {
		return nil, err
	}
	go c.loop()
	return c, nil
}

// Close closes the client's socket, discarding anything unsent. Requests
// in flight return ErrClosed at once; later ones too.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		close(c.done) // under mu: a loop that sees closed sees done
		// A loop waiting for its socket is interrupted; one waiting
		// without a socket selects on done.
		if c.polling && c.fdw != nil {
			c.fdw.Interrupt()
		}
		c.mu.Unlock()
	})
	<-c.loopDone
	return nil
}

// open makes a fresh DEALER socket connected to the broker (loop only, or
// New before the loop starts). The broker's ROUTER gives each new socket a
// new identity.
func (c *Client) open() error {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return fmt.Errorf("client: new socket: %w", err)
	}
	// Linger 0: Close discards what is unsent. RCVHWM 0: replies are never
	// dropped by the broker's ROUTER for want of room here; the loop takes
	// them as they come (a sync job's stream is bounded by the broker's
	// --max-stream).
	for _, set := range []func() error{
		func() error { return s.SetLinger(0) },
		func() error { return s.SetRcvhwm(0) },
	} {
		if err := set(); err != nil {
			s.Close()
			return fmt.Errorf("client: socket option: %w", err)
		}
	}
	var w *curve.Watch
	if c.cfg.Curve != nil {
		// A routing id no one can guess: libzmq's own come from a counter,
		// and replies go to a routing id alone (docs/SECURITY.md).
		if err := s.SetIdentity(rand.Text()); err != nil {
			s.Close()
			return fmt.Errorf("client: set routing id: %w", err)
		}
		if err := c.cfg.Curve.Apply(s); err != nil {
			s.Close()
			return fmt.Errorf("client: %w", err)
		}
		if w, err = curve.WatchSocket(s); err != nil {
			s.Close()
			return fmt.Errorf("client: %w", err)
		}
	}
	if err := s.Connect(c.cfg.Broker); err != nil {
		w.Close()
		s.Close()
		return fmt.Errorf("client: connect %s: %w", c.cfg.Broker, err)
	}
	fdw, err := zmqfd.New(s)
	if err != nil {
		w.Close()
		s.Close()
		return fmt.Errorf("client: %w", err)
	}
	c.sock, c.watch, c.blocked, c.stale = s, w, false, false
	c.mu.Lock()
	c.fdw = fdw
	c.mu.Unlock()
	return nil
}

// drop closes the socket (loop only); the next request opens a fresh one.
func (c *Client) drop() {
	if c.sock == nil {
		return
	}
	c.watch.Close() // before the socket: see curve.Watch
	c.mu.Lock()
	fdw := c.fdw
	c.fdw = nil
	c.mu.Unlock()
	fdw.Close() // before the socket: the loop does not wait on it now
	if err := c.sock.Close(); err != nil {
		c.log.Warn().Err(err).Msg("close socket")
	}
	c.sock, c.watch, c.blocked = nil, nil, false
}

// loop owns the socket until Close: it sends the outbox, routes replies,
// and fails every request in flight when the connection fails.
//
// It waits for the socket in the Go netpoller (zmqfd), not in zmq_poll: a
// parked goroutine holds no OS thread, and the callers it hands replies to
// run on its P at once. Callers that queue a request while it waits
// interrupt the wait (wake).
func (c *Client) loop() {
	c.rx = zmqmsg.NewReader()
	defer c.rx.Close()
	defer close(c.loopDone)
	defer c.drop()
	defer c.failAll(ErrClosed)
	delivered := false
	for {
		select {
		case <-c.done:
			return
		default:
		}
		if delivered {
			// Let the callers just handed a reply run before the loop
			// waits: their next requests then find it not yet waiting and
			// need no wake-up (docs/PERFORMANCE.md).
			delivered = false
			runtime.Gosched()
		}
		if c.flush() {
			continue // sent something, or closed
		}
		if c.sock == nil {
			select {
			case <-c.kick:
			case <-c.done:
			}
			c.endWait()
			continue
		}
		want := zmq.POLLIN
		if c.blocked {
			want |= zmq.POLLOUT
		}
		ev, err := c.fdw.Wait(want)
		c.endWait()
		switch {
		case err == nil:
		case errors.Is(err, zmqfd.ErrInterrupted):
		case errors.Is(err, zmq.Errno(syscall.EINTR)):
			continue
		default:
			c.log.Error().Err(err).Msg("wait failed: dropping the socket")
			c.failAll(fmt.Errorf("client: wait: %w", err))
			c.drop()
			continue
		}
		if ev&zmq.POLLOUT != 0 {
			c.blocked = false
		}
		if ev&zmq.POLLIN != 0 {
			delivered = c.receive() > 0
		}
		if c.watch != nil {
			if err := c.watch.Err(); err != nil {
				c.failAll(err)
				c.drop()
			}
		}
	}
}

// endWait marks the loop as no longer waiting (loop only).
func (c *Client) endWait() {
	c.mu.Lock()
	if c.woken {
		c.stale = true // fdw was interrupted
	}
	c.polling, c.woken = false, false
	c.mu.Unlock()
}

// prepareWait sets the deadline of the loop's next wait for the socket:
// watchSlice while CURVE handshakes are watched with requests in flight,
// none otherwise, which also clears an interrupt already seen (loop only,
// c.mu held, before the loop is marked as waiting).
func (c *Client) prepareWait() {
	if c.fdw == nil {
		return
	}
	var deadline time.Time
	if c.watch != nil && len(c.calls) > 0 {
		deadline = time.Now().Add(watchSlice)
	} else if !c.stale {
		return
	}
	if err := c.fdw.SetDeadline(deadline); err != nil {
		c.log.Warn().Err(err).Msg("set wait deadline")
	}
	c.stale = !deadline.IsZero()
}

// wake makes a waiting loop look at the outbox (c.mu held).
func (c *Client) wake() {
	if !c.polling || c.woken {
		return
	}
	c.woken = true
	if c.fdw != nil {
		c.fdw.Interrupt()
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// flush sends the outbox (loop only). It returns true when it sent
// something or the client is closed, and marks the loop as waiting when
// there was nothing to send, so that a request queued from now on wakes it.
func (c *Client) flush() bool {
	c.mu.Lock()
	out := c.outbox
	if c.closed {
		c.mu.Unlock()
		return true // done is closed: the loop returns
	}
	if len(out) == 0 || c.blocked {
		c.prepareWait()
		c.polling = true
		c.mu.Unlock()
		return false
	}
	c.outbox = nil
	c.mu.Unlock()
	for i, cl := range out {
		if !c.live(cl) {
			continue // given up before it was sent
		}
		if c.sock == nil {
			if err := c.open(); err != nil {
				for _, cl := range out[i:] {
					cl.fail(err)
				}
				return true
			}
		}
		// The socket connects with ZMQ_IMMEDIATE off, so a pipe exists and
		// this queues even while the broker is away, up to SNDHWM.
		if err := c.tx.Send(c.sock, zmq.DONTWAIT, cl.frames); err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
				c.mu.Lock()
				c.outbox = append(out[i:len(out):len(out)], c.outbox...)
				c.mu.Unlock()
				c.blocked = true
				return true
			}
			cl.fail(fmt.Errorf("client: send %s: %w", cl.service, err))
			continue
		}
		cl.markSent()
		if c.log.Debug().Enabled() {
			c.log.Debug().Str(keyService, cl.service).Str("ref", cl.ref).Msg("request sent")
		}
	}
	return true
}

// receive reads the replies that have arrived and routes each (loop only).
// It returns how many it read.
func (c *Client) receive() int {
	c.blocked = false // whatever blocked sending may have cleared: try again
	for n := range maxDrain {
		msg, err := c.rx.Recv(c.sock, zmq.DONTWAIT, 0, zmqmsg.Bounds{}, 0)
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				c.log.Warn().Err(err).Msg("receive")
			}
			return n
		}
		c.route(msg.Frames)
	}
	return maxDrain
}

// route hands one reply to the request it answers: the one whose reference
// it carries, or, from a broker that echoes none (a stock MDP broker), the
// oldest request in flight for its service.
func (c *Client) route(frames [][]byte) {
	m, err := protocol.DecodeReply(frames)
	if err != nil {
		c.log.Warn().Err(err).Msg("malformed reply dropped")
		return
	}
	r := reply{cmd: m.Cmd, service: m.Service, rest: m.Body}
	meta, rest, ok, err := protocol.SplitMeta(m.Body)
	switch {
	case err != nil:
		r.metaErr = err
	case ok:
		r.meta, r.hasMeta, r.rest = meta, true, rest
	}
	c.mu.Lock()
	var cl *call
	if r.meta.Ref != "" {
		cl = c.calls[r.meta.Ref]
		r.byRef = true
	} else {
		for _, x := range c.calls {
			if x.service == m.Service && x.form.Version == m.Form.Version && (cl == nil || x.seq < cl.seq) {
				cl = x
			}
		}
	}
	c.mu.Unlock()
	if cl == nil || cl.service != m.Service {
		if c.log.Debug().Enabled() {
			c.log.Debug().Str(keyService, m.Service).Str("ref", r.meta.Ref).Stringer("cmd", m.Cmd).Msg("stray reply dropped")
		}
		return
	}
	cl.deliver(r)
}

// failAll ends every request in flight with err (loop only).
func (c *Client) failAll(err error) {
	c.mu.Lock()
	calls := make([]*call, 0, len(c.calls))
	for _, cl := range c.calls {
		calls = append(calls, cl)
	}
	c.outbox = nil
	c.blocked = false
	c.mu.Unlock()
	for _, cl := range calls {
		cl.fail(err)
	}
}

// start registers a request for service and queues it for sending. body
// makes the request's body from its reference. notify, when not nil, is
// signalled with every reply instead of a channel of the request's own
// (SubmitMany shares one among its window).
//
// To a plain broker (Config.Protocol mdp1 or mdp2) the request goes in
// that protocol's form, without the meta frame body makes.
func (c *Client) start(service string, body func(ref string) [][]byte, notify chan struct{}) (*call, error) {
	c.mu.Lock()
	d := c.speak
	c.mu.Unlock()
	f := form
	if d.Plain() {
		f = protocol.Form{Version: d.Version(), Delimiter: true}
		body = withoutMeta(body)
	}
	return c.startForm(service, f, body, notify)
}

// startForm is start in form f, with body as it is.
func (c *Client) startForm(service string, f protocol.Form, body func(ref string) [][]byte, notify chan struct{}) (*call, error) {
	if notify == nil {
		notify = make(chan struct{}, 1)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.seq++
	ref := strconv.FormatUint(c.seq, 36)
	cl := &call{ref: ref, service: service, seq: c.seq, notify: notify, form: f}
	cl.frames = protocol.EncodeClient(protocol.Message{Form: f, Cmd: protocol.CmdRequest, Service: service, Body: body(ref)})
	c.calls[ref] = cl
	c.outbox = append(c.outbox, cl)
	c.wake()
	c.mu.Unlock()
	return cl, nil
}

// resend queues cl's request again (Lazy Pirate, on the same socket: the
// reference tells the answers apart, whichever comes).
func (c *Client) resend(cl *call) {
	c.mu.Lock()
	if c.closed || c.calls[cl.ref] != cl {
		c.mu.Unlock()
		return
	}
	c.outbox = append(c.outbox, cl)
	c.wake()
	c.mu.Unlock()
}

// finish forgets cl: its late replies are dropped as strays.
func (c *Client) finish(cl *call) {
	c.mu.Lock()
	if c.calls[cl.ref] == cl {
		delete(c.calls, cl.ref)
	}
	c.mu.Unlock()
}

// live reports whether cl is still in flight.
func (c *Client) live(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[cl.ref] == cl
}

// errNoReply is next's timeout, before the caller wraps it with context.
var errNoReply = errors.New("no reply")

// next waits for cl's next reply until deadline (zero: no deadline), ctx
// ends or the client closes.
func (c *Client) next(ctx context.Context, cl *call, deadline time.Time) (reply, error) {
	var expired <-chan time.Time
	for {
		if r, ok, err := cl.take(); ok || err != nil {
			return r, err
		}
		if expired == nil && !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return reply{}, errNoReply
			}
			t := time.NewTimer(left)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-cl.notify:
		case <-ctx.Done():
			return reply{}, ctx.Err()
		case <-c.done:
			return reply{}, ErrClosed
		case <-expired:
			if r, ok, err := cl.take(); ok || err != nil {
				return r, err
			}
			return reply{}, errNoReply
		}
	}
}

// roundTrip sends one request and waits Timeout per attempt for its final
// reply, sending it again up to retries times (PARTIAL replies are
// dropped). op names the operation in errors.
func (c *Client) roundTrip(ctx context.Context, op, service string, body func(ref string) [][]byte, retries int) (reply, error) {
	return c.roundTripWithin(ctx, op, service, body, retries, c.timeout())
}

// roundTripWithin is roundTrip with its own timeout per attempt.
func (c *Client) roundTripWithin(ctx context.Context, op, service string, body func(ref string) [][]byte, retries int, timeout time.Duration) (reply, error) {
	if err := ctx.Err(); err != nil {
		return reply{}, err
	}
	if err := c.plainAllows(ctx, op, service); err != nil {
		return reply{}, err
	}
	cl, err := c.start(service, body, nil)
	if err != nil {
		return reply{}, err
	}
	defer c.finish(cl)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		deadline := time.Now().Add(timeout)
		for {
			r, err := c.next(ctx, cl, deadline)
			if err == nil {
				if r.cmd == protocol.CmdPartial {
					continue
				}
				return r, nil
			}
			if !errors.Is(err, errNoReply) {
				return r, opError(op, service, err)
			}
			break
		}
		if attempt > retries {
			return reply{}, fmt.Errorf("%s %s: no reply within %v after %d attempt(s): %w", op, service, timeout, attempt, ErrTimeout)
		}
		c.log.Warn().Str(keyService, service).Int(keyAttempt, attempt).Dur(keyElapsed, time.Since(start)).Msg("no reply, sending again")
		c.resend(cl)
	}
}

// timeout is Config.Timeout (which tests may change).
func (c *Client) timeout() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg.Timeout
}

// opError adds the operation to a connection's failure; ctx's errors and
// ErrClosed are returned as they are.
func opError(op, service string, err error) error {
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s %s: %w", op, service, err)
}

// queryBody returns the body of a query with input after its meta frame.
func queryBody(input ...[]byte) func(ref string) [][]byte {
	return func(ref string) [][]byte { return requestBody(protocol.Meta{Ref: ref}, input...) }
}

// requestBody builds a request body: the meta frame, then the input frames.
func requestBody(meta protocol.Meta, input ...[]byte) [][]byte {
	body := make([][]byte, 0, 1+len(input))
	body = append(body, protocol.EncodeMeta(meta))
	return append(body, input...)
}

// replyMeta returns the meta frame of a zmws reply, and the frames after it.
func replyMeta(op string, r reply) (protocol.Meta, [][]byte, error) {
	if r.metaErr != nil {
		return r.meta, nil, fmt.Errorf("%s %s: %w: %w", op, r.service, ErrBadReply, r.metaErr)
	}
	if !r.hasMeta {
		return r.meta, nil, fmt.Errorf("%s %s: reply without meta frame: %w", op, r.service, ErrBadReply)
	}
	return r.meta, r.rest, nil
}
