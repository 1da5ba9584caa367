package protocol_test

import (
	"bytes"
	"errors"
	"maps"
	"reflect"
	"testing"

	"github.com/zmws/zmws/protocol"
)

// frameSep separates frames in a fuzz input. Frames of fuzz inputs cannot
// hold 0xff, which no header, command byte or meta frame uses; a frame of
// body bytes is opaque to the codec.
const frameSep = 0xff

// splitFrames turns a fuzz input into frames: none for empty input, else the
// pieces between separators.
func splitFrames(data []byte) [][]byte {
	if len(data) == 0 {
		return nil
	}
	return bytes.Split(data, []byte{frameSep})
}

func joinFrames(frames [][]byte) []byte {
	return bytes.Join(frames, []byte{frameSep})
}

// addFrames seeds f with frames, with and without the delimiter.
func addFrames(f *testing.F, frames [][]byte) {
	f.Helper()
	for _, in := range [][][]byte{frames, withDelimiter(frames)} {
		if got := splitFrames(joinFrames(in)); len(in) > 0 && !equalFrames(got, in) {
			f.Fatalf("seed %s does not survive splitFrames: %s", dumpInline(in), dumpInline(got))
		}
		f.Add(joinFrames(in))
	}
}

// seedAll adds every message of the tables and golden files, and the error
// cases, to f: each fuzz target sees the others' messages too.
func seedAll(f *testing.F) {
	for _, cases := range [][]codecCase{workerCases, clientCases, replyCases} {
		for _, tc := range cases {
			addFrames(f, tc.frames)
		}
	}
	for _, tc := range goldenCases {
		addFrames(f, tc.codec.encode(tc.m))
	}
	for _, in := range [][][]byte{
		fr("MDPW01", "\x04", "extra"),
		fr("MDPW02", "\x06", "bye"),
		fr("MDPW01", "\x02", "job1", "hello"),
		fr("MDPW02", "\x01", ""),
		fr("MDPW02", "\x01\x00", "echo"),
		fr("MDPC02", "\x02", "echo"),
		fr("MDPC01", ""),
		fr("MDPC02", "\x01", ""),
		fr("", ""),
		fr("MDPW01"),
	} {
		addFrames(f, in)
	}
}

// isSentinel reports whether err wraps one of the decoders' sentinels, so a
// caller can always tell what went wrong.
func isSentinel(err error) bool {
	for _, s := range []error{protocol.ErrShort, protocol.ErrHeader, protocol.ErrCommand,
		protocol.ErrDelimiter, protocol.ErrNoService, protocol.ErrUnexpected} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// fuzzCodec checks decode on arbitrary frames: it never panics; errors wrap
// a sentinel; a decoded message encodes to frames that decode to the same
// message, and to the input itself unless exact says otherwise.
func fuzzCodec(t *testing.T, data []byte, c codec, exact func(in [][]byte, m protocol.Message) bool) {
	in := splitFrames(data)
	m, err := c.decode(in)
	if err != nil {
		if !isSentinel(err) {
			t.Fatalf("decode %s: error %q wraps no sentinel", dumpInline(in), err)
		}
		return
	}
	if m.Form.Version != protocol.V1 && m.Form.Version != protocol.V2 {
		t.Fatalf("decode %s: Form.Version = %v", dumpInline(in), m.Form.Version)
	}
	out := c.encode(m)
	m2, err := c.decode(out)
	if err != nil {
		t.Fatalf("decode %s = %s, whose encoding %s fails to decode: %v", dumpInline(in), fmtMessage(m), dumpInline(out), err)
	}
	if !equalMessage(m, m2) {
		t.Fatalf("round trip of %s\n got %s\nwant %s", dumpInline(in), fmtMessage(m2), fmtMessage(m))
	}
	if exact(in, m) && !equalFrames(out, in) {
		t.Fatalf("encode(decode(%s)) = %s, want the input", dumpInline(in), dumpInline(out))
	}
}

func FuzzDecodeWorker(f *testing.F) {
	seedAll(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCodec(t, data, workerCodec, func(in [][]byte, m protocol.Message) bool {
			// HEARTBEAT and DISCONNECT drop trailing frames.
			if m.Cmd != protocol.CmdHeartbeat && m.Cmd != protocol.CmdDisconnect {
				return true
			}
			n := 2
			if m.Form.Delimiter {
				n++
			}
			return len(in) == n
		})
	})
}

func FuzzDecodeClient(f *testing.F) {
	seedAll(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := splitFrames(data)
		if m, err := protocol.DecodeClient(in); errors.Is(err, protocol.ErrNoService) {
			// The broker answers in the client's form.
			if m.Form.Version != protocol.V1 && m.Form.Version != protocol.V2 {
				t.Fatalf("DecodeClient(%s): ErrNoService with Form %+v", dumpInline(in), m.Form)
			}
		}
		fuzzCodec(t, data, clientCodec, func([][]byte, protocol.Message) bool { return true })
	})
}

func FuzzDecodeReply(f *testing.F) {
	seedAll(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCodec(t, data, replyCodec, func([][]byte, protocol.Message) bool { return true })
	})
}

// normMeta maps an empty Params to nil: omitempty drops an empty map, so
// {"params":{}} comes back without params, which means the same.
func normMeta(m protocol.Meta) protocol.Meta {
	if len(m.Params) == 0 {
		m.Params = nil
	} else {
		m.Params = maps.Clone(m.Params)
	}
	return m
}

func FuzzMeta(f *testing.F) {
	for _, m := range []protocol.Meta{
		{},
		{Status: protocol.StatusComplete, ExitCode: intp(0)},
		{Job: "j", Service: "s", Attempt: 2, Params: map[string]string{"a": "1", "b": "x y"}, Key: "k"},
		{Status: protocol.StatusFailed, Code: protocol.CodeJobFailed, Error: "<&>\"\\\x00é", ExitCode: intp(-9)},
		{Worker: &protocol.WorkerDetails{Host: "h", PID: 1, Name: "zmws-run/0.1"}},
		{Limit: 10, After: "STR-REV"},
		{Status: protocol.StatusComplete, Next: "12.01J9Z3S4W6X7Y8Z9A0B1C2D3E4"},
	} {
		f.Add(protocol.EncodeMeta(m))
	}
	for _, s := range []string{
		"",
		"{}",
		"\x00ZMWS1",
		"\x00ZMWS1null",
		"\x00ZMWS1{",
		"\x00ZMWS1{}x",
		"\x00ZMWS1" + `{"params":{}}`,
		"\x00ZMWS1" + `{"params":{"a":null},"worker":null,"exit_code":null}`,
		"\x00ZMWS1" + `{"JOB":"a","job":"b","Exit_Code":1e0}`,
		"\x00ZMWS1" + `{"error":"\ud800\u0000\u2028","attempt":-0}`,
		"\x00ZMWS1" + `{"job":"\xff\xfe"}`,
		"\x00ZMWS1" + `{"attempt":99999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := protocol.DecodeMeta(frame)
		if err != nil {
			if !errors.Is(err, protocol.ErrMeta) {
				t.Fatalf("DecodeMeta(%q): error %q does not wrap ErrMeta", frame, err)
			}
			return
		}
		enc := protocol.EncodeMeta(m)
		m2, err := protocol.DecodeMeta(enc)
		if err != nil {
			t.Fatalf("DecodeMeta(%q) = %+v, whose encoding %q fails to decode: %v", frame, m, enc, err)
		}
		if !reflect.DeepEqual(normMeta(m), normMeta(m2)) {
			t.Fatalf("round trip of %q via %q\n got %+v\nwant %+v", frame, enc, m2, m)
		}
		if enc2 := protocol.EncodeMeta(m2); !bytes.Equal(enc, enc2) {
			t.Fatalf("EncodeMeta not stable: %q then %q", enc, enc2)
		}
	})
}
