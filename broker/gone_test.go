package broker_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// goneOnly returns the gone entries of SERVER-WORKERS all.
func goneOnly(b *broker.Broker) []protocol.WorkerInfo {
	var out []protocol.WorkerInfo
	for _, w := range b.AllWorkers() {
		if w.State == protocol.WorkerGone {
			out = append(out, w)
		}
	}
	return out
}

// Each way a worker can go is told apart, with when; a busy worker that
// went names the job it ran.
func TestBroker_GoneWorkersSayWhenAndWhy(t *testing.T) {
	a := newAccess()
	a.workers["w"] = "*"
	gone := at(5 * time.Second)
	// alive has workers heard from a second before gone: heartbeat 1s ×
	// liveness 3 does not expire them at gone.
	alive := func(b *broker.Broker, ids ...string) {
		for _, id := range ids {
			b.HandleWorker(gone.Add(-time.Second), id, "w", workerMsg(v2, protocol.CmdHeartbeat, ""))
		}
	}
	for _, tc := range []struct {
		why  string
		busy bool // a job runs at the worker when it goes
		// leave makes w1 go at the instant gone (a job runs at it when busy).
		leave func(t *testing.T, b *broker.Broker, job string)
	}{
		{protocol.GoneDisconnected, false, func(t *testing.T, b *broker.Broker, _ string) {
			b.HandleWorker(gone, "w1", "w", workerMsg(v2, protocol.CmdDisconnect, ""))
		}},
		{protocol.GoneExpired, true, func(t *testing.T, b *broker.Broker, _ string) {
			alive(b, "w2")
			b.Tick(gone) // w1 silent since t0, for more than 3s
		}},
		{protocol.GoneUnreachable, true, func(t *testing.T, b *broker.Broker, _ string) {
			b.Unreachable(gone, "w1")
		}},
		{protocol.GoneProtocolError, false, func(t *testing.T, b *broker.Broker, _ string) {
			b.HandleWorker(gone, "w1", "w", readyZ("S")) // a second READY
		}},
		{protocol.GoneProtocolError, true, func(t *testing.T, b *broker.Broker, _ string) {
			b.HandleWorker(gone, "w1", "w", [][]byte{[]byte("MDPW02"), {0x02}}) // a REQUEST without its frames
		}},
		{protocol.GoneForbidden, false, func(t *testing.T, b *broker.Broker, _ string) {
			alive(b, "w1", "w2")
			a.workers["w"] = "OTHER"
			a.gen++
			defer func() { a.workers["w"] = "*"; a.gen++ }()
			b.Tick(gone)
		}},
		{protocol.GoneForbidden, true, func(t *testing.T, b *broker.Broker, _ string) {
			b.HandleWorker(gone, "w1", "mallory", workerMsg(v2, protocol.CmdHeartbeat, "")) // another key
		}},
		{protocol.GoneTimeout, true, func(t *testing.T, b *broker.Broker, _ string) {
			alive(b, "w1", "w2")
			b.Tick(gone) // the job's time-to-run (4s) is over
		}},
		{protocol.GoneCancelled, true, func(t *testing.T, b *broker.Broker, job string) {
			b.HandleClient(gone, "q", "", request(v2, protocol.ServerCancel, meta, []byte(job)))
		}},
	} {
		name := tc.why
		if tc.busy {
			name += "/busy"
		}
		t.Run(name, func(t *testing.T) {
			b := newBroker(t, broker.Config{Access: a, Liveness: 3})
			b.HandleWorker(t0, "w1", "w", readyZ("S"))
			b.HandleWorker(t0, "w2", "w", readyZ("OTHER")) // stays
			job := ""
			if tc.busy {
				out := b.HandleClient(t0, "c", "", request(v2, "S", protocol.EncodeMeta(protocol.Meta{TTRMillis: 4000})))
				job, _, _ = dispatched(t, one(t, out, protocol.ToWorker, "w1"))
			}
			tc.leave(t, b, job)
			if ws := b.Workers(); len(ws) != 1 || ws[0].Identity != "w2" {
				t.Fatalf("live workers %+v, want w2 only", ws)
			}
			g := goneOnly(b)
			if len(g) != 1 {
				t.Fatalf("gone workers %+v, want w1", g)
			}
			w := g[0]
			if w.Identity != "w1" || w.Service != "S" || w.GoneWhy != tc.why || !w.GoneAt.Equal(gone) || w.Job != job ||
				!w.Since.Equal(t0) || w.Details == nil || w.Details.Host != "h" {
				t.Fatalf("gone worker %+v, want w1 of S gone %s at +5s running %q", w, tc.why, job)
			}
		})
	}
}

func TestBroker_WorkerCountsItsJobs(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	for i, status := range []protocol.Status{protocol.StatusComplete, protocol.StatusFailed, protocol.StatusComplete, protocol.StatusComplete} {
		out := b.HandleClient(at(time.Duration(i)*time.Millisecond), "c", "", zreq("S", nil))
		id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
		b.HandleWorker(at(time.Duration(i)*time.Millisecond), "w1", "", final(id, protocol.Meta{Status: status}))
	}
	// A job given back is neither.
	b.HandleWorker(t0, "w2", "", readyWith("T", protocol.Meta{Prefetch: 1}))
	out := b.HandleClient(t0, "c", "", zreq("T", nil))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w2"))
	b.HandleWorker(t0, "w2", "", final(id, protocol.Meta{Status: protocol.StatusReturned}))
	ws := b.Workers()
	if len(ws) != 2 || ws[0].Completed != 3 || ws[0].Failed != 1 || ws[0].JobsDone != 4 {
		t.Fatalf("w1's counts: %+v", ws[0])
	}
	if ws[1].Completed != 0 || ws[1].Failed != 0 || ws[1].JobsDone != 0 {
		t.Fatalf("w2's counts after giving its job back: %+v", ws[1])
	}
	// A gone worker keeps its counts and when it was last heard from.
	b.HandleWorker(at(time.Second), "w1", "", workerMsg(v2, protocol.CmdHeartbeat, ""))
	b.HandleWorker(at(9*time.Second), "w2", "", workerMsg(v2, protocol.CmdHeartbeat, ""))
	b.Tick(at(10 * time.Second)) // heartbeat 1s × liveness 3
	g := goneOnly(b)
	if len(g) != 1 || g[0].Completed != 3 || g[0].Failed != 1 || g[0].JobsDone != 4 || !g[0].LastHeartbeat.Equal(at(time.Second)) {
		t.Fatalf("gone w1: %+v", g)
	}
}

// Each service keeps its last KeepGone gone workers, however many come and
// go; a worker back under its routing id leaves the list.
func TestBroker_GoneWorkersBounded(t *testing.T) {
	// Not newBroker: 40,000 log lines would be most of the test's time.
	b := broker.New(broker.Config{KeepGone: 3, Heartbeat: time.Hour})
	ready, bye := readyZ("S"), workerMsg(v2, protocol.CmdDisconnect, "")
	for i := range 20_000 {
		now := at(time.Duration(i) * time.Millisecond)
		id := fmt.Sprintf("s%d", i)
		b.HandleWorker(now, id, "", ready)
		b.HandleWorker(now, id, "", bye)
	}
	b.HandleWorker(t0, "t1", "", readyZ("T"))
	b.HandleWorker(t0, "t1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	g := goneOnly(b)
	want := []string{"s19999", "s19998", "s19997", "t1"} // by service, most recently gone first
	if len(g) != len(want) {
		t.Fatalf("%d gone workers, want %d: %+v", len(g), len(want), g)
	}
	for i, w := range g {
		if w.Identity != want[i] {
			t.Fatalf("gone workers %+v, want %v", g, want)
		}
	}
	// s19998 is back: live, and no longer gone.
	b.HandleWorker(at(time.Hour), "s19998", "", readyZ("S"))
	all := b.AllWorkers()
	if len(all) != 4 || all[0].Identity != "s19998" || all[0].State != protocol.WorkerIdle ||
		all[1].Identity != "s19999" || all[2].Identity != "s19997" {
		t.Fatalf("after s19998 came back: %+v", all)
	}

	none := newBroker(t, broker.Config{KeepGone: -1})
	none.HandleWorker(t0, "w1", "", readyZ("S"))
	none.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	if g := goneOnly(none); len(g) != 0 {
		t.Fatalf("KeepGone < 0 kept %+v", g)
	}
	// A forgotten service takes its gone workers with it.
	b.HandleClient(at(time.Hour), "q", "", request(v2, protocol.ServerForget, meta, []byte("T")))
	if g := goneOnly(b); len(g) != 2 || g[0].Service != "S" || g[1].Service != "S" {
		t.Fatalf("after forgetting T: %+v", g)
	}
}

// SERVER-WORKERS lists the live workers; with the body frame "all", the
// gone ones too, from a zmws client or a stock one.
func TestBroker_ServerWorkersAll(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("S"))
	b.HandleWorker(at(time.Second), "w2", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	workers := func(t *testing.T, body [][]byte) []protocol.WorkerInfo {
		t.Helper()
		_, md, rest := clientReply(t, one(t, b.HandleClient(t0, "c", "", request(v2, protocol.ServerWorkers, body...)), protocol.ToClient, "c"))
		var ws []protocol.WorkerInfo
		if md.Status != protocol.StatusComplete || len(rest) != 1 || json.Unmarshal(rest[0], &ws) != nil {
			t.Fatalf("SERVER-WORKERS %q: %+v %q", body, md, rest)
		}
		return ws
	}
	for _, body := range [][][]byte{{meta}, {meta, {}}} {
		if ws := workers(t, body); len(ws) != 1 || ws[0].Identity != "w1" || ws[0].State != protocol.WorkerIdle || !ws[0].GoneAt.IsZero() {
			t.Fatalf("SERVER-WORKERS %q: %+v, want w1 alone", body, ws)
		}
	}
	ws := workers(t, [][]byte{meta, []byte(protocol.WorkersAll)})
	if len(ws) != 2 || ws[0].Identity != "w1" || ws[1].Identity != "w2" || ws[1].State != protocol.WorkerGone ||
		ws[1].GoneWhy != protocol.GoneDisconnected || !ws[1].GoneAt.Equal(at(time.Second)) {
		t.Fatalf("SERVER-WORKERS all: %+v", ws)
	}
	refusedWith(t, b.HandleClient(t0, "c", "", request(v2, protocol.ServerWorkers, meta, []byte("ALL"))), "c", protocol.CodeBadRequest)

	// A stock client: the JSON alone.
	r, err := protocol.DecodeReply(one(t, b.HandleClient(t0, "c", "", request(v1, protocol.ServerWorkers, []byte(protocol.WorkersAll))), protocol.ToClient, "c").Frames)
	if err != nil || len(r.Body) != 1 || json.Unmarshal(r.Body[0], &ws) != nil || len(ws) != 2 {
		t.Fatalf("stock SERVER-WORKERS all: %q %v", r.Body, err)
	}
	// Without a gone field, as before, for a live worker.
	var raw []map[string]any
	if err := json.Unmarshal(r.Body[0], &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw[0]["gone_at"]; ok {
		t.Fatalf("a live worker has gone_at: %v", raw[0])
	}
	if raw[1]["gone_why"] != "disconnected" || raw[1]["state"] != "gone" {
		t.Fatalf("the gone worker's JSON: %v", raw[1])
	}
}
