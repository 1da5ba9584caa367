package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// TestBroker_StreamBudget: a sync caller that stops reading cannot make the
// broker forward a job's output without end: past MaxStream its partials
// are dropped, and the final reply says output_truncated.
func TestBroker_StreamBudget(t *testing.T) {
	b := newBroker(t, broker.Config{MaxStream: 1000})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	out := b.HandleClient(t0, "c1", "", zreq("SYNC-S", nil))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	chunk := strings.Repeat("x", 300)
	forwarded := 0
	for i := range 10 {
		out := b.HandleWorker(at(time.Duration(i)*time.Millisecond), "w1", "", workerMsg(v2, protocol.CmdPartial, id, []byte(chunk)))
		forwarded += len(only(out, protocol.ToClient))
	}
	if forwarded != 3 {
		t.Fatalf("10 partials of 300 bytes under a 1000-byte budget: %d forwarded, want 3", forwarded)
	}
	out = b.HandleWorker(at(time.Second), "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "end"))
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c1"))
	if md.Status != protocol.StatusComplete || !md.OutputTruncated {
		t.Fatalf("final reply %+v, want complete with output_truncated", md)
	}
}
