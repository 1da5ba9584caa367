package protocol

import (
	"errors"
	"fmt"
)

// Protocol headers, frame 1 (or frame 0 without the delimiter) of every message.
const (
	HeaderClientV1 = "MDPC01" // 7/MDP client
	HeaderWorkerV1 = "MDPW01" // 7/MDP worker
	HeaderClientV2 = "MDPC02" // 18/MDP client
	HeaderWorkerV2 = "MDPW02" // 18/MDP worker
)

// Version tells 7/MDP (V1, "MDP/0.1") from 18/MDP (V2, "MDP/0.2").
type Version uint8

// Versions. The zero value is invalid so a Form always says which one.
const (
	V1 Version = 1
	V2 Version = 2
)

func (v Version) String() string {
	switch v {
	case V1:
		return "0.1"
	case V2:
		return "0.2"
	}
	return fmt.Sprintf("Version(%d)", uint8(v))
}

// Form is how a peer spoke: which version, and whether its message began with
// the empty delimiter frame (REQ sockets and 7/MDP peers send it; DEALER
// peers of 18/MDP usually do not). Replies go out in the form the peer used.
type Form struct {
	Version   Version
	Delimiter bool
}

// Command is the kind of a message, independent of its wire byte, which
// differs between versions (see the wire tables below).
type Command uint8

// Commands. These values are internal; wire bytes come from the tables.
const (
	CmdRequest    Command = 1 // client → broker → worker
	CmdReply      Command = 2 // worker → broker → client: the final reply (7/MDP REPLY, 18/MDP FINAL)
	CmdPartial    Command = 3 // worker → broker → client (18/MDP only)
	CmdReady      Command = 4 // worker → broker
	CmdHeartbeat  Command = 5 // both ways between worker and broker
	CmdDisconnect Command = 6 // both ways between worker and broker
)

func (c Command) String() string {
	switch c {
	case CmdRequest:
		return "REQUEST"
	case CmdReply:
		return "REPLY"
	case CmdPartial:
		return "PARTIAL"
	case CmdReady:
		return "READY"
	case CmdHeartbeat:
		return "HEARTBEAT"
	case CmdDisconnect:
		return "DISCONNECT"
	}
	return fmt.Sprintf("Command(%d)", uint8(c))
}

// Wire command bytes. They are fixed by the specs and never renumbered.
const (
	// 7/MDP worker commands.
	wireW1Ready      byte = 0x01
	wireW1Request    byte = 0x02
	wireW1Reply      byte = 0x03
	wireW1Heartbeat  byte = 0x04
	wireW1Disconnect byte = 0x05

	// 18/MDP worker commands.
	wireW2Ready      byte = 0x01
	wireW2Request    byte = 0x02
	wireW2Partial    byte = 0x03
	wireW2Final      byte = 0x04
	wireW2Heartbeat  byte = 0x05
	wireW2Disconnect byte = 0x06

	// 18/MDP client commands (7/MDP clients have no command frame).
	wireC2Request byte = 0x01
	wireC2Partial byte = 0x02
	wireC2Final   byte = 0x03
)

// Message is one decoded MDP message, client or worker side. Which fields
// matter depends on Cmd:
//
//	client REQUEST        Service, Body
//	client PARTIAL/REPLY  Service, Body                (broker → client)
//	worker READY          Service, Body (zmws: optional meta frame)
//	worker REQUEST        Address, Body                (broker → worker)
//	worker PARTIAL/REPLY  Address, Body                (worker → broker)
//	HEARTBEAT/DISCONNECT  nothing
//
// In zmws the Address of worker REQUEST/PARTIAL/REPLY is the job ID, not a
// client's socket identity: a worker echoes it back unchanged, as the specs ask.
// Body frames alias the frames they were decoded from.
type Message struct {
	Form    Form
	Cmd     Command
	Service string
	Address []byte
	Body    [][]byte
}

// Errors returned by the decoders. They are wrapped with detail; test with errors.Is.
var (
	ErrShort      = errors.New("protocol: too few frames")
	ErrHeader     = errors.New("protocol: unknown protocol header")
	ErrCommand    = errors.New("protocol: unknown command")
	ErrDelimiter  = errors.New("protocol: missing empty frame after address")
	ErrNoService  = errors.New("protocol: empty service name")
	ErrUnexpected = errors.New("protocol: command not valid from this peer")
)

// stripDelimiter removes a leading empty frame and reports whether one was there.
func stripDelimiter(frames [][]byte) ([][]byte, bool) {
	if len(frames) > 0 && len(frames[0]) == 0 {
		return frames[1:], true
	}
	return frames, false
}

// DecodeClient decodes a message a client sent to the broker (ROUTER identity
// already removed). Only REQUEST is valid from a client. On ErrNoService the
// returned message still carries the client's Form and Body, so it can be
// answered in kind.
func DecodeClient(frames [][]byte) (Message, error) {
	f, delim := stripDelimiter(frames)
	if len(f) < 2 {
		return Message{}, fmt.Errorf("client message of %d frames: %w", len(frames), ErrShort)
	}
	m := Message{Form: Form{Delimiter: delim}, Cmd: CmdRequest}
	switch string(f[0]) {
	case HeaderClientV1:
		m.Form.Version = V1
		f = f[1:]
	case HeaderClientV2:
		m.Form.Version = V2
		if len(f) < 3 {
			return Message{}, fmt.Errorf("client message of %d frames: %w", len(frames), ErrShort)
		}
		if len(f[1]) != 1 {
			return Message{}, fmt.Errorf("client command frame of %d bytes: %w", len(f[1]), ErrCommand)
		}
		switch f[1][0] {
		case wireC2Request:
		case wireC2Partial, wireC2Final:
			return Message{}, fmt.Errorf("client sent command 0x%02x: %w", f[1][0], ErrUnexpected)
		default:
			return Message{}, fmt.Errorf("client command 0x%02x: %w", f[1][0], ErrCommand)
		}
		f = f[2:]
	default:
		return Message{}, fmt.Errorf("client header %q: %w", clip(f[0]), ErrHeader)
	}
	if len(f[0]) == 0 {
		// The form and body are known: return them so the broker can
		// answer in the client's form (meta frame or not).
		m.Body = f[1:]
		return m, ErrNoService
	}
	m.Service = string(f[0])
	m.Body = f[1:]
	return m, nil
}

// EncodeClient encodes a client-side message in form m.Form: a client's
// REQUEST (CmdRequest), or a broker's PARTIAL or final reply (CmdPartial,
// CmdReply). 7/MDP has no PARTIAL: the broker never sends one to a 7/MDP
// client, and EncodeClient would write it as a plain reply.
func EncodeClient(m Message) [][]byte {
	out := make([][]byte, 0, 4+len(m.Body))
	if m.Form.Delimiter {
		out = append(out, []byte{})
	}
	switch m.Form.Version {
	case V2:
		cmd := wireC2Final
		switch m.Cmd {
		case CmdPartial:
			cmd = wireC2Partial
		case CmdRequest:
			cmd = wireC2Request
		}
		out = append(out, []byte(HeaderClientV2), []byte{cmd})
	default:
		out = append(out, []byte(HeaderClientV1))
	}
	out = append(out, []byte(m.Service))
	return append(out, m.Body...)
}

// DecodeWorker decodes a message a worker sent to the broker, or one the
// broker sent to a worker (the codec is symmetric; the broker checks that the
// command is valid from the sender).
func DecodeWorker(frames [][]byte) (Message, error) {
	f, delim := stripDelimiter(frames)
	if len(f) < 2 {
		return Message{}, fmt.Errorf("worker message of %d frames: %w", len(frames), ErrShort)
	}
	m := Message{Form: Form{Delimiter: delim}}
	if h := string(f[0]); h != HeaderWorkerV1 && h != HeaderWorkerV2 {
		return Message{}, fmt.Errorf("worker header %q: %w", clip(f[0]), ErrHeader)
	}
	if len(f[1]) != 1 {
		return Message{}, fmt.Errorf("worker command frame of %d bytes: %w", len(f[1]), ErrCommand)
	}
	b := f[1][0]
	switch string(f[0]) {
	case HeaderWorkerV1:
		m.Form.Version = V1
		switch b {
		case wireW1Ready:
			m.Cmd = CmdReady
		case wireW1Request:
			m.Cmd = CmdRequest
		case wireW1Reply:
			m.Cmd = CmdReply
		case wireW1Heartbeat:
			m.Cmd = CmdHeartbeat
		case wireW1Disconnect:
			m.Cmd = CmdDisconnect
		default:
			return Message{}, fmt.Errorf("worker command 0x%02x: %w", b, ErrCommand)
		}
	case HeaderWorkerV2:
		m.Form.Version = V2
		switch b {
		case wireW2Ready:
			m.Cmd = CmdReady
		case wireW2Request:
			m.Cmd = CmdRequest
		case wireW2Partial:
			m.Cmd = CmdPartial
		case wireW2Final:
			m.Cmd = CmdReply
		case wireW2Heartbeat:
			m.Cmd = CmdHeartbeat
		case wireW2Disconnect:
			m.Cmd = CmdDisconnect
		default:
			return Message{}, fmt.Errorf("worker command 0x%02x: %w", b, ErrCommand)
		}
	default:
		return Message{}, fmt.Errorf("worker header %q: %w", clip(f[0]), ErrHeader)
	}
	f = f[2:]
	switch m.Cmd {
	case CmdReady:
		if len(f) < 1 {
			return Message{}, fmt.Errorf("READY without service: %w", ErrShort)
		}
		if len(f[0]) == 0 {
			return Message{}, ErrNoService
		}
		m.Service = string(f[0])
		m.Body = f[1:]
	case CmdRequest, CmdReply, CmdPartial:
		if len(f) < 2 {
			return Message{}, fmt.Errorf("%s of %d frames: %w", m.Cmd, len(frames), ErrShort)
		}
		if len(f[1]) != 0 {
			return Message{}, fmt.Errorf("%s: %w", m.Cmd, ErrDelimiter)
		}
		m.Address = f[0]
		m.Body = f[2:]
	case CmdDisconnect:
		// Trailing frames are a reason (zmws: a meta frame), kept in Body.
		m.Body = f
	case CmdHeartbeat:
		// Trailing frames are tolerated and ignored.
	}
	return m, nil
}

// EncodeWorker encodes a worker-side message in the given form.
func EncodeWorker(m Message) [][]byte {
	out := make([][]byte, 0, 5+len(m.Body))
	if m.Form.Delimiter {
		out = append(out, []byte{})
	}
	var b byte
	if m.Form.Version == V2 {
		out = append(out, []byte(HeaderWorkerV2))
		switch m.Cmd {
		case CmdReady:
			b = wireW2Ready
		case CmdRequest:
			b = wireW2Request
		case CmdPartial:
			b = wireW2Partial
		case CmdReply:
			b = wireW2Final
		case CmdHeartbeat:
			b = wireW2Heartbeat
		case CmdDisconnect:
			b = wireW2Disconnect
		}
	} else {
		out = append(out, []byte(HeaderWorkerV1))
		switch m.Cmd {
		case CmdReady:
			b = wireW1Ready
		case CmdRequest:
			b = wireW1Request
		case CmdReply, CmdPartial:
			b = wireW1Reply
		case CmdHeartbeat:
			b = wireW1Heartbeat
		case CmdDisconnect:
			b = wireW1Disconnect
		}
	}
	out = append(out, cmdFrames[b])
	switch m.Cmd {
	case CmdReady:
		out = append(out, []byte(m.Service))
		out = append(out, m.Body...)
	case CmdRequest, CmdReply, CmdPartial:
		out = append(out, m.Address, []byte{})
		out = append(out, m.Body...)
	case CmdDisconnect:
		out = append(out, m.Body...)
	}
	return out
}

// cmdFrames holds one shared frame per command byte so encoding does not
// allocate them. Callers must not modify encoded frames.
var cmdFrames = func() (t [8][]byte) {
	for i := range t {
		t[i] = []byte{byte(i)}
	}
	return t
}()

// clip shortens a frame for an error message.
func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// DecodeReply decodes a broker → client message (PARTIAL or final reply), as
// a client library receives it. A 7/MDP reply is always final.
func DecodeReply(frames [][]byte) (Message, error) {
	f, delim := stripDelimiter(frames)
	if len(f) < 2 {
		return Message{}, fmt.Errorf("reply of %d frames: %w", len(frames), ErrShort)
	}
	m := Message{Form: Form{Delimiter: delim}, Cmd: CmdReply}
	switch string(f[0]) {
	case HeaderClientV1:
		m.Form.Version = V1
		f = f[1:]
	case HeaderClientV2:
		m.Form.Version = V2
		if len(f) < 3 {
			return Message{}, fmt.Errorf("reply of %d frames: %w", len(frames), ErrShort)
		}
		if len(f[1]) != 1 {
			return Message{}, fmt.Errorf("reply command frame of %d bytes: %w", len(f[1]), ErrCommand)
		}
		switch f[1][0] {
		case wireC2Partial:
			m.Cmd = CmdPartial
		case wireC2Final:
		default:
			return Message{}, fmt.Errorf("reply command 0x%02x: %w", f[1][0], ErrCommand)
		}
		f = f[2:]
	default:
		return Message{}, fmt.Errorf("reply header %q: %w", clip(f[0]), ErrHeader)
	}
	m.Service = string(f[0])
	m.Body = f[1:]
	return m, nil
}

// Peer names the socket an Envelope goes out on.
type Peer uint8

// Peers.
const (
	ToClient Peer = 1 // client ROUTER; To is the client's identity
	ToWorker Peer = 2 // worker ROUTER; To is the worker's identity
	ToEvents Peer = 3 // events PUB; To is the topic (event name)
)

// Envelope is one message to send: encoded frames for the peer To on socket
// Peer. The server prepends To as the ROUTER routing frame (or PUB topic).
type Envelope struct {
	Peer   Peer
	To     string
	Frames [][]byte
	// Job is set on a REQUEST to a worker: the ID of the job it dispatches.
	// When the loop cannot send it, it tells the broker (see
	// broker.Broker.Unreachable): the job never reached the worker.
	Job string
}
