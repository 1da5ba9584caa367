package protocol_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/zmws/zmws/protocol"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the encoders")

// quoteFrame renders one frame for a dump: "" for an empty frame, 0x… hex
// for a frame with no printable byte, else a Go string literal whose
// printable ASCII bytes stay text and others become \xNN. Every rendering is
// valid Go syntax, so parseDump reads it back exactly.
func quoteFrame(f []byte) string {
	printable := 0
	for _, c := range f {
		if c >= 0x20 && c < 0x7f {
			printable++
		}
	}
	if len(f) > 0 && printable == 0 {
		return "0x" + hex.EncodeToString(f)
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range f {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// dumpFrames renders frames one per line, numbered, after a comment line.
func dumpFrames(comment string, frames [][]byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n", comment)
	for i, f := range frames {
		fmt.Fprintf(&b, "%d: %s\n", i, quoteFrame(f))
	}
	return b.Bytes()
}

// parseDump reads back what dumpFrames wrote; lines starting with # are comments.
func parseDump(data []byte) ([][]byte, error) {
	var frames [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		idx, val, ok := strings.Cut(line, ": ")
		if !ok || idx != strconv.Itoa(len(frames)) {
			return nil, fmt.Errorf("line %d: want %d: FRAME, got %q", n, len(frames), line)
		}
		var f []byte
		if h, ok := strings.CutPrefix(val, "0x"); ok {
			b, err := hex.DecodeString(h)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			f = b
		} else {
			s, err := strconv.Unquote(val)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			f = []byte(s)
		}
		frames = append(frames, f)
	}
	return frames, sc.Err()
}

// codec is one side of the protocol: how its messages are encoded and decoded.
type codec struct {
	encode func(protocol.Message) [][]byte
	decode func([][]byte) (protocol.Message, error)
}

var (
	clientCodec = codec{protocol.EncodeClient, protocol.DecodeClient} // client → broker
	replyCodec  = codec{protocol.EncodeClient, protocol.DecodeReply}  // broker → client
	workerCodec = codec{protocol.EncodeWorker, protocol.DecodeWorker} // worker ↔ broker
)

func intp(i int) *int { return &i }

// goldenCases is one representative message of each command and version.
var goldenCases = []struct {
	name    string
	comment string
	codec   codec
	m       protocol.Message
}{
	{"mdpc01_request", "7/MDP client REQUEST (REQ socket: with delimiter), stock body", clientCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V1, Delimiter: true}, Cmd: protocol.CmdRequest,
			Service: "STR-REV", Body: fr("hello")}},
	{"mdpc01_reply", "7/MDP broker → client REPLY, stock failure", replyCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V1, Delimiter: true}, Cmd: protocol.CmdReply,
			Service: "NOPE", Body: fr(protocol.FailFrame, protocol.CodeUnknownService, "no worker has ever provided service NOPE")}},
	{"mdpc02_request", "18/MDP client REQUEST (DEALER: no delimiter), zmws meta with params", clientCodec,
		protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Service: "SYNC-SLEEP",
			Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Params: map[string]string{"seconds": "2", "note": "a b"}}), []byte("input")}}},
	{"mdpc02_partial", "18/MDP broker → client PARTIAL", replyCodec,
		protocol.Message{Form: v2, Cmd: protocol.CmdPartial, Service: "SYNC-SLEEP", Body: fr("line 1\n")}},
	{"mdpc02_final", "18/MDP broker → client FINAL, zmws meta: async job accepted", replyCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V2, Delimiter: true}, Cmd: protocol.CmdReply, Service: "SLEEP",
			Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusAccepted, Job: "01J9Z3S4W6X7Y8Z9A0B1C2D3E4"})}}},
	{"mdpw01_ready", "7/MDP worker READY, stock worker", workerCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V1, Delimiter: true}, Cmd: protocol.CmdReady, Service: "STR-REV"}},
	{"mdpw01_request", "7/MDP broker → worker REQUEST; address = job ID; params as a query string", workerCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V1, Delimiter: true}, Cmd: protocol.CmdRequest,
			Address: []byte("01J9Z3S4W6X7Y8Z9A0B1C2D3E4"), Body: [][]byte{protocol.EncodeParams(map[string]string{"b": "2", "a": "x&y"})}}},
	{"mdpw01_reply", "7/MDP worker REPLY, job ID echoed", workerCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V1, Delimiter: true}, Cmd: protocol.CmdReply,
			Address: []byte("01J9Z3S4W6X7Y8Z9A0B1C2D3E4"), Body: fr("olleh")}},
	{"mdpw01_heartbeat", "7/MDP HEARTBEAT", workerCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V1, Delimiter: true}, Cmd: protocol.CmdHeartbeat}},
	{"mdpw01_disconnect", "7/MDP DISCONNECT", workerCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V1, Delimiter: true}, Cmd: protocol.CmdDisconnect}},
	{"mdpw02_ready", "18/MDP worker READY, zmws meta with worker details", workerCodec,
		protocol.Message{Form: v2, Cmd: protocol.CmdReady, Service: "SLEEP",
			Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Worker: &protocol.WorkerDetails{Host: "node1", PID: 4242, Name: "zmws-run/0.1"}})}}},
	{"mdpw02_request", "18/MDP broker → worker REQUEST, zmws meta", workerCodec,
		protocol.Message{Form: v2, Cmd: protocol.CmdRequest, Address: []byte("01J9Z3S4W6X7Y8Z9A0B1C2D3E4"),
			Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Job: "01J9Z3S4W6X7Y8Z9A0B1C2D3E4", Service: "SLEEP", Attempt: 1,
				Params: map[string]string{"seconds": "2"}}), []byte("input")}}},
	{"mdpw02_partial", "18/MDP worker PARTIAL", workerCodec,
		protocol.Message{Form: v2, Cmd: protocol.CmdPartial, Address: []byte("01J9Z3S4W6X7Y8Z9A0B1C2D3E4"), Body: fr("line 1\n")}},
	{"mdpw02_final", "18/MDP worker FINAL (with delimiter), zmws meta: failed with exit code", workerCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V2, Delimiter: true}, Cmd: protocol.CmdReply,
			Address: []byte("01J9Z3S4W6X7Y8Z9A0B1C2D3E4"),
			Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusFailed, Error: `exit status 3: "oops"`, ExitCode: intp(3)}),
				[]byte("partial output\x00\xfe")}}},
	{"mdpw02_heartbeat", "18/MDP HEARTBEAT", workerCodec,
		protocol.Message{Form: v2, Cmd: protocol.CmdHeartbeat}},
	{"mdpw02_disconnect", "18/MDP DISCONNECT (with delimiter)", workerCodec,
		protocol.Message{Form: protocol.Form{Version: protocol.V2, Delimiter: true}, Cmd: protocol.CmdDisconnect}},
}

// TestGolden compares the encoding of each representative message with
// testdata/NAME.golden, reads the dump back and decodes it to the message.
// Run with -update to rewrite the files after a deliberate wire change.
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			frames := tc.codec.encode(tc.m)
			got := dumpFrames(tc.comment, frames)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (go test -update rewrites it)\n got:\n%s\nwant:\n%s", path, got, want)
			}
			parsed, err := parseDump(want)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if !equalFrames(parsed, frames) {
				t.Fatalf("%s reads back as %s, want %s", path, dumpInline(parsed), dumpInline(frames))
			}
			m, err := tc.codec.decode(parsed)
			if err != nil {
				t.Fatalf("decode %s: %v", path, err)
			}
			if !equalMessage(m, tc.m) {
				t.Errorf("decode %s\n got %s\nwant %s", path, fmtMessage(m), fmtMessage(tc.m))
			}
		})
	}
}

func TestQuoteFrame(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", `""`},
		{"MDPW02", `"MDPW02"`},
		{"\x04", "0x04"},
		{"\x00\x80\x00\x00\x29", `"\x00\x80\x00\x00)"`},
		{"\x00\x80", "0x0080"},
		{"\x00ZMWS1{\"a\":\"\\\"}", `"\x00ZMWS1{\"a\":\"\\\"}"`},
		{"tab\there\n", `"tab\x09here\x0a"`},
	}
	for _, tc := range tests {
		got := quoteFrame([]byte(tc.in))
		if got != tc.want {
			t.Errorf("quoteFrame(%q) = %s, want %s", tc.in, got, tc.want)
		}
		back, err := parseDump([]byte("0: " + got + "\n"))
		if err != nil || len(back) != 1 || string(back[0]) != tc.in {
			t.Errorf("parseDump(%s) = %q, %v; want %q", got, back, err, tc.in)
		}
	}
}
