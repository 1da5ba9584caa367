package store

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
)

func TestCodec_RoundTrips(t *testing.T) {
	neg := -1
	for _, j := range []*JobRecord{
		full("01A"),
		{},
		{ID: "x", State: protocol.JobQueued, Params: map[string]string{}, Input: [][]byte{}, Output: []byte{}},
		{ID: "y", ExitCode: &neg, Attempts: -3, TTR: -time.Second, Created: time.Unix(-1, 5), Finished: time.Unix(1<<40, 999999999)},
		{ID: "z", State: "custom", Input: [][]byte{nil, {}, nil}},
		{ID: "o", State: protocol.JobComplete, Output: []byte("out"), Owner: "token:ci"},
		{ID: "p", State: protocol.JobScheduled, NotBefore: time.Unix(1<<32, 7), Priority: -5},
		{ID: "q", State: protocol.JobQueued, Owner: "k", Priority: 1<<31 - 1},
	} {
		enc := appendRecord(nil, j)
		got, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("decode(%+v): %v", j, err)
		}
		if want := norm(*j); !reflect.DeepEqual(got, want) {
			t.Fatalf("decode(encode(j)) =\n %#v\nwant\n %#v", got, want)
		}
		if again := appendRecord(nil, &got); !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not stable:\n %x\n %x", enc, again)
		}
		f, err := decodeIndexFields(enc)
		if err != nil || f.state != j.State || string(f.key) != j.Key || !f.finished.Equal(j.Finished) {
			t.Fatalf("decodeIndexFields = %+v, %v", f, err)
		}
		// Every proper prefix is an error, never a panic.
		for i := range enc {
			if _, err := decodeRecord(enc[:i]); err == nil {
				t.Fatalf("decode of %d of %d bytes: no error", i, len(enc))
			}
		}
	}
}

func TestCodec_ServiceCounts(t *testing.T) {
	for _, c := range []ServiceCounts{{Name: "a", Completed: 0, Failed: 0}, {Name: "b", Completed: 1, Failed: 2}, {Name: "c", Completed: 1<<64 - 1, Failed: 1 << 40}} {
		enc := appendCounts(nil, c)
		if got, err := decodeCounts(c.Name, enc); err != nil || got != c {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", c, got, err)
		}
		for i := range enc {
			if _, err := decodeCounts(c.Name, enc[:i]); err == nil {
				t.Fatalf("decode of %d of %d bytes: no error", i, len(enc))
			}
		}
		if _, err := decodeCounts(c.Name, append(enc, 0)); err == nil {
			t.Fatal("trailing byte: no error")
		}
	}
	if _, err := decodeCounts("x", []byte{countsV1 + 1, 0, 0}); err == nil {
		t.Fatal("unknown version: no error")
	}
}

func TestCodec_RejectsHugeCounts(t *testing.T) {
	// A count that claims more elements than the record has bytes must not
	// allocate them.
	j := JobRecord{ID: "a", Params: map[string]string{"k": "v"}}
	enc := appendRecord(nil, &j)
	i := bytes.Index(enc, []byte{2, 1, 'k', 1, 'v'}) // count+1 = 2, "k", "v"
	if i < 0 {
		t.Fatalf("params not found in %x", enc)
	}
	bad := append(enc[:i:i], 0xff, 0xff, 0xff, 0xff, 0x0f)
	bad = append(bad, enc[i+1:]...)
	if _, err := decodeRecord(bad); err == nil {
		t.Fatal("no error for a huge count")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, j := range []*JobRecord{full("01HZX7Y3M2Q8R9S0T1V2W3X4Y5"), {}, job("01A", protocol.JobComplete, t0)} {
		f.Add(appendRecord(nil, j))
	}
	f.Add([]byte{recordV1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := decodeRecord(data)
		if _, ferr := decodeIndexFields(data); err == nil && ferr != nil {
			t.Fatalf("record decodes but its index fields do not: %v", ferr)
		}
		if err != nil {
			return
		}
		enc := appendRecord(nil, &j)
		j2, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("re-encoded record fails: %v", err)
		}
		if !reflect.DeepEqual(j, j2) {
			t.Fatalf("round trip:\n %#v\n %#v", j, j2)
		}
		if enc2 := appendRecord(nil, &j2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable")
		}
	})
}

func TestCodec_ServiceFlags(t *testing.T) {
	seen := time.Date(2026, 12, 2, 3, 4, 5, 6, time.UTC)
	for _, s := range []ServiceRecord{
		{Name: "plain", FirstSeen: seen},
		{Name: "paused", FirstSeen: seen, Paused: true},
		{Name: "draining", FirstSeen: seen, Draining: true},
		{Name: "both", FirstSeen: seen, Paused: true, Draining: true},
	} {
		enc := appendService(nil, s)
		if want := byte(serviceV1); !s.Paused && !s.Draining && enc[0] != want {
			t.Fatalf("%s: version %d, want %d: a service without flags reads as before", s.Name, enc[0], want)
		}
		got, err := decodeService(s.Name, enc)
		if err != nil || got != s {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", s, got, err)
		}
		for i := range enc {
			if _, err := decodeService(s.Name, enc[:i]); err == nil {
				t.Fatalf("%s: decode of %d of %d bytes: no error", s.Name, i, len(enc))
			}
		}
	}
	bad := appendService(nil, ServiceRecord{Name: "x", FirstSeen: seen, Paused: true})
	bad[len(bad)-1] = 0x80
	if _, err := decodeService("x", bad); err == nil {
		t.Fatal("unknown service flag: no error")
	}
}
