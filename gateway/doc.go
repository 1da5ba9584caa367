// Package gateway is zmws's HTTP front door: it turns HTTP requests into
// jobs and broker queries, for clients that have no ZeroMQ library (a web
// app, a cron job, curl).
//
// It is a plain broker client. In zmwsd it reaches the broker over inproc
// endpoints (server.Config.ClientInproc and EventsInproc), so there is no
// network hop, through a Pool of client.Clients: a client.Client runs one
// request at a time, so every HTTP request borrows one of its own, and a
// slow synchronous job never stalls another request.
//
//	pool, err := gateway.NewPool(gateway.PoolConfig{
//		Broker: "inproc://zmwsd-clients",
//		Events: "inproc://zmwsd-events",
//	})
//	if err != nil { ... }
//	defer pool.Close()
//	gw, err := gateway.New(gateway.Config{Backend: pool, CORS: []string{"*"}})
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
//	GET /jobs/{id}[?wait=30s]      the job's state, optionally after waiting for its end
//	GET /healthz                   200 when the broker answers and its journal works, 503 otherwise
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
