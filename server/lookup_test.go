package server_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
)

// slowArchive is a Memory store whose lookups of one job wait for the
// test: a journal on a slow disk.
type slowArchive struct {
	*store.Memory
	id    string
	asked chan struct{}
	gate  chan struct{}
}

func (s *slowArchive) Job(id string) (store.JobRecord, bool, error) {
	if id == s.id {
		s.asked <- struct{}{}
		<-s.gate
	}
	return s.Memory.Job(id)
}

// A SERVER-JOB of a job only the journal holds is answered from it, off
// the loop: while the read hangs, the loop dispatches another job and
// relays its result; the answer comes when the read does.
func TestServer_ArchivedJobLookedUpOffTheLoop(t *testing.T) {
	t1 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	old := broker.JobRecord{ID: "01ARCH1VED0000000000000000", Service: "echo", State: protocol.JobComplete,
		Created: t1, Started: t1, Finished: t1.Add(time.Second), Output: []byte("from the archive"), Retries: -1}
	newer := broker.JobRecord{ID: "01ARCH1VED0000000000000001", Service: "echo", State: protocol.JobComplete,
		Created: t1, Finished: t1.Add(time.Minute), Retries: -1}
	slow := &slowArchive{Memory: store.NewMemory(), id: old.ID, asked: make(chan struct{}, 1), gate: make(chan struct{})}
	if err := slow.Commit(&store.Batch{Services: []store.ServiceRecord{{Name: "echo", FirstSeen: t1}},
		Jobs: []*store.JobRecord{&old, &newer}}); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(slow.gate)
		}
	}
	t.Cleanup(release) // before the server stops (cleanups run last first)
	// History 1: the broker holds the newer job only.
	srv := start(t, server.Config{Store: slow, Broker: broker.Config{History: 1}})
	w := v2Worker(t, srv.WorkerEndpoint(), "echo")
	waitService(t, srv.ClientEndpoint(), "echo")

	asker := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, asker, b("MDPC02"), []byte{0x01}, b(protocol.ServerJob), protocol.EncodeMeta(protocol.Meta{}), b(old.ID))
	select {
	case <-slow.asked:
	case <-time.After(wait):
		t.Fatal("the archive was not asked")
	}

	// The read hangs; the loop goes on.
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SYNC-echo"), b("hi"))
	req := recvSkipHeartbeats(t, w, 0x05)
	expect(t, req, "MDPW02", "\x02", "*", "", "hi")
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x04}, req[2], b(""), b("ih"))
	expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", "SYNC-echo", "ih")
	if r, ok := zmqtest.TryRecv(asker, 0); ok {
		t.Fatalf("SERVER-JOB answered before the archive was read: %s", zmqtest.Join(r))
	}

	release()
	r := zmqtest.Recv(t, asker, wait)
	if len(r) != 5 {
		t.Fatalf("SERVER-JOB reply %s", zmqtest.Join(r))
	}
	var info protocol.JobInfo
	if err := json.Unmarshal(r[4], &info); err != nil {
		t.Fatal(err)
	}
	if info.ID != old.ID || info.State != protocol.JobComplete || string(info.Output) != "from the archive" {
		t.Fatalf("SERVER-JOB answered %+v", info)
	}
}

// A lookup that hangs does not hang the shutdown: Run returns within about
// a second of its context's end, the waiting client unanswered.
func TestServer_HangingLookupDoesNotHangShutdown(t *testing.T) {
	slow := &slowArchive{Memory: store.NewMemory(), id: "01HANG000000000000000000000", asked: make(chan struct{}, 1),
		gate: make(chan struct{})}
	defer close(slow.gate) // after Run has returned
	srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", Store: slow,
		Broker: broker.Config{Heartbeat: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b(protocol.ServerJob), b(slow.id))
	select {
	case <-slow.asked:
	case <-time.After(wait):
		t.Fatal("the archive was not asked")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return while a lookup hung")
	}
}
