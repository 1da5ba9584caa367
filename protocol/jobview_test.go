package protocol

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestJobView_Output(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	code := 0
	for _, tc := range []struct {
		name      string
		output    []byte
		truncated bool
		encoding  string
		want      []byte // OutputBytes
	}{
		{"text", []byte("héllo\n"), false, OutputUTF8, []byte("héllo\n")},
		{"binary", []byte{0xff, 0x00, 0xfe}, false, OutputBase64, []byte{0xff, 0x00, 0xfe}},
		{"cut in a character", []byte("ab\xc3"), true, OutputUTF8, []byte("ab")},
		{"binary, cut", []byte{0xff, 'a', 0xc3}, true, OutputBase64, []byte{0xff, 'a', 0xc3}},
		{"none", nil, false, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := JobInfo{ID: "01J", Service: "S", State: JobComplete, Created: created, Finished: &created,
				Attempts: 1, ExitCode: &code, Owner: "token:ci", Output: tc.output, OutputTruncated: tc.truncated}
			v := NewJobView(j)
			if v.OutputEncoding != tc.encoding || (v.Output == nil) != (tc.want == nil) {
				t.Fatalf("output %v as %q, want %q", v.Output, v.OutputEncoding, tc.encoding)
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var back JobView
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			got, err := back.OutputBytes()
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("OutputBytes %q %v, want %q", got, err, tc.want)
			}
			if back.Owner != "token:ci" || back.ID != "01J" || back.OutputTruncated != tc.truncated || *back.ExitCode != 0 {
				t.Errorf("round trip: %s", b)
			}
		})
	}
	s := "x"
	if _, err := (JobView{Output: &s, OutputEncoding: "rot13"}).OutputBytes(); err == nil {
		t.Error("an unknown encoding decoded")
	}
}
