package broker_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// stockReply is the body of the one reply to c, a stock client.
func stockReply(t *testing.T, out []protocol.Envelope, c string) []string {
	t.Helper()
	var to []protocol.Envelope
	for _, e := range only(out, protocol.ToClient) {
		if e.To == c {
			to = append(to, e)
		}
	}
	if len(to) != 1 {
		t.Fatalf("%d replies to %s, want 1: %+v", len(to), c, out)
	}
	m, err := protocol.DecodeReply(to[0].Frames)
	if err != nil {
		t.Fatal(err)
	}
	return framesStr(m.Body)
}

// The Guide's mdclient resends a sync request after its timeout, from a
// new socket. Within the window the resend attaches to the first job:
// while it runs (both get the answer), and once it has finished (the same
// answer, no rerun); past the window the request is a new job.
func TestBroker_ResendAttachesWithinTheWindow(t *testing.T) {
	b := newBroker(t, broker.Config{DedupeWindow: 30 * time.Second})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	out := b.HandleClient(t0, "c1", "", request(v1, "SYNC-S", []byte("x")))
	job, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))

	// Resent twice, 2.5 s apart, while the job runs: no job, no reply yet.
	for i, c := range []string{"c2", "c3"} {
		out = b.HandleClient(at(time.Duration(i+1)*2500*time.Millisecond), c, "", request(v1, "SYNC-S", []byte("x")))
		if len(out) != 0 {
			t.Fatalf("resend %d: %+v, want nothing yet", i+1, out)
		}
	}
	out = b.HandleWorker(at(8*time.Second), "w1", "", workerMsg(v1, protocol.CmdReply, job, []byte("X")))
	for _, c := range []string{"c1", "c2", "c3"} {
		if got := stockReply(t, out, c); !slices.Equal(got, []string{"X"}) {
			t.Fatalf("%s got %q, want the job's answer", c, got)
		}
	}

	// Finished, within the window: the same answer at once, no rerun.
	out = b.HandleClient(at(20*time.Second), "c4", "", request(v1, "SYNC-S", []byte("x")))
	none(t, out, protocol.ToWorker)
	if got := stockReply(t, out, "c4"); !slices.Equal(got, []string{"X"}) {
		t.Fatalf("resend after the finish: %q", got)
	}

	// Another body, or an async request of the same body, is another job.
	one(t, b.HandleClient(at(21*time.Second), "c5", "", request(v1, "SYNC-S", []byte("y"))), protocol.ToWorker, "w1")
	b.HandleWorker(at(21*time.Second), "w1", "", workerMsg(v1, protocol.CmdReply, jobOf(t, b), []byte("Y")))
	one(t, b.HandleClient(at(22*time.Second), "c6", "", request(v1, "S", []byte("x"))), protocol.ToWorker, "w1")
	b.HandleWorker(at(22*time.Second), "w1", "", workerMsg(v1, protocol.CmdReply, jobOf(t, b), []byte("X")))

	// Past the window: a new job, and the window starts again from it.
	out = b.HandleClient(at(31*time.Second), "c7", "", request(v1, "SYNC-S", []byte("x")))
	again, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	if again == job {
		t.Fatal("past the window the old job answered")
	}
	none(t, b.HandleClient(at(32*time.Second), "c8", "", request(v1, "SYNC-S", []byte("x"))), protocol.ToWorker)
	out = b.HandleWorker(at(33*time.Second), "w1", "", final(again, protocol.Meta{Status: protocol.StatusFailed, Error: "boom"}))
	if got := stockReply(t, out, "c8"); !slices.Equal(got, []string{protocol.FailFrame, protocol.CodeJobFailed, "boom"}) {
		t.Fatalf("resend of a failed job got %q", got)
	}
}

// jobOf returns the job w1 runs.
func jobOf(t *testing.T, b *broker.Broker) string {
	t.Helper()
	for _, w := range b.Workers() {
		if w.Identity == "w1" {
			return w.Job
		}
	}
	t.Fatal("no worker w1")
	return ""
}

// Only stock requests of one key are matched, and without a window every
// request is a job.
func TestBroker_ResendsOfWhomAndWhen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		second [][]byte
		user   string
		jobs   int
	}{
		{"resend", time.Minute, request(v1, "SYNC-S", []byte("x")), "", 1},
		{"no window", 0, request(v1, "SYNC-S", []byte("x")), "", 2},
		{"another key", time.Minute, request(v1, "SYNC-S", []byte("x")), "k2", 2},
		{"zmws client", time.Minute, request(v2, "SYNC-S", meta, []byte("x")), "", 2},
		{"more frames", time.Minute, request(v1, "SYNC-S", []byte("x"), nil), "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBroker(t, broker.Config{DedupeWindow: tc.window})
			b.HandleWorker(t0, "w1", "", readyStock("S"))
			b.HandleWorker(t0, "w2", "", readyStock("S"))
			n := len(requests(b.HandleClient(t0, "c1", "", request(v1, "SYNC-S", []byte("x")))))
			n += len(requests(b.HandleClient(at(time.Second), "c2", tc.user, tc.second)))
			if n != tc.jobs {
				t.Fatalf("%d jobs dispatched, want %d", n, tc.jobs)
			}
		})
	}
}

// An async resend (NAME, titanic.request) gets the first job's ID, after
// its commit.
func TestBroker_AsyncResendGetsTheSameID(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, DedupeWindow: time.Minute})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v1, protocol.CmdDisconnect, ""))
	b.HandleClient(t0, "c1", "", request(v1, "S", []byte("x")))
	b.HandleClient(t0, "c2", "", request(v1, "S", []byte("x")))
	b.HandleClient(t0, "c3", "", ti(protocol.TitanicRequest, "S", "x"))
	b.HandleClient(t0, "c4", "", ti(protocol.TitanicRequest, "S", "x"))
	batch := b.Flush()
	if len(batch.Jobs) != 2 {
		t.Fatalf("%d jobs, want one of S and one of titanic.request", len(batch.Jobs))
	}
	out := b.Committed()
	first, second := stockReply(t, out, "c1"), stockReply(t, out, "c2")
	if len(first) != 1 || !slices.Equal(first, second) {
		t.Fatalf("async resend got %q, first %q", second, first)
	}
	first, second = stockReply(t, out, "c3"), stockReply(t, out, "c4")
	if len(first) != 2 || !slices.Equal(first, second) {
		t.Fatalf("Titanic resend got %q, first %q", second, first)
	}
}

// The table holds at most 10,000 fingerprints: past them the oldest is
// forgotten, and its resend is a new job.
func TestBroker_ResendTableBounded(t *testing.T) {
	b := newBroker(t, broker.Config{DedupeWindow: time.Hour})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v1, protocol.CmdDisconnect, ""))
	for i := range 10_001 {
		b.HandleClient(t0, "c", "", request(v1, "S", []byte(fmt.Sprint(i))))
	}
	queued := func() int { return b.Queue()[0].Queued }
	b.HandleClient(t0, "c", "", request(v1, "S", []byte("10000"))) // the newest: remembered
	if n := queued(); n != 10_001 {
		t.Fatalf("%d queued, want 10001", n)
	}
	b.HandleClient(t0, "c", "", request(v1, "S", []byte("0"))) // the oldest: forgotten
	if n := queued(); n != 10_002 {
		t.Fatalf("%d queued, want 10002: the oldest fingerprint outlived the bound", n)
	}
}

// A resend waiting on a sync job is answered however the job ends: here
// the broker stops first.
func TestBroker_WaitingResendAnsweredAtShutdown(t *testing.T) {
	b := newBroker(t, broker.Config{DedupeWindow: time.Minute})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	b.HandleClient(t0, "c1", "", request(v1, "SYNC-S", []byte("x")))
	none(t, b.HandleClient(t0, "c2", "", request(v1, "SYNC-S", []byte("x"))), protocol.ToClient)
	out := b.Shutdown(at(time.Second))
	for _, c := range []string{"c1", "c2"} {
		if got := stockReply(t, out, c); len(got) != 3 || got[0] != protocol.FailFrame || got[1] != protocol.CodeShutdown {
			t.Fatalf("%s got %q, want FAIL shutdown", c, got)
		}
	}
}
