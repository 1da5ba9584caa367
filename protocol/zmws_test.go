package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/zmws/zmws/protocol"
)

func TestMeta_RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    protocol.Meta
	}{
		{"zero", protocol.Meta{}},
		{"client request", protocol.Meta{Params: map[string]string{"seconds": "2", "name": "a b&c"}, Key: "k1"}},
		{"accepted", protocol.Meta{Status: protocol.StatusAccepted, Job: "01J9Z3S4W6X7Y8Z9A0B1C2D3E4"}},
		{"broker to worker", protocol.Meta{Job: "j", Service: "SLEEP", Attempt: 3, Params: map[string]string{"": "", "x": "y"}}},
		{"exit code 0", protocol.Meta{Status: protocol.StatusComplete, ExitCode: intp(0)}},
		{"exit code -1", protocol.Meta{Status: protocol.StatusFailed, Code: protocol.CodeJobFailed, Error: "killed", ExitCode: intp(-1)}},
		{"exit code 137", protocol.Meta{Status: protocol.StatusFailed, Code: protocol.CodeWorkerLost, ExitCode: intp(137), Attempt: 2}},
		{"output cut by the worker", protocol.Meta{Status: protocol.StatusComplete, OutputTruncated: true}},
		{"page request", protocol.Meta{Limit: 10, After: "STR-REV"}},
		{"page reply", protocol.Meta{Status: protocol.StatusComplete, Next: "STR-REV"}},
		{"worker details", protocol.Meta{Worker: &protocol.WorkerDetails{Host: "h", PID: 1, Name: "zmws-run/0.1"}}},
		{"empty worker details", protocol.Meta{Worker: &protocol.WorkerDetails{}}},
		{"awkward strings", protocol.Meta{Error: "<&>\"\\\x00\n\u2028é🙂", Params: map[string]string{"k\x00": "v\x7f"}}},
		{"all fields", protocol.Meta{Job: "j", Service: "s", Attempt: 1, Params: map[string]string{"a": "1"}, Key: "k",
			Status: protocol.StatusRefused, Code: protocol.CodeQueueFull, Error: "e", ExitCode: intp(2),
			Worker: &protocol.WorkerDetails{Host: "h", PID: 2, Name: "n"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := protocol.EncodeMeta(tc.m)
			if !protocol.IsMeta(frame) {
				t.Fatalf("IsMeta(EncodeMeta(%+v)) = false: %q", tc.m, frame)
			}
			if bytes.HasSuffix(frame, []byte("\n")) {
				t.Errorf("EncodeMeta(%+v) ends in a newline: %q", tc.m, frame)
			}
			got, err := protocol.DecodeMeta(frame)
			if err != nil {
				t.Fatalf("DecodeMeta(%q): %v", frame, err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Errorf("DecodeMeta(EncodeMeta(m))\n got %+v\nwant %+v", got, tc.m)
			}
			if tc.m.ExitCode != nil && (got.ExitCode == nil || got.ExitCode == tc.m.ExitCode) {
				t.Errorf("ExitCode = %p, want a new pointer to %d", got.ExitCode, *tc.m.ExitCode)
			}
		})
	}
}

// TestEncodeMeta_Wire pins the wire spelling: the JSON keys and their order
// are visible to every zmws peer.
func TestEncodeMeta_Wire(t *testing.T) {
	tests := []struct {
		m    protocol.Meta
		want string
	}{
		{protocol.Meta{}, "\x00ZMWS1{}"},
		{protocol.Meta{Status: protocol.StatusComplete, ExitCode: intp(0)},
			"\x00ZMWS1" + `{"status":"complete","exit_code":0}`},
		{protocol.Meta{Status: protocol.StatusComplete, Prefetch: 1, OutputTruncated: true},
			"\x00ZMWS1" + `{"status":"complete","prefetch":1,"output_truncated":true}`},
		{protocol.Meta{Limit: 100, After: "STR-REV"},
			"\x00ZMWS1" + `{"limit":100,"after":"STR-REV"}`},
		{protocol.Meta{Status: protocol.StatusComplete, Next: "STR-REV"},
			"\x00ZMWS1" + `{"status":"complete","next":"STR-REV"}`},
		{protocol.Meta{OutputTruncated: true, Worker: &protocol.WorkerDetails{}},
			"\x00ZMWS1" + `{"worker":{},"output_truncated":true}`},
		{protocol.Meta{Job: "j", Service: "s", Attempt: 1, Params: map[string]string{"b": "2", "a": "1"}, Key: "k", Owner: "o",
			Status: protocol.StatusFailed, Code: "c", Error: "e", ExitCode: intp(1), Worker: &protocol.WorkerDetails{Host: "h", PID: 9, Name: "n"}},
			"\x00ZMWS1" + `{"job":"j","service":"s","attempt":1,"params":{"a":"1","b":"2"},"key":"k","owner":"o","status":"failed",` +
				`"code":"c","error":"e","exit_code":1,"worker":{"host":"h","pid":9,"name":"n"}}`},
	}
	for _, tc := range tests {
		if got := protocol.EncodeMeta(tc.m); string(got) != tc.want {
			t.Errorf("EncodeMeta(%+v)\n got %q\nwant %q", tc.m, got, tc.want)
		}
	}
}

func TestDecodeMeta_Errors(t *testing.T) {
	for _, in := range []string{
		"",
		"{}",
		"ZMWS1{}",
		"\x00ZMWS2{}",
		"\x00zmws1{}",
		"\x00ZMWS1",
		"\x00ZMWS1{",
		"\x00ZMWS1{}x",
		"\x00ZMWS1{} {}",
		"\x00ZMWS1[]",
		"\x00ZMWS1\"meta\"",
		"\x00ZMWS1{'job':'j'}",
		"\x00ZMWS1" + `{"attempt":"1"}`,
		"\x00ZMWS1" + `{"attempt":1.5}`,
		"\x00ZMWS1" + `{"exit_code":"0"}`,
		"\x00ZMWS1" + `{"params":["a"]}`,
		"\x00ZMWS1" + `{"params":{"a":1}}`,
		"\x00ZMWS1" + `{"worker":"h"}`,
	} {
		m, err := protocol.DecodeMeta([]byte(in))
		if !errors.Is(err, protocol.ErrMeta) {
			t.Errorf("DecodeMeta(%q): err = %v, want ErrMeta", in, err)
		}
		if !reflect.DeepEqual(m, protocol.Meta{}) {
			t.Errorf("DecodeMeta(%q) = %+v with error, want zero Meta", in, m)
		}
	}
}

func TestDecodeMeta_Lenient(t *testing.T) {
	// Unknown keys are ignored, so newer peers can add fields.
	m, err := protocol.DecodeMeta([]byte("\x00ZMWS1" + `{"job":"j","future":{"x":[1,2]}, "exit_code":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (protocol.Meta{Job: "j"}); !reflect.DeepEqual(m, want) {
		t.Errorf("got %+v, want %+v", m, want)
	}
}

func TestIsMeta(t *testing.T) {
	for in, want := range map[string]bool{
		"":               false,
		"\x00":           false,
		"\x00ZMWS":       false,
		"ZMWS1{}":        false,
		"\x00ZMWS2{}":    false,
		"hello":          false,
		" \x00ZMWS1{}":   false,
		"\x00ZMWS1":      true,
		"\x00ZMWS1{}":    true,
		"\x00ZMWS1junk}": true, // IsMeta checks the prefix only; DecodeMeta the rest
	} {
		if got := protocol.IsMeta([]byte(in)); got != want {
			t.Errorf("IsMeta(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestSplitMeta(t *testing.T) {
	meta := protocol.Meta{Job: "j", Params: map[string]string{"a": "1"}, ExitCode: intp(0)}
	metaF := protocol.EncodeMeta(meta)
	tests := []struct {
		name     string
		body     [][]byte
		wantMeta protocol.Meta
		wantRest [][]byte
		wantOK   bool
		wantErr  error
	}{
		{"nil body", nil, protocol.Meta{}, nil, false, nil},
		{"stock body", fr("hello", "world"), protocol.Meta{}, fr("hello", "world"), false, nil},
		{"empty first frame", fr("", "x"), protocol.Meta{}, fr("", "x"), false, nil},
		{"meta not first", [][]byte{[]byte("x"), metaF}, protocol.Meta{}, [][]byte{[]byte("x"), metaF}, false, nil},
		{"meta only", [][]byte{metaF}, meta, nil, true, nil},
		{"meta and body", [][]byte{metaF, []byte("a"), []byte("b")}, meta, fr("a", "b"), true, nil},
		{"malformed meta", fr("\x00ZMWS1{oops", "a"), protocol.Meta{}, fr("a"), true, protocol.ErrMeta},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, rest, ok, err := protocol.SplitMeta(tc.body)
			if ok != tc.wantOK || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("SplitMeta(%s): ok = %v, err = %v; want %v, %v", dumpInline(tc.body), ok, err, tc.wantOK, tc.wantErr)
			}
			if !reflect.DeepEqual(m, tc.wantMeta) {
				t.Errorf("SplitMeta(%s): meta = %+v, want %+v", dumpInline(tc.body), m, tc.wantMeta)
			}
			if !equalFrames(rest, tc.wantRest) {
				t.Errorf("SplitMeta(%s): rest = %s, want %s", dumpInline(tc.body), dumpInline(rest), dumpInline(tc.wantRest))
			}
			if !ok && len(tc.body) > 0 && &rest[0] != &tc.body[0] {
				t.Errorf("SplitMeta(%s) without meta returned a copy of body, want body unchanged", dumpInline(tc.body))
			}
		})
	}
}

func TestSplitSync(t *testing.T) {
	tests := []struct {
		in       string
		wantName string
		wantSync bool
	}{
		{"STR-REV", "STR-REV", false},
		{"SYNC-STR-REV", "STR-REV", true},
		{"SYNC:STR-REV", "STR-REV", true},
		{"SYNC-", "", true},
		{"SYNC:", "", true},
		{"SYNC", "SYNC", false},
		{"SYNCX", "SYNCX", false},
		{"sync-echo", "sync-echo", false},
		{"SYNC-SYNC:echo", "SYNC:echo", true}, // one layer only
		{"", "", false},
	}
	for _, tc := range tests {
		name, sync := protocol.SplitSync(tc.in)
		if name != tc.wantName || sync != tc.wantSync {
			t.Errorf("SplitSync(%q) = %q, %v; want %q, %v", tc.in, name, sync, tc.wantName, tc.wantSync)
		}
	}
}

func TestValidWorkerService(t *testing.T) {
	for _, name := range []string{
		"STR-REV",
		"SLEEP",
		"a.b_c",
		"x",
		"echo:v2",
		"SYNC",
		"SERVER",
		"mmi",
		"titanic",
		"données", // non-ASCII letters are fine
		strings.Repeat("a", protocol.MaxServiceLen),
	} {
		if err := protocol.ValidWorkerService(name); err != nil {
			t.Errorf("ValidWorkerService(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{
		"",
		strings.Repeat("a", protocol.MaxServiceLen+1),
		"SYNC-echo",
		"SYNC:echo",
		"SYNC-",
		"SERVER-WORKERS",
		"SERVER-mine",
		"mmi.service",
		"mmi.",
		"titanic.request",
		"a b",
		" echo",
		"echo ",
		"a\tb",
		"echo\n",
		"a\x00b",
		"a\x1bb",
		"a\x7fb",
		"a/b",
		"/echo",
		"a?b",
		"a#b",
	} {
		if err := protocol.ValidWorkerService(name); err == nil {
			t.Errorf("ValidWorkerService(%q) = nil, want an error", name)
		}
	}
	if err := protocol.ValidWorkerService(""); !errors.Is(err, protocol.ErrNoService) {
		t.Errorf(`ValidWorkerService("") = %v, want ErrNoService`, err)
	}
}

// TestValidWorkerService_UnicodeControlsAndSpaces: the contract refuses
// control characters and spaces, which includes the C1 controls and Unicode
// spaces, and a name that is not UTF-8 cannot travel in the JSON of
// SERVER-SERVICES or events without turning into U+FFFD.
func TestValidWorkerService_UnicodeControlsAndSpaces(t *testing.T) {
	for _, name := range []string{
		"a\u0085b", // NEL, a C1 control
		"a\u009bb", // CSI, starts terminal escape sequences in logs
		"a\u00a0b", // no-break space
		"a\u2028b", // line separator
		"a\u3000b", // ideographic space
		"a\xffb",   // not UTF-8
		"\xc3",     // truncated UTF-8
	} {
		if err := protocol.ValidWorkerService(name); err == nil {
			t.Errorf("ValidWorkerService(%q) = nil, want an error", name)
		}
	}
}

func TestEncodeParams(t *testing.T) {
	tests := []struct {
		params map[string]string
		want   string
	}{
		{nil, ""},
		{map[string]string{}, ""},
		{map[string]string{"a": ""}, "a="},
		{map[string]string{"b": "2", "a": "1", "c": "3"}, "a=1&b=2&c=3"},
		{map[string]string{"q": "a b&c=d", "k/ey": "ü", "z+": "%"}, "k%2Fey=%C3%BC&q=a+b%26c%3Dd&z%2B=%25"},
		// Sorted by the raw key, not the escaped one.
		{map[string]string{"a+": "1", "a b": "2"}, "a+b=2&a%2B=1"},
	}
	for _, tc := range tests {
		got := protocol.EncodeParams(tc.params)
		if string(got) != tc.want {
			t.Errorf("EncodeParams(%v) = %q, want %q", tc.params, got, tc.want)
		}
		if len(tc.params) == 0 {
			if got != nil {
				t.Errorf("EncodeParams(%v) = %q, want nil", tc.params, got)
			}
			continue
		}
		back, err := url.ParseQuery(string(got))
		if err != nil {
			t.Fatalf("ParseQuery(%q): %v", got, err)
		}
		if len(back) != len(tc.params) {
			t.Errorf("ParseQuery(%q) = %v, want %v", got, back, tc.params)
		}
		for k, v := range tc.params {
			if vs := back[k]; len(vs) != 1 || vs[0] != v {
				t.Errorf("ParseQuery(%q)[%q] = %q, want [%q]", got, k, vs, v)
			}
		}
	}
}

// jsonMeta is EncodeMeta's reference: encoding/json, always.
func jsonMeta(t *testing.T, m protocol.Meta) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString(protocol.MetaPrefix)
	if err := json.NewEncoder(&buf).Encode(m); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestEncodeMeta_SameBytesAsEncodingJSON(t *testing.T) {
	code, zero := 3, 0
	for _, m := range []protocol.Meta{
		{},
		{Status: protocol.StatusComplete},
		{Status: protocol.StatusAccepted, Job: "01J9Z3S4W6X7Y8Z9A0B1C2D3E4"},
		{Job: "01J9", Service: "STR-REV", Attempt: 2, Params: map[string]string{"b": "2", "a": "1", "": ""}},
		{Params: map[string]string{}},
		{Key: "k", Status: protocol.StatusFailed, Code: "job_failed", Error: "exit status 3", ExitCode: &code},
		{ExitCode: &zero, TTRMillis: 1500, Retries: 2, Attempt: -1},
		{Priority: -7, DelayMillis: 30000, At: "2026-12-02T03:00:00Z", Ref: "r"},
		{Priority: 10, At: "2026-12-02T03:00:00+01:00"},
		{Error: `quote " and \ backslash`},
		{Error: "line\nbreak", Params: map[string]string{"x": "<html>&"}},
		{Service: "ünïcode", Params: map[string]string{"k\u2028": "v"}},
		{Error: "bad \xff utf-8"},
		{Worker: &protocol.WorkerDetails{Host: "h", PID: 7, Name: "n"}, Job: "j"},
		{Limit: 50, After: "STR-REV"},
		{Limit: -1, After: "ünï<code>"},
		{Status: protocol.StatusComplete, Next: "17.01J9Z3S4W6X7Y8Z9A0B1C2D3E4"},
		{Status: protocol.StatusComplete, Next: `a"b`},
		{Ref: "r", OutputTruncated: true, Limit: 1, After: "a", Next: "b"},
	} {
		if got, want := protocol.EncodeMeta(m), jsonMeta(t, m); !bytes.Equal(got, want) {
			t.Errorf("EncodeMeta(%+v)\n got %q\nwant %q", m, got, want)
		}
		back, err := protocol.DecodeMeta(protocol.EncodeMeta(m))
		if err != nil {
			t.Errorf("decode %+v: %v", m, err)
		}
		_ = back
	}
}

func TestDecodeMeta_FastFramesMatchJSON(t *testing.T) {
	for _, m := range []protocol.Meta{{}, {Status: protocol.StatusComplete}} {
		frame := jsonMeta(t, m)
		got, err := protocol.DecodeMeta(frame)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("DecodeMeta(%q) = %+v, %v", frame, got, err)
		}
	}
}
