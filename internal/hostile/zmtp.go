package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// ZMTP 3.0 frame flags (RFC 23).
const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

// greeting is a ZMTP 3.0 greeting for mechanism (NULL, CURVE), as a client.
func greeting(mechanism string) []byte {
	g := make([]byte, 64)
	g[0], g[9] = 0xff, 0x7f
	g[10], g[11] = 3, 0
	copy(g[12:32], mechanism)
	return g
}

// rawPeer is a ZMTP 3.0 peer of zmws's own, with the NULL mechanism: unlike a
// libzmq socket, which keeps the frames of a multipart message until its
// last one is sent, it puts each frame on the wire at once, so it can send
// a message that never ends.
type rawPeer struct {
	c    net.Conn
	hdr  [9]byte
	sent atomic.Int64 // bytes of frames written
}

// dialRaw connects to a zmq tcp:// endpoint and greets it with mechanism:
// with NULL it then says READY, as a DEALER; with CURVE it says nothing
// more (no HELLO: its frames come before any handshake). When only the
// greeting failed (the broker closed the connection), it returns the peer
// with the error.
func dialRaw(ctx context.Context, endpoint, mechanism string) (*rawPeer, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(endpoint, "tcp://"))
	if err != nil {
		return nil, err
	}
	p := &rawPeer{c: c}
	// The broker's greeting and READY are read and dropped.
	go io.Copy(io.Discard, c)
	if _, err := c.Write(greeting(mechanism)); err != nil || mechanism != "NULL" {
		return p, err
	}
	ready := []byte{5, 'R', 'E', 'A', 'D', 'Y', 11}
	ready = append(ready, "Socket-Type"...)
	ready = binary.BigEndian.AppendUint32(ready, 6)
	ready = append(ready, "DEALER"...)
	return p, p.frame(flagCommand, ready)
}

// frame writes one frame with flags (flagMore, flagCommand) and body.
func (p *rawPeer) frame(flags byte, body []byte) error {
	h := p.hdr[:2]
	if len(body) > 255 {
		h = p.hdr[:9]
		flags |= flagLong
		binary.BigEndian.PutUint64(h[1:], uint64(len(body)))
	} else {
		h[1] = byte(len(body))
	}
	h[0] = flags
	if _, err := p.c.Write(h); err != nil {
		return err
	}
	if _, err := p.c.Write(body); err != nil {
		return err
	}
	p.sent.Add(int64(len(body)))
	return nil
}

func (p *rawPeer) Close() error { return p.c.Close() }

// relay forwards TCP connections to target, and drops each frame from the
// client whose body is dropSize bytes long. Behind it a libzmq CURVE
// client that sends two-frame messages, a big frame and a final one of a
// size no other frame has, reaches the broker as one message that never
// ends: the frames' bodies are encrypted, their sizes are not, and libzmq
// takes a nonce past a gap. It runs until its process ends (see curvePeer).
type relay struct {
	ln       net.Listener
	target   string
	dropSize int64
	dropped  atomic.Int64 // frames dropped
	passed   atomic.Int64 // bytes of frames passed on from clients
}

func newRelay(target string, dropSize int64) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: strings.TrimPrefix(target, "tcp://"), dropSize: dropSize}
	go r.serve()
	return r, nil
}

// Endpoint is where the client connects instead of target.
func (r *relay) Endpoint() string { return "tcp://" + r.ln.Addr().String() }

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		go func() { io.Copy(c, s); c.Close() }()
		go func() { r.filter(s, c); s.Close() }()
	}
}

// filter copies ZMTP frames from src to dst, but those of dropSize.
func (r *relay) filter(dst io.Writer, src io.Reader) error {
	in := bufio.NewReaderSize(src, 64<<10)
	// The greeting, as it comes: libzmq sends it in parts, each after the
	// peer's.
	if _, err := io.CopyN(dst, in, 64); err != nil {
		return err
	}
	hdr := make([]byte, 9)
	for {
		if _, err := io.ReadFull(in, hdr[:1]); err != nil {
			return err
		}
		n := 2
		if hdr[0]&flagLong != 0 {
			n = 9
		}
		if _, err := io.ReadFull(in, hdr[1:n]); err != nil {
			return err
		}
		size := int64(hdr[1])
		if n == 9 {
			size = int64(binary.BigEndian.Uint64(hdr[1:9]))
		}
		if size == r.dropSize {
			r.dropped.Add(1)
			if _, err := io.CopyN(io.Discard, in, size); err != nil {
				return err
			}
			continue
		}
		if _, err := dst.Write(hdr[:n]); err != nil {
			return err
		}
		if _, err := io.CopyN(dst, in, size); err != nil {
			return err
		}
		r.passed.Add(size)
	}
}
