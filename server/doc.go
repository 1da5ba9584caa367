// Package server runs the broker over ZeroMQ. One goroutine (Run's) owns the
// client and worker ROUTER sockets, the events XPUB sockets (whose
// subscriptions tell the broker which events to build) and the
// broker.Broker: it polls until the broker's next deadline (capped so a
// cancelled context is seen within 100 ms), feeds the broker the time and
// each message, and sends what the broker returns, never blocking on a slow
// peer (ROUTER_MANDATORY and DONTWAIT: an unreachable worker is dropped and
// its job requeued at once).
//
// With a Config.Store, two goroutines beside the loop do the journal's
// I/O, so a slow disk never holds the loop up: the committer (commit.go)
// writes the broker's batches, and the reader (lookup.go) answers the
// broker's archive lookups (broker.Lookup), each waking the loop through an
// inproc socket when it is done.
//
// With Config.Metrics the server registers a Prometheus collector: the
// broker counts jobs (broker.Config.Stats) and the loop its messages and
// turns, in plain fields on its own goroutine, and a scrape asks the loop
// for a copy between turns (metrics.go; docs/METRICS.md).
//
//	srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:5555", WorkerBind: "tcp://127.0.0.1:5556"})
//	if err != nil { return err }
//	return srv.Run(ctx) // until ctx is cancelled; workers get DISCONNECT
package server
