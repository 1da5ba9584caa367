// Package testbroker runs a real zmws server for tests of the packages
// around it (zmws-run, the runner).
package testbroker

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
)

// Start runs a server on random loopback ports (heartbeat 200 ms, liveness
// 5) until the test ends and returns it with a client of it.
func Start(t testing.TB) (*server.Server, *client.Client) {
	t.Helper()
	srv, err := server.New(server.Config{
		ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*",
		Broker: broker.Config{Heartbeat: 200 * time.Millisecond, Liveness: 5},
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "server").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "server", srv.Run)
	c, err := client.New(client.Config{Broker: srv.ClientEndpoint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}
