package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/curvetest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// BenchmarkSyncRoundTrip measures one sync job through a real server and a
// Go worker on loopback, without CURVE and with it, in one run:
//
//	go test -run '^$' -bench SyncRoundTrip -count 5 ./server
func BenchmarkSyncRoundTrip(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := map[bool]string{false: "NULL", true: "CURVE"}[secure]
		b.Run(name, func(b *testing.B) {
			cfg := server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", Logger: zerolog.Nop()}
			var wk, ck *curve.Client
			if secure {
				f := curvetest.New(b, secureEntries)
				cfg.Curve = &server.Curve{Key: f.Broker, Keys: f.Keys(b)}
				wk, ck = f.Client(b, "wall"), f.Client(b, "alice")
			}
			srv, err := server.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			zmqtest.Go(b, "server", srv.Run)
			w, err := worker.New(worker.Config{Brokers: []string{srv.WorkerEndpoint()}, Service: "ECHO", Curve: wk,
				Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) { return []byte("ok"), nil })})
			if err != nil {
				b.Fatal(err)
			}
			zmqtest.Go(b, "worker", w.Run)
			c, err := client.New(client.Config{Broker: srv.ClientEndpoint(), Curve: ck})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			zmqtest.Eventually(b, "ECHO registered", 5*time.Second, func() bool {
				st, err := c.ServiceStatus(ctx, "ECHO")
				return err == nil && st == "200"
			})
			req := client.Request{Params: map[string]string{"str": "Hello, world"}}
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Call(ctx, "ECHO", req, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
