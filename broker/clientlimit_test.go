package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// submitFrom submits one job of svc from routing id from, key user and
// address peer, and returns the reply's meta.
func submitFrom(t *testing.T, b *broker.Broker, at time.Time, from, user, peer, svc string) protocol.Meta {
	t.Helper()
	_, md, _ := clientReply(t, one(t, b.HandleClientFrom(at, from, user, peer, zreq(svc, nil)), protocol.ToClient, from))
	return md
}

// A client is its address, whatever routing ids it uses; another address
// is another client; the in-process gateway (no address, no key) is not
// limited here.
func TestClientRate_PerAddressNotPerConnection(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, ClientRate: broker.Rate{PerSecond: 50, Burst: 5}})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	accepted := func(peer string, n int, ids func(i int) string) (ok int) {
		for i := range n {
			if md := submitFrom(t, b, t0, ids(i), "", peer, "S"); md.Status == protocol.StatusAccepted {
				ok++
			} else if md.Code != protocol.CodeRateLimited || !strings.Contains(md.Error, "--client-rate") {
				t.Fatalf("refusal %+v, want rate_limited naming --client-rate", md)
			}
		}
		return ok
	}
	fresh := func(prefix string) func(int) string {
		return func(i int) string { return fmt.Sprintf("%s%d", prefix, i) }
	}
	if n := accepted("10.0.0.1", 20, fresh("a")); n != 5 {
		t.Fatalf("10.0.0.1 from 20 connections: %d accepted at once, want the burst of 5", n)
	}
	if n := accepted("10.0.0.2", 20, fresh("b")); n != 5 {
		t.Fatalf("another address: %d accepted, want its own burst of 5", n)
	}
	if n := accepted("", 20, fresh("gw")); n != 20 {
		t.Fatalf("the in-process gateway: %d of 20 accepted, want all (it limits its own callers)", n)
	}
	// 100 ms later, 50 a second gave 10.0.0.1 five more.
	later := func(i int) string { return fmt.Sprintf("c%d", i) }
	ok := 0
	for i := range 10 {
		if md := submitFrom(t, b, t0.Add(100*time.Millisecond), later(i), "", "10.0.0.1", "S"); md.Status == protocol.StatusAccepted {
			ok++
		}
	}
	if ok != 5 {
		t.Fatalf("100 ms later: %d accepted, want 5 (50 a second)", ok)
	}
}

// With a CURVE key, the key is the client, from any address.
func TestClientRate_PerKey(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, ClientRate: broker.Rate{PerSecond: 1, Burst: 2}, Access: newAccess()})
	b.HandleWorker(t0, "w1", "wall", readyZ("S"))
	var got []protocol.Status
	for i, peer := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		got = append(got, submitFrom(t, b, t0, fmt.Sprint("c", i), "alice", peer, "S").Status)
	}
	if got[0] != protocol.StatusAccepted || got[1] != protocol.StatusAccepted || got[2] != protocol.StatusRefused {
		t.Fatalf("alice from three addresses: %v, want two accepted (her burst), then refused", got)
	}
	if md := submitFrom(t, b, t0, "c9", "bob", "10.0.0.3", "S"); md.Status == protocol.StatusRefused && md.Code == protocol.CodeRateLimited {
		t.Fatalf("bob was limited by alice's use: %+v", md)
	}
}

// ClientConcurrency bounds a client's unfinished sync jobs; each that ends
// gives its place back; refusals do not take one.
func TestClientConcurrency_SyncJobsInFlight(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, ClientConcurrency: 2})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	sync := func(from string) []protocol.Envelope {
		return b.HandleClientFrom(t0, from, "", "10.0.0.1", zreq("SYNC-S", nil))
	}
	job, _, _ := dispatched(t, one(t, sync("c1"), protocol.ToWorker, "w1"))
	none(t, sync("c2"), protocol.ToClient) // queued: the caller waits
	out := sync("c3")
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c3"))
	if md.Code != protocol.CodeRateLimited || !strings.Contains(md.Error, "--client-concurrency") {
		t.Fatalf("a third sync job: %+v, want rate_limited naming --client-concurrency", md)
	}
	// Async jobs are not sync jobs in flight.
	if md := submitFrom(t, b, t0, "c4", "", "10.0.0.1", "S"); md.Status != protocol.StatusAccepted {
		t.Fatalf("an async job: %+v", md)
	}
	// Another address has its own two.
	if out := b.HandleClientFrom(t0, "d1", "", "10.0.0.2", zreq("SYNC-S", nil)); len(only(out, protocol.ToClient)) != 0 {
		t.Fatalf("another address's sync job: %+v", out)
	}
	b.HandleWorker(t0, "w1", "", final(job, protocol.Meta{Status: protocol.StatusComplete}, "done"))
	if out := sync("c5"); len(only(out, protocol.ToClient)) != 0 {
		t.Fatalf("after one ended: %+v, want it taken (it waits)", out)
	}
	_, md, _ = clientReply(t, one(t, sync("c6"), protocol.ToClient, "c6"))
	if md.Code != protocol.CodeRateLimited {
		t.Fatalf("at the bound again: %+v", md)
	}
}

func TestParseClientRate(t *testing.T) {
	for in, want := range map[string]broker.Rate{"50": {PerSecond: 50}, "0.5/3": {PerSecond: 0.5, Burst: 3}} {
		if got, err := broker.ParseClientRate(in); err != nil || got != want {
			t.Errorf("ParseClientRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "x", "5/0", "5/x", "S=5", "Inf"} {
		if _, err := broker.ParseClientRate(in); err == nil {
			t.Errorf("ParseClientRate(%q): no error", in)
		}
	}
}
