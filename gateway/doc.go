// Package gateway is zmws's HTTP front door: it turns HTTP requests into
// jobs and broker queries, for clients that have no ZeroMQ library (a web
// app, a cron job, curl).
//
// It is a plain broker client. In zmwsd it reaches the broker over inproc
// endpoints (server.Config.ClientInproc and EventsInproc), so there is no
// network hop, through a Broker backend: one client.Client, whose one
// socket carries every request in flight at once, each matched to its
// replies by reference, so a slow synchronous job never stalls another
// request, and one that gives up leaves the others alone.
//
//	b, err := gateway.NewBroker(gateway.BrokerConfig{
//		Broker: "inproc://zmwsd-clients",
//		Events: "inproc://zmwsd-events",
//	})
//	if err != nil { ... }
//	defer b.Close()
//	gw, err := gateway.New(gateway.Config{Backend: b, CORS: []string{"*"}})
//	if err != nil { ... }
//	ln, err := net.Listen("tcp", "127.0.0.1:5580")
//	if err != nil { ... }
//	err = gw.Serve(ctx, ln) // until ctx ends, then a graceful shutdown
//
// Routes (docs/HTTP.md is the reference):
//
//	GET|POST /NAME                 202 {"job_id", "service"}, Location: /jobs/{id}
//	GET|POST /SYNC-NAME, /SYNC:NAME the output, streamed; outcome in headers or trailers
//	GET /SERVER-WORKERS, -JOBS, -ACTIVE, -QUEUE, -SERVICES   the broker's JSON
//	GET /SERVER-WORKERS?all=1      the gone workers too
//	GET /jobs/{id}[?wait=30s]      the job's state, optionally after waiting for its end
//	DELETE /jobs/{id}, POST /jobs/{id}/retry   cancel, retry (admin)
//	POST /services/{name}/pause|resume|drain, /workers/{identity}/drain   (admin: control.go)
//	GET /healthz                   200 when the broker answers and its journal works, 503 otherwise
//	GET /metrics                   Prometheus metrics (Config.Metrics; admin tokens only)
//	GET /, /ui/                    the live web page (ui.go, docs/UI.md): embedded files, no token needed
//	GET /ui/events                 the broker's job events as Server-Sent Events (Config.Events, events.go)
//
// Parameters come from the query string and from a form or JSON object
// body; any other body is the job's input. Errors are JSON
// {"error": "...", "code": "..."} with a status that says what went wrong.
//
// Requests whose Host names no address of the gateway (Config.Hosts adds
// names) get 421, and browser requests from another origin that run or
// change jobs get 403 unless Config.CORS allows the origin (origin.go).
//
// With Config.Tokens every route but /healthz (and OPTIONS) needs an
// "Authorization: Bearer <token>" header whose token's auth.Rights cover the
// request: 401 without a valid token, 403 outside its rights. With
// Config.TLS (LoadCerts) Serve speaks HTTPS. Both reload while serving
// (auth.TokenSet.Reload, Certs.Reload).
//
// The handlers reach the broker only through the Backend interface, so they
// are tested with a fake one.
package gateway
