package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
)

// Workers that died before the broker noticed (an idle zmws-run of several
// slots killed with -9, before the next heartbeat): a job submitted then is
// given to each dead registration in turn, and the sends fail. It never
// reached a worker, so none of those counts as an attempt: it stays queued,
// and runs as attempt 1 when a live worker comes, instead of failing
// worker_lost with its attempts spent in a millisecond.
func TestServer_JobForDeadWorkersIsNoAttempt(t *testing.T) {
	const dead = 4 // more than MaxAttempts
	srv := start(t, server.Config{Broker: broker.Config{Heartbeat: time.Hour, MaxAttempts: 3}})
	ep := srv.WorkerEndpoint()
	var ws []*zmq.Socket
	for range dead {
		ws = append(ws, v2Worker(t, ep, "WORK"))
	}
	waitWorkers(t, srv.ClientEndpoint(), dead)
	for _, w := range ws {
		w.Close() // linger 0, no DISCONNECT: as killed
	}
	connectionsClosed(t, ep)

	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	md := submit(t, c, "WORK", protocol.Meta{})
	if md.Status != protocol.StatusAccepted {
		t.Fatalf("submit: %+v", md)
	}
	// The dispatches to the dead workers happened in the turn that accepted
	// the job, so this query sees their outcome.
	if ji := jobInfo(t, c, md.Job); ji.State != protocol.JobQueued || ji.Attempts != 0 {
		t.Fatalf("after the dead workers: job %s with %d attempts (code %q, %s); want queued with 0",
			ji.State, ji.Attempts, ji.Code, ji.Error)
	}

	live := zmqtest.Connect(t, zmq.DEALER, ep)
	zmqtest.Send(t, live, b("MDPW02"), []byte{0x01}, b("WORK"), protocol.EncodeMeta(protocol.Meta{}))
	req := heartbeatUntilRequest(t, live, 100*time.Millisecond)
	if string(req[2]) != md.Job {
		t.Fatalf("live worker got job %s, want %s", req[2], md.Job)
	}
	wm, err := protocol.DecodeMeta(req[4])
	if err != nil || wm.Attempt != 1 {
		t.Fatalf("live worker's REQUEST meta %+v (%v), want attempt 1", wm, err)
	}
	zmqtest.Send(t, live, b("MDPW02"), []byte{0x04}, req[2], b(""), protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete}))
	zmqtest.Eventually(t, "the job complete after 1 attempt", wait, func() bool {
		ji := jobInfo(t, c, md.Job)
		return ji.State == protocol.JobComplete && ji.Attempts == 1
	})
	// The dead ones are listed gone, as unreachable, beside the live one.
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SERVER-WORKERS"), protocol.EncodeMeta(protocol.Meta{}), b(protocol.WorkersAll))
	var all []protocol.WorkerInfo
	if err := json.Unmarshal(zmqtest.Recv(t, c, wait)[4], &all); err != nil || len(all) != 1+dead {
		t.Fatalf("SERVER-WORKERS all: %+v %v; want 1 live and %d gone", all, err, dead)
	}
	for _, w := range all[1:] {
		if w.State != protocol.WorkerGone || w.GoneWhy != protocol.GoneUnreachable || w.GoneAt.IsZero() {
			t.Fatalf("dead worker listed %+v, want gone unreachable", w)
		}
	}
}

// jobInfo asks SERVER-JOB about id.
func jobInfo(t *testing.T, c *zmq.Socket, id string) protocol.JobInfo {
	t.Helper()
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SERVER-JOB"), protocol.EncodeMeta(protocol.Meta{}), b(id))
	r := zmqtest.Recv(t, c, wait)
	var ji protocol.JobInfo
	if len(r) < 5 {
		t.Fatalf("SERVER-JOB %s: %s", id, zmqtest.Join(r))
	}
	if err := json.Unmarshal(r[4], &ji); err != nil {
		t.Fatalf("SERVER-JOB %s: %v", id, err)
	}
	return ji
}

// waitWorkers waits until SERVER-WORKERS lists n workers.
func waitWorkers(t *testing.T, ep string, n int) {
	t.Helper()
	c := zmqtest.Connect(t, zmq.DEALER, ep)
	zmqtest.Eventually(t, fmt.Sprintf("%d workers in SERVER-WORKERS", n), wait, func() bool {
		zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SERVER-WORKERS"), protocol.EncodeMeta(protocol.Meta{}))
		var ws []json.RawMessage
		if err := json.Unmarshal(zmqtest.Recv(t, c, wait)[4], &ws); err != nil {
			t.Fatal(err)
		}
		return len(ws) == n
	})
}

// connectionsClosed waits until the server side of every TCP connection to
// endpoint ep (tcp://127.0.0.1:PORT) is closed, as the kernel lists them in
// /proc/net/tcp: libzmq has then seen each end, and ended the peer's pipe
// at the next turn of the server's loop, before it reads another message.
// No peer can see that otherwise. Skips the test where /proc/net/tcp is
// missing.
func connectionsClosed(t *testing.T, ep string) {
	t.Helper()
	var port int
	if _, err := fmt.Sscanf(ep[strings.LastIndexByte(ep, ':')+1:], "%d", &port); err != nil {
		t.Fatalf("endpoint %s: %v", ep, err)
	}
	local := fmt.Sprintf(":%04X", port)
	zmqtest.Eventually(t, "every connection to "+ep+" closed at the server", wait, func() bool {
		f, err := os.Open("/proc/net/tcp")
		if err != nil {
			t.Skipf("no /proc/net/tcp: %v", err)
		}
		open := 0
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st ...; st 0A is LISTEN.
			fs := strings.Fields(sc.Text())
			if len(fs) > 3 && strings.HasSuffix(fs[1], local) && fs[3] != "0A" {
				open++
			}
		}
		f.Close()
		return open == 0
	})
}
