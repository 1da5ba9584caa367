package server

import (
	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqmsg"
)

// received is one message as recv read it.
type received struct {
	// msg is the routing id and the frames after it; for an oversize
	// message, only the frames read before a bound was passed.
	msg  [][]byte
	user string // the User-Id its peer's handshake set (with CURVE)
	peer string // its peer's IP address over TCP, when asked for
	// over is set when the message had more frames than Config.MaxFrames
	// or more bytes than Config.MaxBytes (after the routing id); frames
	// and size are then the whole message's.
	over   bool
	frames int
	size   int64
}

// recv reads one message without blocking, in one cgo call (zmqmsg), with
// the User-Id its peer's handshake set and its peer's address as props
// asks. Past Config.MaxFrames
// or Config.MaxBytes it keeps no more frames but reads the rest, so libzmq
// frees each as it goes and the Go heap holds at most the bounds.
//
// The User-Id is read from the first frame after the routing id: libzmq 4.3
// leaves the routing id frame of a message that a poll prefetched without
// properties.
func (s *Server) recv(sock *zmq.Socket, props zmqmsg.Props) (received, error) {
	m, err := s.rx.Recv(sock, zmq.DONTWAIT, 1, zmqmsg.Bounds{Frames: s.cfg.MaxFrames, Bytes: s.cfg.MaxBytes}, props)
	if err != nil {
		return received{}, err
	}
	return received{msg: m.Frames, user: m.User, peer: m.Peer, over: m.Over, frames: m.Count, size: m.Size}, nil
}

// oversize is what the broker is told of an oversize message.
func (r received) oversize() broker.Oversize {
	return broker.Oversize{Head: r.msg[1:], Frames: r.frames, Bytes: r.size}
}
