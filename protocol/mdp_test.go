package protocol_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/zmws/zmws/protocol"
)

var (
	v1 = protocol.Form{Version: protocol.V1}
	v2 = protocol.Form{Version: protocol.V2}
)

// fr builds frames from strings, so tables read like the specs.
func fr(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, f := range s {
		out[i] = []byte(f)
	}
	return out
}

// withDelimiter returns frames with the empty delimiter frame in front.
func withDelimiter(frames [][]byte) [][]byte {
	return append([][]byte{{}}, frames...)
}

// equalFrames reports whether a and b hold the same frames; nil and empty
// frames are equal, as they are on the wire.
func equalFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// equalMessage compares messages the way the wire sees them.
func equalMessage(a, b protocol.Message) bool {
	return a.Form == b.Form && a.Cmd == b.Cmd && a.Service == b.Service &&
		bytes.Equal(a.Address, b.Address) && equalFrames(a.Body, b.Body)
}

func fmtMessage(m protocol.Message) string {
	return fmt.Sprintf("{Form:%+v Cmd:%v Service:%q Address:%q Body:%s}",
		m.Form, m.Cmd, m.Service, m.Address, dumpInline(m.Body))
}

func dumpInline(frames [][]byte) string {
	parts := make([]string, len(frames))
	for i, f := range frames {
		parts[i] = quoteFrame(f)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// zmqID is a libzmq-generated ROUTER identity: 5 binary bytes.
const zmqID = "\x00\x80\x00\x00\x29"

var metaFrame = string(protocol.EncodeMeta(protocol.Meta{Job: "01J0000000000000000000000A", Attempt: 1}))

// codecCase is a valid message without the leading delimiter frame; each test
// runs it with and without one.
type codecCase struct {
	name   string
	frames [][]byte
	want   protocol.Message // Form.Delimiter is set by the test
}

var workerCases = []codecCase{
	// 7/MDP worker.
	{"v1 READY", fr("MDPW01", "\x01", "echo"),
		protocol.Message{Form: v1, Cmd: protocol.CmdReady, Service: "echo"}},
	{"v1 READY meta", fr("MDPW01", "\x01", "echo", metaFrame),
		protocol.Message{Form: v1, Cmd: protocol.CmdReady, Service: "echo", Body: fr(metaFrame)}},
	{"v1 REQUEST", fr("MDPW01", "\x02", zmqID, "", "hello", "world"),
		protocol.Message{Form: v1, Cmd: protocol.CmdRequest, Address: []byte(zmqID), Body: fr("hello", "world")}},
	{"v1 REQUEST empty body", fr("MDPW01", "\x02", "job1", ""),
		protocol.Message{Form: v1, Cmd: protocol.CmdRequest, Address: []byte("job1")}},
	{"v1 REQUEST empty body frame", fr("MDPW01", "\x02", "job1", "", ""),
		protocol.Message{Form: v1, Cmd: protocol.CmdRequest, Address: []byte("job1"), Body: fr("")}},
	{"v1 REPLY", fr("MDPW01", "\x03", "job1", "", "olleh"),
		protocol.Message{Form: v1, Cmd: protocol.CmdReply, Address: []byte("job1"), Body: fr("olleh")}},
	{"v1 HEARTBEAT", fr("MDPW01", "\x04"),
		protocol.Message{Form: v1, Cmd: protocol.CmdHeartbeat}},
	{"v1 DISCONNECT", fr("MDPW01", "\x05"),
		protocol.Message{Form: v1, Cmd: protocol.CmdDisconnect}},

	// 18/MDP worker.
	{"v2 READY", fr("MDPW02", "\x01", "STR-REV"),
		protocol.Message{Form: v2, Cmd: protocol.CmdReady, Service: "STR-REV"}},
	{"v2 READY meta", fr("MDPW02", "\x01", "STR-REV", metaFrame),
		protocol.Message{Form: v2, Cmd: protocol.CmdReady, Service: "STR-REV", Body: fr(metaFrame)}},
	{"v2 REQUEST", fr("MDPW02", "\x02", "job1", "", metaFrame, "hello"),
		protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Address: []byte("job1"), Body: fr(metaFrame, "hello")}},
	{"v2 REQUEST empty address", fr("MDPW02", "\x02", "", "", "hello"),
		protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Address: []byte{}, Body: fr("hello")}},
	{"v2 PARTIAL", fr("MDPW02", "\x03", zmqID, "", "chunk"),
		protocol.Message{Form: v2, Cmd: protocol.CmdPartial, Address: []byte(zmqID), Body: fr("chunk")}},
	{"v2 FINAL", fr("MDPW02", "\x04", "job1", "", "done", "more"),
		protocol.Message{Form: v2, Cmd: protocol.CmdReply, Address: []byte("job1"), Body: fr("done", "more")}},
	{"v2 FINAL empty body", fr("MDPW02", "\x04", "job1", ""),
		protocol.Message{Form: v2, Cmd: protocol.CmdReply, Address: []byte("job1")}},
	{"v2 HEARTBEAT", fr("MDPW02", "\x05"),
		protocol.Message{Form: v2, Cmd: protocol.CmdHeartbeat}},
	{"v2 DISCONNECT", fr("MDPW02", "\x06"),
		protocol.Message{Form: v2, Cmd: protocol.CmdDisconnect}},
}

// clientCases are client → broker requests (DecodeClient; EncodeClient is
// what a client library sends them with).
var clientCases = []codecCase{
	{"v1 REQUEST", fr("MDPC01", "echo", "hello"),
		protocol.Message{Form: v1, Cmd: protocol.CmdRequest, Service: "echo", Body: fr("hello")}},
	{"v1 REQUEST no body", fr("MDPC01", "SERVER-WORKERS"),
		protocol.Message{Form: v1, Cmd: protocol.CmdRequest, Service: "SERVER-WORKERS"}},
	{"v1 REQUEST meta", fr("MDPC01", "SYNC-echo", metaFrame, "a", "b"),
		protocol.Message{Form: v1, Cmd: protocol.CmdRequest, Service: "SYNC-echo", Body: fr(metaFrame, "a", "b")}},
	{"v2 REQUEST", fr("MDPC02", "\x01", "echo", "hello"),
		protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Service: "echo", Body: fr("hello")}},
	{"v2 REQUEST no body", fr("MDPC02", "\x01", "mmi.service"),
		protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Service: "mmi.service"}},
	{"v2 REQUEST empty body frames", fr("MDPC02", "\x01", "echo", "", ""),
		protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Service: "echo", Body: fr("", "")}},
}

// replyCases are broker → client messages (EncodeClient, DecodeReply).
var replyCases = []codecCase{
	{"v1 REPLY", fr("MDPC01", "echo", "olleh"),
		protocol.Message{Form: v1, Cmd: protocol.CmdReply, Service: "echo", Body: fr("olleh")}},
	{"v1 REPLY meta", fr("MDPC01", "echo", metaFrame, "olleh"),
		protocol.Message{Form: v1, Cmd: protocol.CmdReply, Service: "echo", Body: fr(metaFrame, "olleh")}},
	// The broker refuses an empty service name in the client's form, echoing
	// the (empty) service.
	{"v1 REPLY empty service", fr("MDPC01", "", "FAIL", "bad_request", "empty service name"),
		protocol.Message{Form: v1, Cmd: protocol.CmdReply, Body: fr("FAIL", "bad_request", "empty service name")}},
	{"v2 PARTIAL", fr("MDPC02", "\x02", "echo", "chunk"),
		protocol.Message{Form: v2, Cmd: protocol.CmdPartial, Service: "echo", Body: fr("chunk")}},
	{"v2 FINAL", fr("MDPC02", "\x03", "echo", metaFrame, "done"),
		protocol.Message{Form: v2, Cmd: protocol.CmdReply, Service: "echo", Body: fr(metaFrame, "done")}},
	{"v2 FINAL no body", fr("MDPC02", "\x03", "echo"),
		protocol.Message{Form: v2, Cmd: protocol.CmdReply, Service: "echo"}},
}

// runCodec checks decode and encode of each case with and without the
// delimiter: decode gives want, and encoding with the decoded Form (or want)
// reproduces the input frames exactly.
func runCodec(t *testing.T, cases []codecCase, decode func([][]byte) (protocol.Message, error), encode func(protocol.Message) [][]byte) {
	t.Helper()
	for _, tc := range cases {
		for _, delim := range []bool{false, true} {
			in, want := tc.frames, tc.want
			name := tc.name
			if delim {
				in = withDelimiter(in)
				want.Form.Delimiter = true
				name += " delimiter"
			}
			t.Run(name, func(t *testing.T) {
				got, err := decode(in)
				if err != nil {
					t.Fatalf("decode %s: %v", dumpInline(in), err)
				}
				if !equalMessage(got, want) {
					t.Fatalf("decode %s\n got %s\nwant %s", dumpInline(in), fmtMessage(got), fmtMessage(want))
				}
				if out := encode(got); !equalFrames(out, in) {
					t.Errorf("encode(decoded) = %s, want %s", dumpInline(out), dumpInline(in))
				}
				if out := encode(want); !equalFrames(out, in) {
					t.Errorf("encode(%s) = %s, want %s", fmtMessage(want), dumpInline(out), dumpInline(in))
				}
			})
		}
	}
}

func TestDecodeWorker(t *testing.T) {
	runCodec(t, workerCases, protocol.DecodeWorker, protocol.EncodeWorker)
}

func TestDecodeClient(t *testing.T) {
	runCodec(t, clientCases, protocol.DecodeClient, protocol.EncodeClient)
}

func TestDecodeReply(t *testing.T) {
	runCodec(t, replyCases, protocol.DecodeReply, protocol.EncodeClient)
}

func TestDecodeWorker_TrailingFramesOfHeartbeatIgnored(t *testing.T) {
	// Some peers send a reason after HEARTBEAT.
	for _, in := range [][][]byte{
		fr("MDPW01", "\x04", "extra"),
		fr("", "MDPW02", "\x05", "extra"),
	} {
		m, err := protocol.DecodeWorker(in)
		if err != nil {
			t.Fatalf("DecodeWorker(%s): %v", dumpInline(in), err)
		}
		if m.Service != "" || m.Address != nil || len(m.Body) != 0 {
			t.Errorf("DecodeWorker(%s) = %s, want no service, address or body", dumpInline(in), fmtMessage(m))
		}
		want := in[:2] // header, command
		if len(in[0]) == 0 {
			want = in[:3]
		}
		if out := protocol.EncodeWorker(m); !equalFrames(out, want) {
			t.Errorf("EncodeWorker(%s) = %s, want %s", fmtMessage(m), dumpInline(out), dumpInline(want))
		}
	}
}

func TestDecodeWorker_DisconnectKeepsItsReason(t *testing.T) {
	// The broker tells a refused zmws worker why in a meta frame after
	// DISCONNECT; other peers send a reason text.
	for _, in := range [][][]byte{
		fr("MDPW01", "\x05", "bye", "now"),
		fr("MDPW02", "\x06", "shutting down"),
		fr("", "MDPW02", "\x06"),
	} {
		m, err := protocol.DecodeWorker(in)
		if err != nil {
			t.Fatalf("DecodeWorker(%s): %v", dumpInline(in), err)
		}
		head := 2
		if len(in[0]) == 0 {
			head = 3
		}
		if m.Cmd != protocol.CmdDisconnect || !equalFrames(m.Body, in[head:]) {
			t.Errorf("DecodeWorker(%s) = %s, want DISCONNECT with the trailing frames as body", dumpInline(in), fmtMessage(m))
		}
		if out := protocol.EncodeWorker(m); !equalFrames(out, in) {
			t.Errorf("EncodeWorker(%s) = %s, want %s", fmtMessage(m), dumpInline(out), dumpInline(in))
		}
	}
}

func TestDecodeWorker_BodyAliasesFrames(t *testing.T) {
	in := fr("MDPW02", "\x02", "job1", "", "hello")
	m, err := protocol.DecodeWorker(in)
	if err != nil {
		t.Fatal(err)
	}
	if &m.Address[0] != &in[2][0] || &m.Body[0][0] != &in[4][0] {
		t.Error("Address and Body do not alias the input frames")
	}
}

func TestEncodeWorker(t *testing.T) {
	tests := []struct {
		name string
		m    protocol.Message
		want [][]byte
	}{
		{"zero version is v1", protocol.Message{Cmd: protocol.CmdHeartbeat},
			fr("MDPW01", "\x04")},
		{"v1 PARTIAL is REPLY", protocol.Message{Form: v1, Cmd: protocol.CmdPartial, Address: []byte("j"), Body: fr("x")},
			fr("MDPW01", "\x03", "j", "", "x")},
		{"HEARTBEAT drops fields", protocol.Message{Form: v2, Cmd: protocol.CmdHeartbeat, Service: "s", Address: []byte("a"), Body: fr("b")},
			fr("MDPW02", "\x05")},
		{"DISCONNECT keeps its reason", protocol.Message{Form: protocol.Form{Version: protocol.V1, Delimiter: true}, Cmd: protocol.CmdDisconnect, Body: fr("b")},
			fr("", "MDPW01", "\x05", "b")},
		{"READY ignores Address", protocol.Message{Form: v2, Cmd: protocol.CmdReady, Service: "s", Address: []byte("a")},
			fr("MDPW02", "\x01", "s")},
		{"REQUEST ignores Service", protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Service: "s", Address: []byte("a")},
			fr("MDPW02", "\x02", "a", "")},
		{"nil Address is an empty frame", protocol.Message{Form: v1, Cmd: protocol.CmdReply},
			fr("MDPW01", "\x03", "", "")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := protocol.EncodeWorker(tc.m); !equalFrames(got, tc.want) {
				t.Errorf("EncodeWorker(%s) = %s, want %s", fmtMessage(tc.m), dumpInline(got), dumpInline(tc.want))
			}
		})
	}
}

func TestEncodeClient(t *testing.T) {
	tests := []struct {
		name string
		m    protocol.Message
		want [][]byte
	}{
		{"zero version is v1", protocol.Message{Cmd: protocol.CmdReply, Service: "s", Body: fr("x")},
			fr("MDPC01", "s", "x")},
		// 7/MDP has no PARTIAL; the broker must not send one.
		{"v1 PARTIAL is a plain reply", protocol.Message{Form: v1, Cmd: protocol.CmdPartial, Service: "s", Body: fr("x")},
			fr("MDPC01", "s", "x")},
		{"v2 REPLY is FINAL", protocol.Message{Form: protocol.Form{Version: protocol.V2, Delimiter: true}, Cmd: protocol.CmdReply, Service: "s"},
			fr("", "MDPC02", "\x03", "s")},
		{"v2 PARTIAL", protocol.Message{Form: v2, Cmd: protocol.CmdPartial, Service: "s", Body: fr("a", "b")},
			fr("MDPC02", "\x02", "s", "a", "b")},
		{"v2 REQUEST", protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Service: "s", Body: fr("a")},
			fr("MDPC02", "\x01", "s", "a")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := protocol.EncodeClient(tc.m); !equalFrames(got, tc.want) {
				t.Errorf("EncodeClient(%s) = %s, want %s", fmtMessage(tc.m), dumpInline(got), dumpInline(tc.want))
			}
		})
	}
}

type errCase struct {
	name   string
	frames [][]byte
	want   error
}

func runErrors(t *testing.T, cases []errCase, decode func([][]byte) (protocol.Message, error)) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decode(tc.frames)
			if !errors.Is(err, tc.want) {
				t.Fatalf("decode %s: err = %v, want %v", dumpInline(tc.frames), err, tc.want)
			}
			if !equalMessage(m, protocol.Message{}) {
				t.Errorf("decode %s = %s with error, want zero Message", dumpInline(tc.frames), fmtMessage(m))
			}
		})
	}
}

func TestDecodeWorker_Errors(t *testing.T) {
	runErrors(t, []errCase{
		{"nil", nil, protocol.ErrShort},
		{"delimiter only", fr(""), protocol.ErrShort},
		{"header only", fr("MDPW01"), protocol.ErrShort},
		{"delimiter header only", fr("", "MDPW02"), protocol.ErrShort},
		{"two delimiters", fr("", ""), protocol.ErrShort},
		{"unknown header", fr("MDPW03", "\x01", "echo"), protocol.ErrHeader},
		{"client header", fr("", "MDPC02", "\x01", "echo"), protocol.ErrHeader},
		{"lower-case header", fr("mdpw01", "\x04"), protocol.ErrHeader},
		{"v1 command 0x00", fr("MDPW01", "\x00"), protocol.ErrCommand},
		{"v1 command 0x06", fr("MDPW01", "\x06"), protocol.ErrCommand},
		{"v2 command 0x07", fr("", "MDPW02", "\x07"), protocol.ErrCommand},
		{"v2 command 0xff", fr("MDPW02", "\xff"), protocol.ErrCommand},
		{"v1 2-byte command", fr("MDPW01", "\x01\x00", "echo"), protocol.ErrCommand},
		{"v2 2-byte command", fr("", "MDPW02", "\x00\x05"), protocol.ErrCommand},
		{"empty command frame", fr("MDPW02", "", "echo"), protocol.ErrCommand},
		{"v1 READY without service", fr("MDPW01", "\x01"), protocol.ErrShort},
		{"v2 READY without service", fr("", "MDPW02", "\x01"), protocol.ErrShort},
		{"v1 READY empty service", fr("MDPW01", "\x01", ""), protocol.ErrNoService},
		{"v2 READY empty service", fr("MDPW02", "\x01", "", "meta"), protocol.ErrNoService},
		{"v1 REQUEST address only", fr("MDPW01", "\x02", "job1"), protocol.ErrShort},
		{"v2 FINAL without address", fr("MDPW02", "\x04"), protocol.ErrShort},
		{"v1 REQUEST missing delimiter", fr("MDPW01", "\x02", "job1", "hello"), protocol.ErrDelimiter},
		{"v1 REPLY missing delimiter", fr("", "MDPW01", "\x03", "job1", "olleh", ""), protocol.ErrDelimiter},
		{"v2 REQUEST missing delimiter", fr("MDPW02", "\x02", "job1", "x"), protocol.ErrDelimiter},
		{"v2 PARTIAL missing delimiter", fr("MDPW02", "\x03", "job1", "chunk"), protocol.ErrDelimiter},
		{"v2 FINAL missing delimiter", fr("", "MDPW02", "\x04", "job1", "done"), protocol.ErrDelimiter},
	}, protocol.DecodeWorker)
}

func TestDecodeClient_Errors(t *testing.T) {
	runErrors(t, []errCase{
		{"nil", nil, protocol.ErrShort},
		{"delimiter only", fr(""), protocol.ErrShort},
		{"v1 header only", fr("MDPC01"), protocol.ErrShort},
		{"v1 delimiter header only", fr("", "MDPC01"), protocol.ErrShort},
		{"v2 without service", fr("MDPC02", "\x01"), protocol.ErrShort},
		{"v2 delimiter without service", fr("", "MDPC02", "\x01"), protocol.ErrShort},
		{"unknown header", fr("MDPC03", "echo"), protocol.ErrHeader},
		{"worker header", fr("", "MDPW01", "\x01", "echo"), protocol.ErrHeader},
		{"two delimiters", fr("", "", "MDPC01", "echo"), protocol.ErrHeader},
		{"v2 command 0x00", fr("MDPC02", "\x00", "echo"), protocol.ErrCommand},
		{"v2 command 0x04", fr("", "MDPC02", "\x04", "echo"), protocol.ErrCommand},
		{"v2 2-byte command", fr("MDPC02", "\x01\x01", "echo"), protocol.ErrCommand},
		{"v2 empty command frame", fr("MDPC02", "", "echo"), protocol.ErrCommand},
		{"v2 client PARTIAL", fr("MDPC02", "\x02", "echo", "x"), protocol.ErrUnexpected},
		{"v2 client FINAL", fr("", "MDPC02", "\x03", "echo", "x"), protocol.ErrUnexpected},
	}, protocol.DecodeClient)
}

func TestDecodeReply_Errors(t *testing.T) {
	runErrors(t, []errCase{
		{"nil", nil, protocol.ErrShort},
		{"delimiter only", fr(""), protocol.ErrShort},
		{"v1 header only", fr("", "MDPC01"), protocol.ErrShort},
		{"v2 without service", fr("MDPC02", "\x03"), protocol.ErrShort},
		{"unknown header", fr("MDPC03", "echo", "x"), protocol.ErrHeader},
		{"worker header", fr("MDPW02", "\x04", "job1", "", "x"), protocol.ErrHeader},
		{"v2 REQUEST", fr("MDPC02", "\x01", "echo", "x"), protocol.ErrCommand},
		{"v2 command 0x04", fr("", "MDPC02", "\x04", "echo"), protocol.ErrCommand},
		{"v2 2-byte command", fr("MDPC02", "\x03\x00", "echo"), protocol.ErrCommand},
		{"v2 empty command frame", fr("MDPC02", "", "echo"), protocol.ErrCommand},
	}, protocol.DecodeReply)
}

// TestDecodeWorker_HeaderCheckedFirst: a message whose header is not a worker
// header is ErrHeader whatever follows it, so a client that dialled the worker
// endpoint, or a stray extra delimiter, is logged as what it is.
func TestDecodeWorker_HeaderCheckedFirst(t *testing.T) {
	runErrors(t, []errCase{
		{"client REQUEST", fr("", "MDPC01", "echo", "hello"), protocol.ErrHeader},
		{"two delimiters then header", fr("", "", "MDPW01", "\x04"), protocol.ErrHeader},
		{"garbage", fr("GET / HTTP/1.1", "Host: x"), protocol.ErrHeader},
	}, protocol.DecodeWorker)
}

// TestDecodeClient_NoService checks that a request with an empty service
// name is refused with ErrNoService but keeps the client's Form, so the broker
// can answer in it.
func TestDecodeClient_NoService(t *testing.T) {
	tests := []struct {
		name   string
		frames [][]byte
		want   protocol.Form
	}{
		{"v1", fr("MDPC01", ""), v1},
		{"v1 delimiter", fr("", "MDPC01", "", "body"), protocol.Form{Version: protocol.V1, Delimiter: true}},
		{"v2", fr("MDPC02", "\x01", "", metaFrame), v2},
		{"v2 delimiter", fr("", "MDPC02", "\x01", ""), protocol.Form{Version: protocol.V2, Delimiter: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := protocol.DecodeClient(tc.frames)
			if !errors.Is(err, protocol.ErrNoService) {
				t.Fatalf("DecodeClient(%s): err = %v, want ErrNoService", dumpInline(tc.frames), err)
			}
			if m.Form != tc.want {
				t.Errorf("DecodeClient(%s).Form = %+v, want %+v", dumpInline(tc.frames), m.Form, tc.want)
			}
			if m.Service != "" {
				t.Errorf("DecodeClient(%s).Service = %q, want empty", dumpInline(tc.frames), m.Service)
			}
		})
	}
}

// TestDecodeClient_NoServiceKeepsBody pins what broker.HandleClient relies
// on: on ErrNoService it reads m.Body to tell a zmws client (meta frame first)
// from a stock one, and answers with a meta frame or a FAIL frame.
func TestDecodeClient_NoServiceKeepsBody(t *testing.T) {
	in := fr("MDPC02", "\x01", "", metaFrame, "input")
	m, err := protocol.DecodeClient(in)
	if !errors.Is(err, protocol.ErrNoService) {
		t.Fatalf("DecodeClient: err = %v, want ErrNoService", err)
	}
	if want := fr(metaFrame, "input"); !equalFrames(m.Body, want) {
		t.Errorf("DecodeClient(%s).Body = %s, want %s", dumpInline(in), dumpInline(m.Body), dumpInline(want))
	}
}

// TestDecodeErrors_Detail checks that errors name what was wrong, wrapped
// around the sentinel.
func TestDecodeErrors_Detail(t *testing.T) {
	long := strings.Repeat("X", 100)
	_, err := protocol.DecodeWorker(fr(long, "\x01", "echo"))
	if !errors.Is(err, protocol.ErrHeader) || strings.Contains(err.Error(), long) ||
		!strings.Contains(err.Error(), strings.Repeat("X", 32)) {
		t.Errorf("DecodeWorker(long header): err = %v, want ErrHeader quoting the header's first 32 bytes", err)
	}
	_, err = protocol.DecodeClient(fr("MDPC02", "\x7f", "echo"))
	if err == nil || !strings.Contains(err.Error(), "0x7f") {
		t.Errorf("DecodeClient(command 0x7f): err = %v, want the command byte in it", err)
	}
}

func TestVersion_String(t *testing.T) {
	for v, want := range map[protocol.Version]string{0: "Version(0)", protocol.V1: "0.1", protocol.V2: "0.2", 9: "Version(9)"} {
		if got := v.String(); got != want {
			t.Errorf("Version(%d).String() = %q, want %q", uint8(v), got, want)
		}
	}
}

func TestCommand_String(t *testing.T) {
	for c, want := range map[protocol.Command]string{
		protocol.CmdRequest:    "REQUEST",
		protocol.CmdReply:      "REPLY",
		protocol.CmdPartial:    "PARTIAL",
		protocol.CmdReady:      "READY",
		protocol.CmdHeartbeat:  "HEARTBEAT",
		protocol.CmdDisconnect: "DISCONNECT",
		0:                      "Command(0)",
		7:                      "Command(7)",
	} {
		if got := c.String(); got != want {
			t.Errorf("Command(%d).String() = %q, want %q", uint8(c), got, want)
		}
	}
}
