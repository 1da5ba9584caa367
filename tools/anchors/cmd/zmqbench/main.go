// zmqbench: the raw ZeroMQ round-trip limit over tcp://127.0.0.1 with
// github.com/pebbe/zmq4 (cgo over libzmq), i.e. the ceiling any broker built
// on it can reach. One binary, several roles, each normally its own process:
//
//	echo    ROUTER, binds -bind, sends every message back (broker-less echo)
//	proxy   binds -front (ROUTER, clients) and -back (workers); -proxy c:
//	        libzmq's zmq_proxy with a DEALER backend (C speed, round-robin,
//	        pipelined to workers); -proxy lru: a Go poll loop with a ROUTER
//	        backend that gives each worker one job at a time (the
//	        load-balancing pattern behind Majordomo / Paranoid Pirate)
//	worker  DEALER, connects -connect (a proxy's -back), echoes; -lru sends
//	        READY first and is what -proxy lru expects; -workers K runs K
//	        such sockets in one process
//	client  C DEALER sockets connect -connect and keep a window of W
//	        requests outstanding each; reports round trips/s and latency
//	tcpecho, tcpclient  the same echo round trip over plain Go net.TCPConn
//	        (fixed-size messages, no ZeroMQ): the machine's loopback and
//	        scheduler floor, to tell ZeroMQ's cost from the machine's
//
// Every role ends by itself after -maxtime.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/tools/anchors/internal/stats"
)

func die(what string, err error) {
	fmt.Fprintf(os.Stderr, "zmqbench %s: %v\n", what, err)
	os.Exit(1)
}

func newSock(t zmq.Type) *zmq.Socket {
	s, err := zmq.NewSocket(t)
	if err != nil {
		die("socket", err)
	}
	s.SetLinger(0)
	s.SetSndhwm(100000)
	s.SetRcvhwm(100000)
	return s
}

func endpoint(s *zmq.Socket, what string) {
	ep, _ := s.GetLastEndpoint()
	fmt.Printf("ENDPOINT %s %s\n", what, ep)
}

func echo(bind string) {
	runtime.LockOSThread()
	s := newSock(zmq.ROUTER)
	if err := s.Bind(bind); err != nil {
		die("bind", err)
	}
	endpoint(s, "echo")
	for {
		msg, err := s.RecvMessageBytes(0)
		if err != nil {
			die("echo recv", err)
		}
		if _, err := s.SendMessage(msg); err != nil {
			die("echo send", err)
		}
	}
}

func worker(connect string, lru bool) {
	runtime.LockOSThread()
	s := newSock(zmq.DEALER)
	if err := s.Connect(connect); err != nil {
		die("connect", err)
	}
	if lru {
		s.SendMessage("READY")
	}
	for {
		msg, err := s.RecvMessageBytes(0)
		if err != nil {
			die("worker recv", err)
		}
		if _, err := s.SendMessage(msg); err != nil {
			die("worker send", err)
		}
	}
}

func proxy(front, back, kind string) {
	runtime.LockOSThread()
	f := newSock(zmq.ROUTER)
	if err := f.Bind(front); err != nil {
		die("bind front", err)
	}
	endpoint(f, "front")
	if kind == "c" {
		b := newSock(zmq.DEALER)
		if err := b.Bind(back); err != nil {
			die("bind back", err)
		}
		endpoint(b, "back")
		die("proxy", zmq.Proxy(f, b, nil))
	}
	b := newSock(zmq.ROUTER)
	if err := b.Bind(back); err != nil {
		die("bind back", err)
	}
	endpoint(b, "back")
	var ready [][]byte // idle workers, least recently used first
	both := zmq.NewPoller()
	both.Add(b, zmq.POLLIN)
	both.Add(f, zmq.POLLIN)
	backOnly := zmq.NewPoller()
	backOnly.Add(b, zmq.POLLIN)
	for {
		p := backOnly
		if len(ready) > 0 {
			p = both
		}
		polled, err := p.Poll(-1)
		if err != nil {
			die("poll", err)
		}
		for _, ps := range polled {
			if ps.Events&zmq.POLLIN == 0 {
				continue
			}
			switch ps.Socket {
			case b: // [worker, READY] or [worker, client, payload]
				msg, err := b.RecvMessageBytes(0)
				if err != nil {
					die("back recv", err)
				}
				ready = append(ready, msg[0])
				if len(msg) > 2 {
					f.SendMessage(msg[1:])
				}
			case f: // [client, payload] -> [worker, client, payload]
				msg, err := f.RecvMessageBytes(0)
				if err != nil {
					die("front recv", err)
				}
				w := ready[0]
				ready = ready[1:]
				b.SendMessage(w, msg)
			}
		}
	}
}

func tcpEcho(bind string) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		die("listen", err)
	}
	fmt.Printf("ENDPOINT tcpecho %s\n", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			die("accept", err)
		}
		c.(*net.TCPConn).SetNoDelay(true)
		go func() { io.Copy(c, c); c.Close() }()
	}
}

// tcpClientRun: like clientRun, over plain TCP; messages are size bytes.
func tcpClientRun(conns []net.Conn, n, w, size int) (stats.Run, error) {
	per := n / len(conns)
	lats := make([][]time.Duration, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for ci, c := range conns {
		wg.Add(1)
		go func(ci int, c net.Conn) {
			defer wg.Done()
			sent := make([]time.Time, per)
			lat := make([]time.Duration, 0, per)
			out := make([]byte, size)
			in := make([]byte, size)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			send := func(seq int) error {
				binary.LittleEndian.PutUint64(out, uint64(seq))
				sent[seq] = time.Now()
				_, err := c.Write(out)
				return err
			}
			<-start
			ns := 0
			for ns < w && ns < per {
				if errs[ci] = send(ns); errs[ci] != nil {
					return
				}
				ns++
			}
			for got := 0; got < per; got++ {
				if _, err := io.ReadFull(c, in); err != nil {
					errs[ci] = err
					return
				}
				now := time.Now()
				seq := int(binary.LittleEndian.Uint64(in))
				if seq < 0 || seq >= per {
					errs[ci] = fmt.Errorf("bad seq %d", seq)
					return
				}
				lat = append(lat, now.Sub(sent[seq]))
				if ns < per {
					if errs[ci] = send(ns); errs[ci] != nil {
						return
					}
					ns++
				}
			}
			lats[ci] = lat
		}(ci, c)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	el := time.Since(t0)
	var all []time.Duration
	for i := range conns {
		if errs[i] != nil {
			return stats.Run{}, errs[i]
		}
		all = append(all, lats[i]...)
	}
	return stats.Run{Jobs: len(all), Elapsed: el, P50: stats.Pct(all, 50), P99: stats.Pct(all, 99), Max: stats.Pct(all, 100)}, nil
}

// clientRun: each of C sockets sends n/C requests keeping w outstanding.
func clientRun(socks []*zmq.Socket, n, w, size int) (stats.Run, error) {
	per := n / len(socks)
	lats := make([][]time.Duration, len(socks))
	errs := make([]error, len(socks))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for ci, s := range socks {
		wg.Add(1)
		go func(ci int, s *zmq.Socket) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			sent := make([]time.Time, per)
			lat := make([]time.Duration, 0, per)
			buf := make([]byte, size)
			send := func(seq int) error {
				binary.LittleEndian.PutUint64(buf, uint64(seq))
				sent[seq] = time.Now()
				_, err := s.SendBytes(buf, 0)
				return err
			}
			<-start
			ns := 0
			for ns < w && ns < per {
				if errs[ci] = send(ns); errs[ci] != nil {
					return
				}
				ns++
			}
			for got := 0; got < per; got++ {
				b, err := s.RecvBytes(0)
				if err != nil {
					errs[ci] = fmt.Errorf("recv after %d replies: %w", got, err)
					return
				}
				now := time.Now()
				seq := int(binary.LittleEndian.Uint64(b))
				if seq < 0 || seq >= per {
					errs[ci] = fmt.Errorf("bad seq %d", seq)
					return
				}
				lat = append(lat, now.Sub(sent[seq]))
				if ns < per {
					if errs[ci] = send(ns); errs[ci] != nil {
						return
					}
					ns++
				}
			}
			lats[ci] = lat
		}(ci, s)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	el := time.Since(t0)
	var all []time.Duration
	for i := range socks {
		if errs[i] != nil {
			return stats.Run{}, errs[i]
		}
		all = append(all, lats[i]...)
	}
	return stats.Run{Jobs: len(all), Elapsed: el, P50: stats.Pct(all, 50), P99: stats.Pct(all, 99), Max: stats.Pct(all, 100)}, nil
}

func main() {
	role := flag.String("role", "client", "echo | proxy | worker | client | tcpecho | tcpclient")
	bind := flag.String("bind", "tcp://127.0.0.1:*", "echo: endpoint to bind (tcpecho: host:port, default 127.0.0.1:0)")
	front := flag.String("front", "tcp://127.0.0.1:*", "proxy: client-side endpoint to bind")
	back := flag.String("back", "tcp://127.0.0.1:*", "proxy: worker-side endpoint to bind")
	kind := flag.String("proxy", "c", "proxy: c (zmq_proxy, DEALER backend) | lru (Go loop, ROUTER backend)")
	connect := flag.String("connect", "", "worker/client: endpoint to connect")
	lru := flag.Bool("lru", false, "worker: announce READY (for -proxy lru)")
	nworkers := flag.Int("workers", 1, "worker: worker sockets in this process (one goroutine each)")
	clients := flag.Int("clients", 1, "client: concurrent DEALER sockets")
	window := flag.Int("window", 1, "client: outstanding requests per socket")
	n := flag.Int("n", 50000, "client: round trips per run (all sockets together)")
	size := flag.Int("size", 32, "client: payload bytes (>= 8)")
	runs := flag.Int("runs", 5, "client: measured runs (median reported)")
	warm := flag.Int("warmup", 2000, "client: round trips in one unmeasured warm-up run")
	label := flag.String("label", "", "client: label for the report lines")
	maxTime := flag.Duration("maxtime", 60*time.Second, "hard bound: the process exits after this long")
	flag.Parse()
	time.AfterFunc(*maxTime, func() {
		if *role == "client" || *role == "tcpclient" {
			fmt.Fprintln(os.Stderr, "zmqbench: maxtime exceeded, exiting")
			os.Exit(3)
		}
		os.Exit(0)
	})
	if *size < 8 {
		*size = 8
	}
	switch *role {
	case "echo":
		echo(*bind)
	case "tcpecho":
		if *bind == "tcp://127.0.0.1:*" {
			*bind = "127.0.0.1:0"
		}
		tcpEcho(*bind)
	case "tcpclient":
		conns := make([]net.Conn, *clients)
		for i := range conns {
			c, err := net.DialTimeout("tcp", *connect, 5*time.Second)
			if err != nil {
				die("dial", err)
			}
			c.(*net.TCPConn).SetNoDelay(true)
			conns[i] = c
		}
		lab := fmt.Sprintf("tcp %s clients=%d window=%d n=%d size=%d", *label, *clients, *window, *n, *size)
		if *warm > 0 {
			if _, err := tcpClientRun(conns, *warm, *window, *size); err != nil {
				die("warm-up", err)
			}
		}
		var rs []stats.Run
		for i := 0; i < *runs; i++ {
			r, err := tcpClientRun(conns, *n, *window, *size)
			if err != nil {
				die("run", err)
			}
			fmt.Println(r.Line(lab, i))
			rs = append(rs, r)
		}
		fmt.Println(stats.Summary(lab, rs))
	case "worker":
		for i := 1; i < *nworkers; i++ {
			go worker(*connect, *lru)
		}
		worker(*connect, *lru)
	case "proxy":
		proxy(*front, *back, *kind)
	case "client":
		if *connect == "" {
			die("client", fmt.Errorf("-connect is required"))
		}
		socks := make([]*zmq.Socket, *clients)
		for i := range socks {
			socks[i] = newSock(zmq.DEALER)
			socks[i].SetRcvtimeo(5 * time.Second)
			if err := socks[i].Connect(*connect); err != nil {
				die("connect", err)
			}
		}
		lab := fmt.Sprintf("zmq %s clients=%d window=%d n=%d size=%d", *label, *clients, *window, *n, *size)
		if *warm > 0 {
			if _, err := clientRun(socks, *warm, *window, *size); err != nil {
				die("warm-up", err)
			}
		}
		var rs []stats.Run
		for i := 0; i < *runs; i++ {
			r, err := clientRun(socks, *n, *window, *size)
			if err != nil {
				die("run", err)
			}
			fmt.Println(r.Line(lab, i))
			rs = append(rs, r)
		}
		fmt.Println(stats.Summary(lab, rs))
	default:
		die("role", fmt.Errorf("unknown %q", *role))
	}
}
