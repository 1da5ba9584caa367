package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/protocol"
)

// Raw peers speak zmws' wire protocol on a bare DEALER socket, one OS
// thread each, with no library in between (as the anchors' zmqbench roles
// do). Against them the client library's and the worker library's own cost
// per job shows: lib client + lib worker vs raw client + raw worker.

var (
	rawV2        = protocol.Form{Version: protocol.V2}
	rawFinalMeta = protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete})
)

func rawSocket(ep string) (*zmq.Socket, error) {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return nil, err
	}
	s.SetLinger(0)
	if err := s.Connect(ep); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func sendFrames(s *zmq.Socket, frames [][]byte) error {
	parts := make([]any, len(frames))
	for i, f := range frames {
		parts[i] = f
	}
	_, err := s.SendMessage(parts...)
	return err
}

// startRawWorkers runs k raw echo workers for svc: READY with a meta frame,
// FINAL meta{complete} + reversed input for each REQUEST, a HEARTBEAT every
// second. stop sends DISCONNECT and waits.
func startRawWorkers(ctx context.Context, ep, svc string, k int) (stop func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	errs := make(chan error, k)
	for range k {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errs <- rawWorker(wctx, ep, svc)
		}()
	}
	return func() {
		cancel()
		for range k {
			<-errs
		}
	}, nil
}

func rawWorker(ctx context.Context, ep, svc string) error {
	s, err := rawSocket(ep)
	if err != nil {
		return err
	}
	defer s.Close()
	ready := protocol.EncodeWorker(protocol.Message{Form: rawV2, Cmd: protocol.CmdReady, Service: svc,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Worker: &protocol.WorkerDetails{Host: "bench", PID: 1, Name: "raw"}})}})
	heartbeat := protocol.EncodeWorker(protocol.Message{Form: rawV2, Cmd: protocol.CmdHeartbeat})
	if err := sendFrames(s, ready); err != nil {
		return err
	}
	poller := zmq.NewPoller()
	poller.Add(s, zmq.POLLIN)
	last := time.Now()
	for ctx.Err() == nil {
		if time.Since(last) > time.Second {
			if err := sendFrames(s, heartbeat); err != nil {
				return err
			}
			last = time.Now()
		}
		ps, err := poller.Poll(100 * time.Millisecond)
		if err != nil || len(ps) == 0 {
			continue
		}
		for {
			msg, err := s.RecvMessageBytes(zmq.DONTWAIT)
			if err != nil {
				break
			}
			m, err := protocol.DecodeWorker(msg)
			if err != nil || m.Cmd != protocol.CmdRequest {
				continue
			}
			var in []byte
			if len(m.Body) > 1 {
				in = m.Body[1]
			}
			reply := protocol.EncodeWorker(protocol.Message{Form: rawV2, Cmd: protocol.CmdReply, Address: m.Address,
				Body: [][]byte{rawFinalMeta, reverse(in)}})
			if err := sendFrames(s, reply); err != nil {
				return err
			}
			last = time.Now()
		}
	}
	_ = sendFrames(s, protocol.EncodeWorker(protocol.Message{Form: rawV2, Cmd: protocol.CmdDisconnect}))
	return nil
}

// rawClient is a bare DEALER that runs sync jobs one at a time.
type rawClient struct {
	s   *zmq.Socket
	req [][]byte
}

func newRawClient(ep, svc string) (*rawClient, error) {
	s, err := rawSocket(ep)
	if err != nil {
		return nil, err
	}
	s.SetRcvtimeo(20 * time.Second)
	return &rawClient{s: s, req: protocol.EncodeClient(protocol.Message{Form: rawV2, Cmd: protocol.CmdRequest,
		Service: protocol.SyncPrefixDash + svc, Body: [][]byte{protocol.EncodeMeta(protocol.Meta{}), payload}})}, nil
}

func (c *rawClient) call() error {
	if err := sendFrames(c.s, c.req); err != nil {
		return err
	}
	for {
		msg, err := c.s.RecvMessageBytes(0)
		if err != nil {
			return err
		}
		m, err := protocol.DecodeReply(msg)
		if err != nil {
			return err
		}
		if m.Cmd != protocol.CmdReply {
			continue // a PARTIAL
		}
		if n := len(m.Body); n < 2 || string(m.Body[n-1]) != want {
			return fmt.Errorf("raw client: %w: %q", errBadOutput, m.Body)
		}
		return nil
	}
}

// sectionPeers: sync jobs against a zmwsd child (no store) with raw and
// library peers, to split a job's cost between the broker and the client
// and worker libraries. The cases alternate run by run (as the exec cases
// do) and each is also compared pair by pair with raw/raw of its round.
func sectionPeers(ctx context.Context, o *opts) error {
	say("broker zmwsd child, raw vs library peers")
	z, err := startZmwsd(o.bin, o.tmp, "zmwsd-peers", "none", false)
	if err != nil {
		return err
	}
	defer z.stop()
	q, err := newClients(z.client, 1)
	if err != nil {
		return err
	}
	defer closeClients(q)
	type pc struct {
		client, worker string
		k, n           int // workers = clients = k
		label          string
		call           func(g int) error
	}
	// The same round trip through libzmq's zmq_proxy (C) in a process of
	// its own, ROUTER/DEALER, a raw DEALER echo worker behind it: the
	// issue's "bare ZeroMQ hop", measured in the same rounds.
	hop, err := startProxyHop(ctx, o)
	if err != nil {
		return err
	}
	defer hop.stop()
	n1, n8 := max(500, o.n1/2), max(1000, o.n8/2)
	cases := []*pc{{client: "raw", worker: "raw", k: 1, n: n1}, {client: "lib", worker: "raw", k: 1, n: n1},
		{client: "raw", worker: "lib", k: 1, n: n1}, {client: "lib", worker: "lib", k: 1, n: n1},
		{client: "raw", worker: "raw", k: 8, n: n8}, {client: "lib", worker: "lib", k: 8, n: n8}}
	for _, c := range cases {
		svc := fmt.Sprintf("peers-%s-%s-%d", c.client, c.worker, c.k)
		c.label = fmt.Sprintf("zmws-sync-peers where=zmwsd store=none client=%s worker=%s workers=%d clients=%d n=%d", c.client, c.worker, c.k, c.k, c.n)
		var stop func()
		if c.worker == "raw" {
			stop, err = startRawWorkers(ctx, z.worker, svc, c.k)
		} else {
			stop, err = startEchoWorkers(ctx, z.worker, svc, c.k)
		}
		if err != nil {
			return err
		}
		defer stop()
		if err := waitWorkers(ctx, q[0], one(svc), c.k, 10*time.Second); err != nil {
			return err
		}
		if c.client == "raw" {
			rcs := make([]*rawClient, c.k)
			for i := range rcs {
				rc, err := newRawClient(z.client, svc)
				if err != nil {
					return err
				}
				defer rc.s.Close()
				rcs[i] = rc
			}
			c.call = func(g int) error { return rcs[g].call() }
		} else {
			cs, err := newClients(z.client, c.k)
			if err != nil {
				return err
			}
			defer closeClients(cs)
			c.call = func(g int) error { return syncCall(ctx, cs[g], svc) }
		}
	}
	cases = append(cases, &pc{client: "raw", worker: "echo", k: 1, n: n1,
		label: fmt.Sprintf("zmq-proxy-hop proxy=zmq_proxy(C) where=child clients=1 window=1 n=%d", n1), call: func(int) error { return hop.call() }})
	results := make([][]run, len(cases))
	// CPU by process: the harness holds the clients and the workers.
	meters := make([]*cpuMeter, len(cases))
	cpu := make([]*cpuRuns, len(cases))
	for i := range cases {
		meters[i] = (&cpuMeter{}).add("harness", selfCPU)
		if i == len(cases)-1 {
			meters[i].add("broker", pidCPU(hop.kid.pid()))
		} else {
			meters[i].add("zmwsd", pidCPU(z.pid()))
		}
		cpu[i] = newCPURuns(meters[i])
	}
	for r := -1; r < o.runs; r++ {
		for i, c := range cases {
			jobs := c.n
			if r < 0 {
				jobs = max(200, c.n/20)
			}
			before := meters[i].snap()
			res, err := parallel(ctx, c.k, jobs, time.Now().Add(o.caseTime), func(g, _ int) error { return c.call(g) })
			if err != nil {
				return fmt.Errorf("%s: %w", c.label, err)
			}
			if r >= 0 {
				cpu[i].addRun(before, meters[i].snap(), res.Jobs, nil)
				out("%s", res.line(c.label, r))
				results[i] = append(results[i], res)
			}
		}
	}
	for i, c := range cases {
		out("%s", summary(c.label, results[i]))
		out("%s", cpu[i].summary(c.label))
	}
	// Each case against raw/raw with as many workers, pair by pair, and
	// the 1x1 cases against the proxy hop.
	hopIdx := len(cases) - 1
	for i, c := range cases[:hopIdx] {
		if c.k == 1 {
			var xs []float64
			for r := range results[i] {
				xs = append(xs, results[i][r].rate()/results[hopIdx][r].rate())
			}
			m, lo, hi := medMinMax(xs)
			out("SUMMARY paired zmws-sync-peers/zmq-proxy-hop client=%s worker=%s workers=1 runs=%d ratio=%.3f [%.3f..%.3f]", c.client, c.worker, len(xs), m, lo, hi)
		}
	}
	for i, c := range cases[:hopIdx] {
		base := 0
		if c.k == 8 {
			base = 4
		}
		if i == base {
			continue
		}
		var xs []float64
		for r := range results[i] {
			xs = append(xs, results[i][r].rate()/results[base][r].rate())
		}
		m, lo, hi := medMinMax(xs)
		out("SUMMARY paired zmws-sync-peers/raw-raw client=%s worker=%s workers=%d runs=%d ratio=%.3f [%.3f..%.3f]", c.client, c.worker, c.k, len(xs), m, lo, hi)
	}
	return nil
}

// proxyHop is a zmq_proxy child process with a raw echo worker behind it
// and one raw client in front.
type proxyHop struct {
	kid    *child
	client *zmq.Socket
	stopW  func()
}

func startProxyHop(ctx context.Context, o *opts) (*proxyHop, error) {
	kid, front, back, err := startProxyChild(o, "zmq-proxy")
	if err != nil {
		return nil, err
	}
	h := &proxyHop{kid: kid}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rawEcho(wctx, back)
	}()
	h.stopW = func() { cancel(); <-done }
	if h.client, err = rawSocket(front); err != nil {
		h.stop()
		return nil, err
	}
	h.client.SetRcvtimeo(20 * time.Second)
	return h, nil
}

// startProxyChild starts the harness's proxy command (zmq_proxy, C) as a
// child named name and reads back its endpoints.
func startProxyChild(o *opts, name string) (kid *child, front, back string, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", "", err
	}
	kid, err = startChild(name, filepath.Join(o.tmp, name+".log"), self, "proxy")
	if err != nil {
		return nil, "", "", err
	}
	for range 200 {
		if l := findLogLine(kid.log, "ENDPOINT back "); l != nil {
			back = strings.TrimSpace(strings.TrimPrefix(string(l), "ENDPOINT back "))
			front = strings.TrimSpace(strings.TrimPrefix(string(findLogLine(kid.log, "ENDPOINT front ")), "ENDPOINT front "))
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if front == "" || back == "" {
		kid.stop()
		return nil, "", "", fmt.Errorf("zmq proxy did not start: %s", tail(kid.log, 500))
	}
	return kid, front, back, nil
}

// rawEcho is a bare DEALER behind a zmq_proxy that sends every message
// back as it came, on an OS thread of its own, until ctx ends.
func rawEcho(ctx context.Context, ep string) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s, err := rawSocket(ep)
	if err != nil {
		return
	}
	defer s.Close()
	poller := zmq.NewPoller()
	poller.Add(s, zmq.POLLIN)
	for ctx.Err() == nil {
		ps, err := poller.Poll(100 * time.Millisecond)
		if err != nil || len(ps) == 0 {
			continue
		}
		for {
			msg, err := s.RecvMessageBytes(zmq.DONTWAIT)
			if err != nil {
				break
			}
			_ = sendFrames(s, msg)
		}
	}
}

func (h *proxyHop) call() error {
	if err := sendFrames(h.client, [][]byte{payload}); err != nil {
		return err
	}
	msg, err := h.client.RecvMessageBytes(0)
	if err != nil {
		return err
	}
	if len(msg) != 1 || string(msg[0]) != string(payload) {
		return fmt.Errorf("proxy hop: %w: %q", errBadOutput, msg)
	}
	return nil
}

func (h *proxyHop) stop() {
	if h.client != nil {
		h.client.Close()
	}
	if h.stopW != nil {
		h.stopW()
	}
	h.kid.stop()
}

// cmdProxy is the child of startProxyHop: ROUTER (clients) and DEALER
// (workers) on free loopback ports joined by zmq_proxy, until killed.
func cmdProxy(ctx context.Context, _ []string) error {
	front, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return err
	}
	back, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	for _, s := range []*zmq.Socket{front, back} {
		s.SetLinger(0)
		if err := s.Bind("tcp://127.0.0.1:*"); err != nil {
			return err
		}
	}
	fe, _ := front.GetLastEndpoint()
	be, _ := back.GetLastEndpoint()
	fmt.Printf("ENDPOINT front %s\nENDPOINT back %s\n", fe, be)
	os.Stdout.Sync()
	go func() {
		runtime.LockOSThread()
		_ = zmq.Proxy(front, back, nil) // returns when the context ends
	}()
	<-ctx.Done()
	return nil
}
