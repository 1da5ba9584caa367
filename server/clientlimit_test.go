package server_test

import (
	"strings"
	"testing"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
)

// A client is limited by its network address, read from each message:
// one sending past --client-rate from many connections is refused
// rate_limited for the excess, a client from another address keeps its own
// allowance, and the in-process gateway is not limited by it.
func TestServer_ClientRateByAddress(t *testing.T) {
	srv := start(t, server.Config{ClientInproc: "inproc://" + t.Name(),
		Broker: broker.Config{ClientRate: broker.Rate{PerSecond: 0.001, Burst: 5}}})
	knownService(t, srv, "S")
	port := srv.ClientEndpoint()[strings.LastIndex(srv.ClientEndpoint(), ":")+1:]
	// libzmq's "tcp://SOURCE;DESTINATION" picks the source address: any
	// of 127.0.0.0/8 is this machine's loopback.
	from := func(src string) *zmq.Socket {
		return zmqtest.Connect(t, zmq.DEALER, "tcp://"+src+":0;127.0.0.1:"+port)
	}
	count := func(sockets func() *zmq.Socket, n int) (accepted, limited int) {
		for range n {
			switch md := submit(t, sockets(), "S", protocol.Meta{}); {
			case md.Status == protocol.StatusAccepted:
				accepted++
			case md.Code == protocol.CodeRateLimited:
				limited++
			default:
				t.Fatalf("reply %+v", md)
			}
		}
		return accepted, limited
	}
	// A new connection for each job: the address is the client.
	if a, l := count(func() *zmq.Socket { return from("127.0.0.2") }, 12); a != 5 || l != 7 {
		t.Fatalf("127.0.0.2, 12 jobs from 12 connections: %d accepted, %d limited; want its burst of 5 and 7 refused", a, l)
	}
	c3 := from("127.0.0.3")
	if a, l := count(func() *zmq.Socket { return c3 }, 6); a != 5 || l != 1 {
		t.Fatalf("127.0.0.3 after 127.0.0.2: %d accepted, %d limited; want its own 5", a, l)
	}
	gw := zmqtest.Connect(t, zmq.DEALER, "inproc://"+t.Name())
	if a, _ := count(func() *zmq.Socket { return gw }, 20); a != 20 {
		t.Fatalf("the in-process peer: %d of 20 accepted; want all", a)
	}
}
