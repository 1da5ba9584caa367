package broker

import (
	"fmt"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Oversize is a message a peer sent that the server would not take whole:
// more frames or bytes than its bounds (server.Config.MaxFrames and
// MaxBytes). Head is the first frames (after the routing id), kept within
// the bounds, enough to tell the protocol and whom to answer; Frames and
// Bytes are the whole message's.
type Oversize struct {
	Head   [][]byte
	Frames int
	Bytes  int64
}

func (o Oversize) String() string {
	return fmt.Sprintf("message too large: %d frames, %d bytes", o.Frames, o.Bytes)
}

// ClientOversize answers a client message the server dropped for its size:
// a request whose header and service it can read is refused with
// protocol.CodeBadRequest, anything else is dropped. Either is logged
// (rate-limited).
func (b *Broker) ClientOversize(now time.Time, from, user string, o Oversize) []protocol.Envelope {
	b.out = b.out[:0]
	b.at = now
	b.checkAccess(now)
	b.peerWarn("oversize client message", from).Str(keyClient, hexID(from)).Int("frames", o.Frames).Int64("bytes", o.Bytes).
		Msg("oversize client message dropped")
	m, err := protocol.DecodeClient(o.Head)
	if err != nil || m.Service == "" {
		return b.out
	}
	r := request{client: from, user: user, form: m.Form, service: m.Service, meta: len(m.Body) > 0 && protocol.IsMeta(m.Body[0])}
	b.refuse(r, protocol.CodeBadRequest, o.String())
	return b.out
}

// WorkerOversize answers a worker message the server dropped for its size
// as it does a malformed one whose header it can read: the worker is
// dropped (a job it held is queued again, or fails when its attempts are
// spent) and told DISCONNECT. A message under another key than the worker's drops the
// worker as any such message does.
func (b *Broker) WorkerOversize(now time.Time, from, user string, o Oversize) []protocol.Envelope {
	b.out = b.out[:0]
	b.at = now
	w := b.workers[from]
	if b.checkAccess(now); w != nil && b.workers[from] == nil {
		return b.out // dropped by the new keys: already told why
	}
	form, ok := workerForm(o.Head)
	ev := b.peerWarn("oversize worker message", from).Str(keyWorker, hexID(from)).Int("frames", o.Frames).Int64("bytes", o.Bytes)
	if !ok {
		ev.Msg("oversize worker message: dropped")
		return b.out
	}
	if w != nil && b.cfg.Access != nil && !b.sameKey(now, w, user, form) {
		return b.out
	}
	ev.Msg("oversize worker message: disconnecting")
	if w != nil {
		b.dropWorker(now, w, "sent a message past the size bounds", protocol.GoneProtocolError)
	}
	b.disconnect(from, form)
	return b.out
}
