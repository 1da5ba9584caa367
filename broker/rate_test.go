package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// TestBroker_ServiceRate: a service with a rate of 10 jobs a second and a
// burst of 3 takes 3 at once, refuses the 4th rate_limited (saying when the
// next is taken), takes one more 100 ms on, and a refusal takes nothing from
// the allowance. Another service, without a rate, is not bounded.
func TestBroker_ServiceRate(t *testing.T) {
	b := newBroker(t, broker.Config{Rates: map[string]broker.Rate{"S": {PerSecond: 10, Burst: 3}}})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("T"))
	submit := func(at time.Time, svc string) protocol.Meta {
		t.Helper()
		_, md, _ := clientReply(t, one(t, b.HandleClient(at, "c", "", zreq(svc, nil)), protocol.ToClient, "c"))
		return md
	}
	for i := range 3 {
		if md := submit(t0, "S"); md.Status != protocol.StatusAccepted {
			t.Fatalf("job %d of the burst: %+v", i, md)
		}
	}
	md := submit(t0, "S")
	if md.Status != protocol.StatusRefused || md.Code != protocol.CodeRateLimited || !strings.Contains(md.Error, "100ms") {
		t.Fatalf("4th at once: %+v, want refused rate_limited, next in 100ms", md)
	}
	if md := submit(t0.Add(50*time.Millisecond), "S"); md.Code != protocol.CodeRateLimited {
		t.Fatalf("50 ms on: %+v, want rate_limited", md)
	}
	if md := submit(t0.Add(100*time.Millisecond), "S"); md.Status != protocol.StatusAccepted {
		t.Fatalf("100 ms on (the refusals took nothing): %+v", md)
	}
	for i := range 10 {
		if md := submit(t0, "T"); md.Status != protocol.StatusAccepted {
			t.Fatalf("service T, job %d: %+v (it has no rate)", i, md)
		}
	}
	if q := b.Queue(); len(q) == 0 {
		t.Fatal("no queue listed")
	}
}

// TestBroker_DefaultRate: "*" bounds every service without a rate of its
// own; one with its own rate keeps it.
func TestBroker_DefaultRate(t *testing.T) {
	b := newBroker(t, broker.Config{Rates: map[string]broker.Rate{"*": {PerSecond: 1}, "FAST": {PerSecond: 100}}})
	b.HandleWorker(t0, "w1", "", readyZ("SLOW"))
	b.HandleWorker(t0, "w2", "", readyZ("FAST"))
	count := func(svc string) (accepted int) {
		for range 5 {
			_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq(svc, nil)), protocol.ToClient, "c"))
			if md.Status == protocol.StatusAccepted {
				accepted++
			}
		}
		return accepted
	}
	if n := count("SLOW"); n != 1 {
		t.Errorf("SLOW under *=1: %d of 5 accepted at once, want 1", n)
	}
	if n := count("FAST"); n != 5 {
		t.Errorf("FAST=100: %d of 5 accepted at once, want 5", n)
	}
}

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in      string
		service string
		rate    broker.Rate
		bad     bool
	}{
		{in: "S=10", service: "S", rate: broker.Rate{PerSecond: 10}},
		{in: "STR-REV=0.5/4", service: "STR-REV", rate: broker.Rate{PerSecond: 0.5, Burst: 4}},
		{in: "*=100", service: "*", rate: broker.Rate{PerSecond: 100}},
		{in: "S", bad: true},
		{in: "=10", bad: true},
		{in: "S=0", bad: true},
		{in: "S=-1", bad: true},
		{in: "S=x", bad: true},
		{in: "S=10/0", bad: true},
		{in: "S=10/x", bad: true},
		{in: "SYNC-S=10", bad: true},
	} {
		svc, r, err := broker.ParseRate(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: no error", c.in)
			}
			continue
		}
		if err != nil || svc != c.service || r != c.rate {
			t.Errorf("%q: %q %+v %v, want %q %+v", c.in, svc, r, err, c.service, c.rate)
		}
	}
}
