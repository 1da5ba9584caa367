package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/protocol"
)

// Defaults for the zero values of Config.
const (
	DefaultBroker  = "tcp://127.0.0.1:5555"
	DefaultTimeout = 5 * time.Second
	DefaultRetries = 3
)

// pollSlice caps each wait on the socket, so that a cancelled ctx or a Close
// is noticed within this long even while no reply comes.
const pollSlice = 50 * time.Millisecond

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
	// for the reply before giving up on the socket (DefaultTimeout). Call
	// is not bounded by it; bound Call with its ctx.
	Timeout time.Duration
	// Retries is how many times a query (or a Submit with a Key) is sent
	// again after a timeout, each time on a fresh socket (DefaultRetries;
	// negative means never).
	Retries int
	// Curve, when set, speaks CURVE to the broker: its public key
	// authenticates the broker, and the client's own key pair must be one
	// the broker authorizes (curve.LoadClient reads both from files). A
	// handshake the broker refuses ends a request at once with an error
	// matching curve.ErrRefused (or curve.ErrHandshake). nil: no security.
	Curve *curve.Client
	// Logger receives the client's logs (default: none).
	Logger zerolog.Logger
}

// Client talks to one broker. Its methods are safe for concurrent use and
// run one request at a time (see the package doc).
type Client struct {
	cfg  Config
	log  zerolog.Logger
	turn chan struct{} // holds a token while a request is in flight
	done chan struct{} // closed by Close
	once sync.Once

	// Owned by whoever holds turn.
	sock   *zmq.Socket // nil after an abandoned request, until the next one
	poller *zmq.Poller
	watch  *curve.Watch // sock's handshakes, with Config.Curve
	closed bool
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
	c := &Client{
		cfg:  cfg,
		log:  cfg.Logger.With().Str("component", "client").Str(keyEndpoint, cfg.Broker).Logger(),
		turn: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	if err := c.open(); err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes the client's socket, discarding anything unsent. A request in
// flight returns ErrClosed (within a few tens of milliseconds); later ones
// too. Close must not be called from an onPartial callback.
func (c *Client) Close() error {
	first := false
	c.once.Do(func() { close(c.done); first = true })
	if !first {
		return nil
	}
	c.turn <- struct{}{}
	defer func() { <-c.turn }()
	c.closed = true
	return c.drop()
}

// acquire waits for the client's turn; release gives it back.
func (c *Client) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-c.done:
		return ErrClosed
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.closed {
		c.release()
		return ErrClosed
	}
	return nil
}

func (c *Client) release() { <-c.turn }

// open makes a fresh DEALER socket connected to the broker. The broker's
// ROUTER gives each new socket a new identity.
func (c *Client) open() error {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return fmt.Errorf("client: new socket: %w", err)
	}
	if err := s.SetLinger(0); err != nil {
		s.Close()
		return fmt.Errorf("client: set linger: %w", err)
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
	c.sock, c.watch = s, w
	c.poller = zmq.NewPoller()
	c.poller.Add(s, zmq.POLLIN)
	return nil
}

// drop closes the socket (linger 0); the next request opens a fresh one.
func (c *Client) drop() error {
	if c.sock == nil {
		return nil
	}
	c.watch.Close() // before the socket: see curve.Watch
	err := c.sock.Close()
	c.sock, c.poller, c.watch = nil, nil, nil
	if err != nil {
		return fmt.Errorf("client: close socket: %w", err)
	}
	return nil
}

// errNoReply is exchange's timeout, before request wraps it with context.
var errNoReply = errors.New("no reply")

// exchange sends one request to service and reads replies until the final
// one for it, passing the bodies of PARTIAL replies to partial (which may be
// nil: they are then dropped). A zero deadline waits as long as ctx allows.
// The caller holds the turn.
//
// On any error the request is abandoned and the socket dropped, so that its
// late replies can never be read as answers to a later request. Replies for
// another service (left over from an earlier request) are dropped.
func (c *Client) exchange(ctx context.Context, service string, body [][]byte, deadline time.Time, partial func([][]byte) error) (m protocol.Message, err error) {
	defer func() {
		if err != nil {
			c.drop()
		}
	}()
	if c.sock == nil {
		if err := c.open(); err != nil {
			return m, err
		}
	}
	frames := protocol.EncodeClient(protocol.Message{Form: form, Cmd: protocol.CmdRequest, Service: service, Body: body})
	// The socket connects with ZMQ_IMMEDIATE off, so a pipe exists and this
	// queues even while the broker is away; DONTWAIT keeps ctx in charge.
	if _, err := c.sock.SendMessageDontwait(frames); err != nil {
		return m, fmt.Errorf("client: send %s: %w", service, err)
	}
	c.log.Debug().Str(keyService, service).Int("frames", len(body)).Msg("request sent")
	for {
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-c.done:
			return m, ErrClosed
		default:
		}
		wait := pollSlice
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return m, errNoReply
			}
			wait = min(wait, left)
		}
		polled, err := c.poller.Poll(wait)
		if err != nil {
			return m, fmt.Errorf("client: poll: %w", err)
		}
		if len(polled) == 0 {
			if err := c.watch.Err(); err != nil {
				return m, fmt.Errorf("%s: %w", service, err)
			}
			continue
		}
		msg, err := c.sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			return m, fmt.Errorf("client: receive: %w", err)
		}
		r, err := protocol.DecodeReply(msg)
		if err != nil {
			c.log.Warn().Err(err).Str(keyService, service).Msg("malformed reply dropped")
			continue
		}
		if r.Service != service {
			c.log.Debug().Str(keyService, r.Service).Str("want", service).Stringer("cmd", r.Cmd).Msg("stray reply dropped")
			continue
		}
		if r.Cmd == protocol.CmdPartial {
			c.log.Debug().Str(keyService, service).Int("frames", len(r.Body)).Msg("partial reply")
			if partial == nil {
				continue
			}
			if err := partial(r.Body); err != nil {
				return m, err
			}
			continue
		}
		c.log.Debug().Str(keyService, service).Int("frames", len(r.Body)).Msg("final reply")
		return r, nil
	}
}

// request runs a request that waits Timeout per attempt and is sent again on
// a fresh socket up to retries times (Lazy Pirate). op names the operation
// in errors.
func (c *Client) request(ctx context.Context, op, service string, body [][]byte, retries int) (protocol.Message, error) {
	if err := c.acquire(ctx); err != nil {
		return protocol.Message{}, err
	}
	defer c.release()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		m, err := c.exchange(ctx, service, body, time.Now().Add(c.cfg.Timeout), nil)
		if !errors.Is(err, errNoReply) {
			return m, err
		}
		if attempt > retries {
			return m, fmt.Errorf("%s %s: no reply within %v after %d attempt(s): %w", op, service, c.cfg.Timeout, attempt, ErrTimeout)
		}
		c.log.Warn().Str(keyService, service).Int(keyAttempt, attempt).Dur(keyElapsed, time.Since(start)).Msg("no reply, retrying on a fresh socket")
	}
}

// requestBody builds a request body: the meta frame, then the input frames.
func requestBody(meta protocol.Meta, input ...[]byte) [][]byte {
	body := make([][]byte, 0, 1+len(input))
	body = append(body, protocol.EncodeMeta(meta))
	return append(body, input...)
}

// replyMeta splits the meta frame off a zmws reply.
func replyMeta(op string, m protocol.Message) (protocol.Meta, [][]byte, error) {
	meta, rest, ok, err := protocol.SplitMeta(m.Body)
	if err != nil {
		return meta, nil, fmt.Errorf("%s %s: %w: %w", op, m.Service, ErrBadReply, err)
	}
	if !ok {
		return meta, nil, fmt.Errorf("%s %s: reply without meta frame: %w", op, m.Service, ErrBadReply)
	}
	return meta, rest, nil
}
