package server

import (
	"strings"
	"syscall"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/protocol"
)

// The events sockets are XPUBs: the loop reads their subscriptions, so the
// broker builds no event nobody subscribes to (broker.Config.Subscribed).
// Without ZMQ_XPUB_VERBOSE libzmq passes on the first subscription to a
// topic and its cancellation when its last subscriber leaves, disconnects
// included: one set of topics per socket mirrors what it would deliver.

// topics is the set of prefixes an events socket's subscribers want.
type topics map[string]struct{}

// match reports whether a subscriber wants topic: one of its prefixes is.
func (t topics) match(topic string) bool {
	for p := range t {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return false
}

// subscriptions reads the (un)subscriptions waiting on sock (nil: none)
// into t, without blocking: \x01topic subscribes, \x00topic cancels. Other
// messages (an XSUB peer may send any) are dropped.
func (s *Server) subscriptions(sock *zmq.Socket, t topics) {
	if sock == nil {
		return
	}
	for range maxDrain {
		msg, err := sock.RecvBytes(zmq.DONTWAIT)
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				s.log.Error().Err(err).Msg("receive subscription")
			}
			return
		}
		if len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case 1:
			t[string(msg[1:])] = struct{}{}
		case 0:
			delete(t, string(msg[1:]))
		}
	}
}

// subscribed reports whether any events socket has a subscriber for topic.
func (s *Server) subscribed(topic string) bool {
	return (s.events != nil && s.eventsTopics.match(topic)) || (s.netEvents != nil && s.netTopics.match(topic))
}

// publish sends event e on sock (nil: none) if its subscribers want it.
func (s *Server) publish(sock *zmq.Socket, t topics, e protocol.Envelope) {
	if sock == nil || !t.match(e.To) {
		return
	}
	if err := s.sendFrames(sock, e.To, e.Frames); err != nil {
		s.log.Debug().Err(err).Msg("event dropped")
	}
}
