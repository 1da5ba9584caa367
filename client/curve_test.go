package client_test

import (
	"context"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/zmqtest"
)

// TestClient_CurveRoutingIDIsUnguessable: replies go to a routing id alone,
// and libzmq's own come from a counter; with keys the client picks a
// random one, so no other key can connect under it and take its replies.
func TestClient_CurveRoutingIDIsUnguessable(t *testing.T) {
	public, secret, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	router := zmqtest.Socket(t, zmq.ROUTER)
	if err := curve.ApplyServer(router, curve.KeyPair{Public: public, Secret: secret}, "zmws-client.test"); err != nil {
		t.Fatal(err)
	}
	if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := router.GetLastEndpoint()
	ownPub, ownSec, _ := zmq.NewCurveKeypair()
	seen := map[string]bool{}
	for range 3 {
		c, err := client.New(client.Config{Broker: ep, Timeout: 200 * time.Millisecond, Retries: -1,
			Curve: &curve.Client{Broker: curve.Public{Key: public}, Own: curve.KeyPair{Public: ownPub, Secret: ownSec}}})
		if err != nil {
			t.Fatal(err)
		}
		go c.Services(context.Background()) // no answer comes: it times out
		msg := zmqtest.Recv(t, router, 5*time.Second)
		c.Close()
		id := string(msg[0])
		if len(id) < 20 || id[0] == 0 || seen[id] {
			t.Fatalf("routing id %q: want a long random one, new each time", id)
		}
		seen[id] = true
	}
}
