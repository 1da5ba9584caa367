package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
)

// TestServer_EventsOnlyForSubscribedTopics: the events socket sees its
// subscriptions, and the server publishes only the events someone wants:
// a "completed" subscriber gets completed events and nothing is built for
// queued or started; a "" subscriber gets all three; when it disconnects,
// its unsubscription (libzmq sends one when a topic's last subscriber
// leaves) brings the server back to completed only.
func TestServer_EventsOnlyForSubscribedTopics(t *testing.T) {
	srv := start(t, server.Config{EventsBind: "tcp://127.0.0.1:*", Broker: broker.Config{Heartbeat: time.Minute}})
	done := zmqtest.Connect(t, zmq.SUB, srv.EventsEndpoint())
	done.SetSubscribe("completed")
	w := v2Worker(t, srv.WorkerEndpoint(), "EV")
	waitService(t, srv.ClientEndpoint(), "EV")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())

	// job runs one sync job and returns how many events the server
	// published for it, once the completed subscriber has its event (the
	// job's last), or -1 if it got none.
	job := func() int {
		t.Helper()
		before := server.EventsSent(srv)
		zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SYNC-EV"), b("x"))
		req := recvSkipHeartbeats(t, w, 0x05)
		zmqtest.Send(t, w, b("MDPW02"), []byte{0x04}, req[2], b(""), b("y"))
		expect(t, zmqtest.Recv(t, c, wait), "MDPC02", "\x03", "SYNC-EV", "y")
		ev, ok := zmqtest.TryRecv(done, 200*time.Millisecond)
		if !ok {
			return -1
		}
		if string(ev[0]) != "completed" {
			t.Fatalf("the completed subscriber got %s", zmqtest.Join(ev))
		}
		return int(server.EventsSent(srv) - before)
	}
	// until runs jobs until one publishes want events.
	until := func(phase string, want int) {
		t.Helper()
		zmqtest.Eventually(t, fmt.Sprintf("%s: a job with %d events published", phase, want), wait, func() bool { return job() == want })
	}

	// PUB/SUB joins are asynchronous: run jobs until the subscriber is in.
	until("completed subscriber", 1)
	if n := job(); n != 1 {
		t.Fatalf("completed subscriber: %d events published for a job, want 1", n)
	}

	all := zmqtest.Connect(t, zmq.SUB, srv.EventsEndpoint())
	all.SetSubscribe("")
	until("with a subscriber to everything", 3)
	var got []string // the events of the last job are its last three
	for {
		ev, ok := zmqtest.TryRecv(all, 100*time.Millisecond)
		if !ok {
			break
		}
		got = append(got, string(ev[0]))
	}
	if len(got) < 3 || strings.Join(got[len(got)-3:], ",") != "queued,started,completed" {
		t.Fatalf("the subscriber to everything got %v", got)
	}

	all.Close() // the only subscriber to "" leaves
	until("after the subscriber to everything left", 1)
	if n := job(); n != 1 {
		t.Fatalf("after the subscriber to everything left: %d events published for a job, want 1", n)
	}
}
