package server

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/logging"
)

// The server's part in CURVE (Config.Curve): the start-up probe, the
// User-Id of each message, the check of every worker when a worker
// connection closes, and the events socket made anew after a key reload.

// maxSubscription bounds a frame from an events subscriber (ZMQ_MAXMSGSIZE).
const maxSubscription = 64 << 10

// pub makes an events socket, a CURVE server when secure: an XPUB, whose
// subscriptions the loop reads (see subscriptions).
func (s *Server) pub(secure bool) (*zmq.Socket, error) {
	sock, err := zmq.NewSocket(zmq.XPUB)
	if err != nil {
		return nil, fmt.Errorf("server: events socket: %w", err)
	}
	sock.SetLinger(0)
	sock.SetSndhwm(100_000)
	// Subscribers send subscriptions, a few bytes each: a bigger frame is a
	// peer's attack on the broker's memory, whatever MaxMsgSize allows jobs.
	limit := int64(maxSubscription)
	if s.cfg.MaxMsgSize > 0 {
		limit = min(limit, s.cfg.MaxMsgSize)
	}
	if err := sock.SetMaxmsgsize(limit); err != nil {
		sock.Close()
		return nil, fmt.Errorf("server: events socket option: %w", err)
	}
	if secure {
		if err := curve.ApplyServer(sock, s.cfg.Curve.Key, s.eventsDomain); err != nil {
			sock.Close()
			return nil, fmt.Errorf("server: events socket: %w", err)
		}
	}
	return sock, nil
}

// probe checks that each CURVE socket bound to the network refuses a key
// no one authorized, so a ZAP handler that does not answer is a refusal to
// start, never an open door.
func (s *Server) probe() error {
	timeout := s.cfg.Curve.ProbeTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	key, err := curve.NewProbeKey()
	if err != nil {
		return err
	}
	s.zap.ExpectProbe(key.Public)
	for i, ep := range s.eps {
		if ep == "" || strings.HasPrefix(ep, "inproc://") {
			continue
		}
		typ := zmq.DEALER
		if i == 2 {
			typ = zmq.SUB
		}
		if err := curve.Probe(ep, typ, s.cfg.Curve.Key.Public, key, timeout); err != nil {
			return fmt.Errorf("server: CURVE check of %s failed, refusing to start: %w", ep, err)
		}
	}
	return nil
}

// monitorWorkers follows the worker socket's closed connections. libzmq
// routes by routing id alone, and a peer may choose its own: once a
// worker's connection is gone, a peer with another key could connect under
// its routing id and be sent its jobs. Checking every worker when a
// connection closes finds the gone one unreachable first.
func (s *Server) monitorWorkers() error {
	events := zmq.EVENT_DISCONNECTED
	if s.cfg.Metrics != nil {
		events |= zmq.EVENT_ACCEPTED // counted for zmws_broker_connections
	}
	sock, err := curve.Monitor(s.workers, "inproc://zmws-server-gone-"+rand.Text(), events)
	if err != nil {
		return fmt.Errorf("server: worker socket: %w", err)
	}
	s.gone = sock
	return nil
}

// workersGone reads the monitor's events and checks every worker.
//
// Anyone can open and close TCP connections, and libzmq reports every
// close (its monitor cannot tell a worker's from a stranger's that never
// finished a handshake), so checks are at most one per minCheckGap: a flood
// of connections costs each worker at most 1/minCheckGap heartbeats a
// second. Closes in between are caught by the check at the gap's end.
func (s *Server) workersGone() {
	closed := 0
	for range maxDrain {
		ev, _, _, err := s.gone.RecvEvent(zmq.DONTWAIT)
		if err != nil {
			break
		}
		s.loop.curveConns += connDelta(ev)
		if ev == zmq.EVENT_DISCONNECTED {
			closed++
		}
	}
	if closed == 0 {
		return
	}
	now := time.Now()
	s.log.Debug().Int("closed", closed).Msg("worker connections closed: checking every worker")
	if now.Sub(s.lastCheck) < minCheckGap {
		// The next check, a recheck's included, waits for the gap's end:
		// rechecks at 1 ms and 10 ms would otherwise make three checks
		// per gap while the closes go on.
		s.recheckIn, s.recheckAt = 0, s.lastCheck.Add(minCheckGap)
		return
	}
	s.recheckIn = 0
	s.checkWorkers(now)
}

// checkWorkers has the broker heartbeat every worker now, so one whose
// connection is gone is found unreachable, and schedules the next check.
func (s *Server) checkWorkers(now time.Time) {
	// ZMQ_EVENTS makes libzmq process the socket's pending commands, among
	// them the end of a closed connection's pipe: a send to it then fails.
	s.workers.GetEvents()
	s.send(s.b.CheckWorkers(now))
	s.lastCheck = now
	switch {
	case s.recheckIn == 0:
		s.recheckIn = firstRecheck
	case s.recheckIn < lastRecheck:
		s.recheckIn *= 10
	default:
		s.recheckAt = time.Time{}
		return
	}
	s.recheckAt = now.Add(s.recheckIn)
}

// readmitWatchers drops every subscriber of the events endpoint after the
// key set changed, by binding it anew: an XPUB socket checks no key per
// message, so a key that lost the watch right would go on receiving. The
// subscribers reconnect by themselves, through the ZAP handler and the new
// keys; events published meanwhile are not replayed (they never are).
func (s *Server) readmitWatchers(now time.Time) {
	s.netEvents.Close()    // with linger 0: its subscribers' connections end
	s.netTopics = topics{} // they subscribe again to the new socket
	sock, err := s.pub(true)
	if err != nil {
		s.netEvents, s.rebindAt = nil, time.Time{}
		s.log.Error().Err(err).Str(logging.KeyEndpoint, s.eps[2]).Msg("events: no events are published there after the key reload")
		return
	}
	s.netEvents, s.rebindAt, s.rebindTries = sock, now, 0
	s.rebindEvents(now)
}

// rebindEvents binds the events endpoint again, or schedules another try.
func (s *Server) rebindEvents(now time.Time) {
	ep := s.eps[2]
	err := s.netEvents.Bind(ep)
	if err == nil {
		s.rebindAt = time.Time{}
		s.log.Info().Str(logging.KeyEndpoint, ep).Msg("events: subscribers readmitted under the reloaded keys")
		return
	}
	if s.rebindTries++; s.rebindTries >= maxRebinds {
		s.rebindAt = time.Time{}
		s.log.Error().Err(err).Str(logging.KeyEndpoint, ep).Msg("events: cannot bind again after a key reload: no events are published there")
		return
	}
	s.rebindAt = now.Add(rebindEvery)
}

// Rechecks after a closed worker connection: the first after
// firstRecheck, each later one ten times later, none after lastRecheck;
// and never two checks within minCheckGap.
const (
	minCheckGap  = 50 * time.Millisecond
	firstRecheck = time.Millisecond
	lastRecheck  = time.Second
)

// Binding the events endpoint again after a reload is tried every
// rebindEvery, maxRebinds times.
const (
	rebindEvery = 10 * time.Millisecond
	maxRebinds  = 500
)
