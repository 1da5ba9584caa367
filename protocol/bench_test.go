package protocol_test

import (
	"testing"

	"github.com/zmws/zmws/protocol"
)

// benchMeta is what the broker sends a zmws worker with each job.
var benchMeta = protocol.Meta{Job: "01J9Z3S4W6X7Y8Z9A0B1C2D3E4", Service: "SLEEP", Attempt: 1,
	Params: map[string]string{"seconds": "2", "mode": "fast"}}

// benchRequest is a broker → worker 18/MDP REQUEST: meta and a 1 KiB input.
var benchRequest = protocol.Message{Form: protocol.Form{Version: protocol.V2}, Cmd: protocol.CmdRequest,
	Address: []byte("01J9Z3S4W6X7Y8Z9A0B1C2D3E4"),
	Body:    [][]byte{protocol.EncodeMeta(benchMeta), make([]byte, 1024)}}

func BenchmarkDecodeWorker(b *testing.B) {
	frames := protocol.EncodeWorker(benchRequest)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.DecodeWorker(frames); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeWorker(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		protocol.EncodeWorker(benchRequest)
	}
}

func BenchmarkEncodeMeta(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		protocol.EncodeMeta(benchMeta)
	}
}

func BenchmarkDecodeMeta(b *testing.B) {
	frame := protocol.EncodeMeta(benchMeta)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.DecodeMeta(frame); err != nil {
			b.Fatal(err)
		}
	}
}
