package broker_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

func serviceNames(t *testing.T, b *broker.Broker) []string {
	t.Helper()
	var out []string
	for _, s := range b.Services() {
		out = append(out, s.Name)
	}
	return out
}

func TestBroker_ServiceLimit(t *testing.T) {
	b := newBroker(t, broker.Config{MaxServices: 3})
	for i := range 3 {
		none(t, b.HandleWorker(t0, fmt.Sprint("w", i), "", readyZ(fmt.Sprint("S", i))), protocol.ToWorker)
	}
	out := b.HandleWorker(t0, "w9", "", readyZ("S9"))
	m, err := protocol.DecodeWorker(one(t, out, protocol.ToWorker, "w9").Frames)
	if err != nil || m.Cmd != protocol.CmdDisconnect {
		t.Fatalf("READY of a 4th service: %v %v, want DISCONNECT", m.Cmd, err)
	}
	if md, _, ok, _ := protocol.SplitMeta(m.Body); !ok || md.Code != protocol.CodeServiceLimit {
		t.Fatalf("reason %+v, want %s", md, protocol.CodeServiceLimit)
	}
	if got := serviceNames(t, b); len(got) != 3 {
		t.Fatalf("services %v", got)
	}
	// A known service still takes new workers.
	none(t, b.HandleWorker(t0, "w10", "", readyZ("S0")), protocol.ToWorker)
}

func TestBroker_ForgetsUnusedServices(t *testing.T) {
	week := 7 * 24 * time.Hour
	b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour, Liveness: 1})
	b.HandleWorker(t0, "w1", "", readyZ("GONE"))
	b.HandleWorker(t0, "w2", "", readyZ("QUEUED"))
	b.HandleWorker(t0, "w3", "", readyZ("LIVE"))
	b.Flush()
	b.Committed()
	// GONE's and QUEUED's workers leave; QUEUED keeps a job.
	b.HandleWorker(at(time.Minute), "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	b.HandleWorker(at(time.Minute), "w2", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	b.HandleClient(at(time.Minute), "c", "", zreq("QUEUED", nil))
	for d := time.Hour; d <= week+2*time.Hour; d += time.Hour {
		b.Tick(at(d))
		b.HandleWorker(at(d), "w3", "", workerMsg(v2, protocol.CmdHeartbeat, ""))
	}
	if got := serviceNames(t, b); !slices.Equal(got, []string{"LIVE", "QUEUED"}) {
		t.Fatalf("after a week: services %v, want GONE forgotten", got)
	}
	if batch := b.Flush(); !slices.Contains(batch.Forgets, "GONE") {
		t.Errorf("the journal is not told: %+v", batch.Forgets)
	}
	b.Committed()
	refusedWith(t, b.HandleClient(at(week+3*time.Hour), "c", "", zreq("GONE", nil)), "c", protocol.CodeUnknownService)
}

func TestBroker_ServerForget(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("OLD"))
	b.HandleWorker(t0, "w2", "", readyZ("BUSY"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	refusedWith(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerForget, nil, "BUSY")), "c", protocol.CodeConflict)
	refusedWith(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerForget, nil, "NOPE")), "c", protocol.CodeNotFound)
	_, md, rest := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerForget, nil, "OLD")), protocol.ToClient, "c"))
	var v map[string]string
	if md.Status != protocol.StatusComplete || json.Unmarshal(rest[0], &v) != nil || v["forgotten"] != "OLD" {
		t.Fatalf("forget OLD: %+v %q", md, rest)
	}
	if got := serviceNames(t, b); !slices.Equal(got, []string{"BUSY"}) {
		t.Fatalf("services %v", got)
	}
	// Admin only, with keys.
	kb := newBroker(t, broker.Config{Access: newAccess()})
	kb.HandleWorker(t0, "w", "wall", readyZ("A1"))
	refusedWith(t, kb.HandleClient(t0, "c", "bob", zreq(protocol.ServerForget, nil, "A1")), "c", protocol.CodeForbidden)
}
