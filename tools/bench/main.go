// Command bench is zmws' benchmark harness (run by scripts/bench). It
// measures, in one run, each case as the median [min..max] of several runs
// after one unmeasured warm-up, and prints RUN and SUMMARY lines in the
// format of the anchor harness in tools/anchors, so zmws and gearman,
// bare exec and raw ZeroMQ line up:
//
//	bench run -bin DIR -tmp DIR [-runs 5] [-quick] [-only broker,zmwsd,peers,exec,brokercpu,http,scale]
//	bench report [-json FILE] zmws.txt anchors/*.txt
//	bench profile -case sync1|sync8|async8 -store none|memory|bolt -cpuprofile FILE
//	bench workers -broker EP -services svc-000,svc-001 -per 10   (a child of run)
//	bench proxy                                                  (a child of run)
//	bench rawecho -connect EP -n 8                               (a child of run)
//
// Sections of run:
//
//	broker  in-process server.Server over tcp loopback, Go echo workers
//	        (worker library) and Go clients (client library) in the same
//	        process: sync 1x1 and 8x8, async 1x1 and 8x8 with no store, the
//	        memory store and the bbolt journal.
//	zmwsd   the same cases against a zmwsd child process (broker in its own
//	        process, as gearmand is in the anchors).
//	peers   sync jobs against a zmwsd child with raw DEALER peers (no
//	        library) in place of the client and/or worker library, and the
//	        same round trip through zmq_proxy (C) in a child process,
//	        alternating run by run.
//	exec    bare os/exec of rev vs zmws-run --service rev -- rev behind
//	        zmwsd children with the durable journal (zmwsd's default) and
//	        without a store, sync and async via the Go client, and via the
//	        HTTP gateway, concurrency 1 and 2. The cases alternate run by
//	        run, and ratios are also taken pair by pair.
//	brokercpu  sync 8 clients x 8 echo workers through zmwsd (no store, and
//	        the journal), libzmq's zmq_proxy (C) and gearmand -t 1, in the
//	        same rounds: CPU per job of each broker process, of the clients
//	        and of the workers (each side in a process of its own).
//	http    webhook (adnanh/webhook) and the zmws gateway running
//	        /usr/bin/echo with the query's value, driven by hey at c=1 and
//	        c=2 in the same rounds; async acceptance with the journal from
//	        16 concurrent hey clients.
//	scale   zmwsd RSS and drain rate with 100k and 1M queued jobs; 1,000
//	        workers over 100 services in child processes.
//
// Every process it starts is killed by PID when it ends (also on SIGINT,
// SIGTERM and its own -maxtime watchdog); children also get SIGKILL from the
// kernel if the harness dies. Everything listens on 127.0.0.1 with ports the
// system picks.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage: bench run|report|profile|workers [flags]   (-h after the command for its flags)`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	// Many sockets in one process (clients, worker slots with their inproc
	// pairs): lift libzmq's default cap of 1023.
	zmq.SetMaxSockets(16384)
	cmd, args := os.Args[1], os.Args[2:]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd {
	case "run":
		err = cmdRun(ctx, args)
	case "report":
		err = cmdReport(args)
	case "profile":
		err = cmdProfile(ctx, args)
	case "workers":
		err = cmdWorkers(ctx, args)
	case "proxy":
		err = cmdProxy(ctx, args)
	case "rawecho":
		err = cmdRawEcho(ctx, args)
	default:
		usage()
	}
	stopChildren()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// say logs progress on stderr.
func say(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// out prints a result line on stdout.
func out(format string, a ...any) { fmt.Printf(format+"\n", a...) }

// watchdog ends the process (killing its children) after d, whatever blocks.
func watchdog(d time.Duration) {
	time.AfterFunc(d, func() {
		say("maxtime %v exceeded: stopping children and exiting", d)
		stopChildren()
		os.Exit(3)
	})
}
