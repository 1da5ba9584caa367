package broker_test

import (
	"testing"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// TestBroker_ZmwsWorkerGetsNoDelimiter: a zmws worker (meta frame in READY)
// that sent the empty delimiter gets its REQUESTs without it, a frame less
// per job (the worker library takes both); a stock worker that sent it
// gets it back, as the specs say.
func TestBroker_ZmwsWorkerGetsNoDelimiter(t *testing.T) {
	withDelim := func(f [][]byte) [][]byte { return append([][]byte{{}}, f...) }
	for _, c := range []struct {
		name  string
		ready [][]byte
		want  bool // delimiter in the REQUEST
	}{
		{"zmws worker, delimiter", withDelim(readyZ("S")), false},
		{"zmws worker, none", readyZ("S"), false},
		{"stock 18/MDP worker, delimiter", withDelim(protocol.EncodeWorker(protocol.Message{Form: v2, Cmd: protocol.CmdReady, Service: "S"})), true},
		{"stock 7/MDP worker", readyStock("S"), true},
	} {
		b := newBroker(t, broker.Config{})
		b.HandleWorker(t0, "w1", "", c.ready)
		e := one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1")
		msg, err := protocol.DecodeWorker(e.Frames)
		if err != nil || msg.Cmd != protocol.CmdRequest {
			t.Fatalf("%s: %v %v", c.name, err, msg.Cmd)
		}
		if msg.Form.Delimiter != c.want {
			t.Errorf("%s: REQUEST delimiter %v, want %v", c.name, msg.Form.Delimiter, c.want)
		}
	}
}
