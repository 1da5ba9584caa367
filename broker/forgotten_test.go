package broker_test

import (
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// Found by TestBroker_RandomSequences: SERVER-RETRY of a failed job whose
// service was forgotten since queued it on the forgotten service, where no
// worker would ever see it. It is refused while the service is unknown,
// and queued on the service when a worker has announced it again.
func TestBroker_RetryOfAJobOfAForgottenService(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	id, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusFailed, Error: "boom"}))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	if md, _ := ask(t, b, protocol.ServerForget, "S"); md.Status != protocol.StatusComplete {
		t.Fatalf("forget: %+v", md)
	}
	if md, _ := ask(t, b, protocol.ServerRetry, id); md.Status != protocol.StatusRefused || md.Code != protocol.CodeUnknownService {
		t.Fatalf("retry while S is unknown: %+v, want refused %s", md, protocol.CodeUnknownService)
	}
	b.HandleWorker(at(time.Second), "w2", "", readyZ("S"))
	out := b.HandleClient(at(time.Second), "q", "", request(v2, protocol.ServerRetry, meta, []byte(id)))
	if got, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w2")); got != id {
		t.Fatalf("retry dispatched %s, want %s", got, id)
	}
}
