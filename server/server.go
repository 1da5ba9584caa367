package server

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
)

// Config holds the server's endpoints and limits.
type Config struct {
	// ClientBind is where clients connect (ROUTER). Required.
	ClientBind string
	// WorkerBind is where workers connect (ROUTER). Required.
	WorkerBind string
	// EventsBind is where lifecycle events are published (PUB). Empty: none.
	EventsBind string
	// ClientInproc and EventsInproc, when set, bind the client and events
	// sockets to these inproc:// endpoints as well, for in-process clients
	// such as the HTTP gateway (no network hop). EventsInproc turns events
	// on even when EventsBind is empty.
	ClientInproc string
	EventsInproc string
	// Broker configures the state machine. Events is set from EventsBind.
	Broker broker.Config
	// MaxMsgSize is ZMQ_MAXMSGSIZE on both ROUTER sockets: a peer that sends
	// a bigger frame is disconnected by libzmq (default 16 MiB; -1 none).
	MaxMsgSize int64
	// Linger bounds how long unsent messages are kept at shutdown (default 1 s).
	Linger time.Duration
	// Logger receives the server's and the broker's logs. Default: none.
	Logger zerolog.Logger
}

// Defaults.
const (
	DefaultMaxMsgSize = 16 << 20
	DefaultLinger     = time.Second
	// maxPoll caps a poll so a cancelled context is seen promptly.
	maxPoll = 100 * time.Millisecond
	// maxDrain bounds the messages read from one socket in one turn, so one
	// busy socket cannot starve the other or the heartbeats.
	maxDrain = 256
)

// Server runs a broker.Broker over ZeroMQ sockets. One goroutine (Run's)
// owns the sockets and the broker after New returns.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	b       *broker.Broker
	clients *zmq.Socket
	workers *zmq.Socket
	events  *zmq.Socket
	eps     [3]string
}

// New creates the sockets and binds them, so the endpoints (with the ports
// the system chose for tcp://...:*) are known before Run.
func New(cfg Config) (*Server, error) {
	if cfg.ClientBind == "" || cfg.WorkerBind == "" {
		return nil, errors.New("server: client and worker endpoints are required")
	}
	if cfg.MaxMsgSize == 0 {
		cfg.MaxMsgSize = DefaultMaxMsgSize
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	cfg.Broker.Events = cfg.EventsBind != "" || cfg.EventsInproc != ""
	cfg.Broker.Logger = cfg.Logger
	s := &Server{cfg: cfg, log: cfg.Logger.With().Str("component", "server").Logger()}
	var err error
	if s.clients, s.eps[0], err = s.router(cfg.ClientBind, "client"); err != nil {
		s.close(0)
		return nil, err
	}
	if s.workers, s.eps[1], err = s.router(cfg.WorkerBind, "worker"); err != nil {
		s.close(0)
		return nil, err
	}
	if cfg.ClientInproc != "" {
		if err = s.clients.Bind(cfg.ClientInproc); err != nil {
			s.close(0)
			return nil, fmt.Errorf("server: bind client endpoint %s: %w", cfg.ClientInproc, err)
		}
	}
	if cfg.Broker.Events {
		if s.events, err = zmq.NewSocket(zmq.PUB); err != nil {
			s.close(0)
			return nil, fmt.Errorf("server: events socket: %w", err)
		}
		s.events.SetLinger(0)
		s.events.SetSndhwm(100_000)
		for _, ep := range []string{cfg.EventsBind, cfg.EventsInproc} {
			if ep == "" {
				continue
			}
			if err = s.events.Bind(ep); err != nil {
				s.close(0)
				return nil, fmt.Errorf("server: bind events endpoint %s: %w", ep, err)
			}
			if ep == cfg.EventsBind {
				s.eps[2], _ = s.events.GetLastEndpoint()
			}
		}
	}
	s.b = broker.New(cfg.Broker)
	return s, nil
}

func (s *Server) router(endpoint, role string) (*zmq.Socket, string, error) {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return nil, "", fmt.Errorf("server: %s socket: %w", role, err)
	}
	for _, set := range []func() error{
		func() error { return sock.SetLinger(0) },
		func() error { return sock.SetMaxmsgsize(s.cfg.MaxMsgSize) },
		// Unroutable sends fail instead of vanishing: a worker that is
		// gone is noticed at once, a client that is gone is logged.
		func() error { return sock.SetRouterMandatory(1) },
		func() error { return sock.SetSndhwm(100_000) },
		func() error { return sock.SetRcvhwm(100_000) },
	} {
		if err := set(); err != nil {
			sock.Close()
			return nil, "", fmt.Errorf("server: %s socket option: %w", role, err)
		}
	}
	if err := sock.Bind(endpoint); err != nil {
		sock.Close()
		return nil, "", fmt.Errorf("server: bind %s endpoint %s: %w", role, endpoint, err)
	}
	ep, err := sock.GetLastEndpoint()
	if err != nil {
		ep = endpoint
	}
	s.log.Info().Str(logging.KeyEndpoint, ep).Str("role", role).Msg("listening")
	return sock, ep, nil
}

// ClientEndpoint is the bound client endpoint (with the chosen port).
func (s *Server) ClientEndpoint() string { return s.eps[0] }

// WorkerEndpoint is the bound worker endpoint.
func (s *Server) WorkerEndpoint() string { return s.eps[1] }

// EventsEndpoint is the bound events endpoint, or "" when disabled.
func (s *Server) EventsEndpoint() string { return s.eps[2] }

// Run serves until ctx is cancelled, then tells workers DISCONNECT, waits at
// most Config.Linger for queued messages to leave, and closes the sockets.
// It returns nil on a clean stop.
func (s *Server) Run(ctx context.Context) error {
	poller := zmq.NewPoller()
	poller.Add(s.clients, zmq.POLLIN)
	poller.Add(s.workers, zmq.POLLIN)
	defer func() {
		s.send(s.b.Shutdown(time.Now()))
		s.close(s.cfg.Linger)
		s.log.Info().Msg("stopped")
	}()
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		wait := maxPoll
		if d := s.b.Deadline(); !d.IsZero() {
			if until := d.Sub(now); until < wait {
				wait = max(until, 0)
			}
		}
		polled, err := poller.Poll(wait)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if zmq.AsErrno(err) == zmq.ETERM {
				return nil
			}
			return fmt.Errorf("server: poll: %w", err)
		}
		for _, p := range polled {
			if p.Socket == s.clients {
				s.drain(s.clients, s.b.HandleClient)
			} else {
				s.drain(s.workers, s.b.HandleWorker)
			}
		}
		if now = time.Now(); !now.Before(s.b.Deadline()) {
			s.send(s.b.Tick(now))
		}
	}
}

// drain reads up to maxDrain ready messages from sock, feeding each to
// handle and sending what it returns before reading the next.
func (s *Server) drain(sock *zmq.Socket, handle func(time.Time, string, [][]byte) []protocol.Envelope) {
	for range maxDrain {
		msg, err := sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				s.log.Error().Err(err).Msg("receive")
			}
			return
		}
		if len(msg) < 1 {
			continue
		}
		s.send(handle(time.Now(), string(msg[0]), msg[1:]))
	}
}

// send puts envelopes on their sockets without blocking. A worker that
// cannot be reached (gone, or its queue full) is reported to the broker,
// which requeues its job; an unreachable client is logged.
func (s *Server) send(envs []protocol.Envelope) {
	for len(envs) > 0 {
		var gone []string
		for _, e := range envs {
			var err error
			switch e.Peer {
			case protocol.ToClient:
				err = sendFrames(s.clients, e.To, e.Frames)
				if err != nil {
					s.log.Debug().Err(err).Str(logging.KeyClient, fmt.Sprintf("%x", e.To)).Msg("reply not delivered: client gone")
				}
			case protocol.ToWorker:
				if err = sendFrames(s.workers, e.To, e.Frames); err != nil {
					gone = append(gone, e.To)
				}
			case protocol.ToEvents:
				if s.events != nil {
					if err = sendFrames(s.events, e.To, e.Frames); err != nil {
						s.log.Debug().Err(err).Msg("event dropped")
					}
				}
			}
		}
		envs = nil
		// The broker reuses its output buffer: ask it only now, once the
		// previous envelopes are out.
		now := time.Now()
		for _, id := range gone {
			s.log.Warn().Str(logging.KeyWorker, fmt.Sprintf("%x", id)).Msg("worker unreachable")
			envs = append(envs[:len(envs):len(envs)], s.b.Unreachable(now, id)...)
		}
	}
}

// sendFrames sends [to, frames...] as one message without blocking.
func sendFrames(sock *zmq.Socket, to string, frames [][]byte) error {
	flag := zmq.SNDMORE | zmq.DONTWAIT
	if len(frames) == 0 {
		flag = zmq.DONTWAIT
	}
	if _, err := sock.Send(to, flag); err != nil {
		return err
	}
	for i, f := range frames {
		flag := zmq.SNDMORE | zmq.DONTWAIT
		if i == len(frames)-1 {
			flag = zmq.DONTWAIT
		}
		if _, err := sock.SendBytes(f, flag); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) close(linger time.Duration) {
	for _, sock := range []*zmq.Socket{s.clients, s.workers, s.events} {
		if sock != nil {
			sock.SetLinger(linger)
			sock.Close()
		}
	}
}
