// Package worker is the Go library for zmws workers: it announces a service
// to one or more brokers, keeps the connection alive with heartbeats, runs a
// Handler for each job and sends its output back, shaped like net/http.
//
// It sits between the broker (reached over the network, 18/MDP "MDPW02"
// with the zmws meta frame, or plain 7/MDP or 18/MDP: Config.Protocol,
// whose default finds out which the broker answers; docs/PROTOCOL.md,
// "Against a plain Majordomo broker") and the code that does the work:
// runner.Handler for command lines, or any Go function.
//
// The package's Example is a complete STR-REV worker, run against a broker
// in the same process: New with a Config (the broker endpoints, the
// service, a Handler), then Run until ctx is cancelled. ExampleExitError
// shows a job failing with an exit code.
//
// # Slots, machine and loop
//
// A Worker has Config.Concurrency slots. Each slot owns one DEALER socket with
// its own random routing id, sends its own READY [service, meta{worker details}]
// and runs at most one job at a time (plus up to Config.Prefetch waiting); to
// the broker each slot is a separate worker.
//
// A slot is two parts, as the broker and its server are. Its machine makes
// every decision and does nothing else: it takes inputs with the time (the
// broker's messages, the handler's output and return, the start of shutdown,
// the passing of time) and queues actions (connect, send, close, start or
// cancel a handler, finish), and says when it next needs the time; it has no
// socket, no goroutine and no clock, so its tests step it at chosen instants.
// Its loop, one goroutine per slot, owns the slot's sockets (ZeroMQ sockets
// are not thread-safe): it reads the clock once a turn, feeds the machine,
// does what it asks, and waits for the DEALER in the Go netpoller
// (internal/zmqfd: its ZMQ_FD, then ZMQ_EVENTS) until the machine's next
// deadline, and at most a second; without a socket, on a timer. It waits
// in no other way.
//
// The handler runs on a goroutine of its own. Its partial writes go into a
// bounded queue (64 chunks) and its result into the running record; either
// interrupts the loop's wait, but only if the loop is waiting or about to
// be, so a loop that is awake takes them on its next turn at no cost; while
// such news keeps coming the loop takes it without polling, but polls its
// socket at least every millisecond. Before blocking while a handler runs,
// the loop yields to it a few times, so that a short job's result goes out
// without a wake-up. Output is never dropped while the connection lives: when the
// broker reads slower than the handler writes, the loop keeps what the DEALER
// cannot take, stops reading the queue, and once the queue is full, Write
// blocks.
//
// # Heartbeats and reconnection
//
// A slot sends HEARTBEAT every Config.Heartbeat, always, including while a
// handler runs, so the broker does not give up on a long job. If nothing at
// all arrives from the broker for Heartbeat*Liveness, the slot closes the
// socket (linger 0) and, after a backoff, opens a fresh socket (new routing id)
// to the next endpoint in Config.Brokers, wrapping around, and sends READY.
// A DISCONNECT from the broker does the same but stays on the same endpoint:
// that broker is alive and only asks the worker to register again (after a
// broker restart, say). The backoff starts at ReconnectMin, doubles for every
// connection in a row on which no broker was heard, stops at ReconnectMax and
// gets up to 20% jitter.
//
// A job in progress when its connection is lost is cancelled (its ctx is
// done) and the slot does not send READY again until its handler returns, so
// a slot never holds two jobs. Its partial output and result are dropped with
// a warning: the broker has already requeued the job.
//
// # Results
//
// The result of ServeJob becomes a FINAL with meta{status: complete} followed
// by the returned bytes. An error makes it meta{status: failed, error: text},
// plus exit_code when the error wraps an *ExitError. A panic is recovered and
// reported as a failure. A REQUEST without a meta frame comes from a stock
// broker: the Job then has the address frame as ID and no Params, and the
// FINAL carries no meta frame (on failure its body is FAIL, job_failed, text).
//
// # Prefetch
//
// With Config.Prefetch N the READY asks a zmws broker for up to N jobs
// beyond the running one. They wait at the slot in the order they came, and
// each starts as soon as the FINAL of the one before it is sent; one beyond
// N is ignored with a warning. Jobs waiting when the connection is lost go
// with it (the broker queues them again); at shutdown they are given back at
// once, last first, with a FINAL meta{status: returned}, as is any REQUEST
// that arrives while the slot stops (see docs/PROTOCOL.md, Prefetch).
//
// # Shutdown
//
// When the ctx given to Run is cancelled, each slot stops taking jobs. An idle
// slot sends DISCONNECT and closes at once. A busy slot keeps heartbeating and
// lets its handler finish for up to Config.Grace; the result is sent, then
// DISCONNECT. The handler's ctx is not cancelled at the start of shutdown, so
// a job near its end is not thrown away; it is cancelled when the grace
// period is over. If the handler then returns an error wrapping
// context.Canceled, no result is sent and the broker requeues the job on
// DISCONNECT; any other result is still sent. A handler that ignores its ctx
// for a further second is abandoned. The DISCONNECT gets a linger of one
// second to leave. Run returns nil once every slot has stopped.
//
// # Idle hook
//
// With Config.Idle and Config.OnIdle set, OnIdle is called on a goroutine of
// its own when no slot has run a job for Idle, then again after every further
// quiet Idle, counted from when the previous call returned. Calls never
// overlap and stop when ctx is cancelled; Run waits for a call in progress.
// Jobs never wait for a call: a slot takes its job as ever.
//
// Workers of one process that should be idle together share an Idler
// (Config.Idler, NewIdler, Idler.Run): its function is called when none of
// their slots has run a job for its quiet period, with a context that ends
// (cause ErrJobStarted) as soon as any of them starts a job, so that work
// done while idle can stop at once. zmws-run's --idle-command is built on it.
//
// # Ready hook
//
// Config.Ready is called once per Run, when every slot has sent its first
// READY (connections are made in the background: a broker may not have
// heard it yet). zmws-run tells systemd READY=1 from it.
//
// # Security
//
// With Config.Curve each slot speaks CURVE to its broker, which must hold
// the secret of the public key the worker was given (an impostor on the
// broker's port gets no READY), and must authorize the worker's key for the
// service. A refused handshake, or a READY refused as forbidden (the
// broker's DISCONNECT carries the reason), is logged as an error and tried
// again after the reconnect backoff. See docs/SECURITY.md.
package worker
