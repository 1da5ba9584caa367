package server_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

const canary = "CANARY-7f3a"

// TestCapture_CanaryNeverOnTheWire captures loopback traffic while a job
// whose parameter, input and output carry a canary runs through the
// broker: with CURVE the canary is in no packet. The same run without
// CURVE is the control: there the capture must show it, or the capture
// proves nothing.
func TestCapture_CanaryNeverOnTheWire(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed (scripts/test installs it: apt-get install tcpdump)")
	}
	if os.Geteuid() != 0 {
		t.Skip("capturing on loopback needs root (CAP_NET_RAW); CI runs as root")
	}
	for _, secure := range []bool{false, true} {
		name := map[bool]string{false: "NULL (control)", true: "CURVE"}[secure]
		t.Run(name, func(t *testing.T) {
			if secure {
				srv, f, _ := startSecure(t)
				wk, ck := f.Client(t, "wall"), f.Client(t, "alice")
				pcap := capture(t, tcpdump, srv)
				runCanaryJob(t, srv, wk, ck)
				if n, found := pcap(); found {
					t.Fatalf("the canary %s is on the wire under CURVE (%d bytes captured)", canary, n)
				} else {
					t.Logf("%d bytes captured, no canary", n)
				}
				return
			}
			srv := start(t, server.Config{})
			pcap := capture(t, tcpdump, srv)
			runCanaryJob(t, srv, nil, nil)
			if n, found := pcap(); !found {
				t.Fatalf("control: the canary is not in the %d bytes captured without CURVE: the capture is blind", n)
			}
		})
	}
}

// runCanaryJob runs a sync job carrying the canary in its parameter and
// input; the worker echoes both.
func runCanaryJob(t *testing.T, srv *server.Server, wk, ck *curve.Client) {
	t.Helper()
	w, err := worker.New(worker.Config{
		Brokers: []string{srv.WorkerEndpoint()}, Service: "ECHO", Curve: wk, Heartbeat: 100 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			return append([]byte(j.Params["p"]+" "), bytes.Join(j.Input, nil)...), nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "worker", w.Run)
	c := newClient(t, srv.ClientEndpoint(), ck)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	zmqtest.Eventually(t, "ECHO registered", wait, func() bool {
		st, err := c.ServiceStatus(ctx, "ECHO")
		return err == nil && st == "200"
	})
	res, err := c.Call(ctx, "ECHO", client.Request{Params: map[string]string{"p": canary}, Input: []byte(canary + "-input")}, nil)
	if err != nil || !res.OK() || string(res.Output) != canary+" "+canary+"-input" {
		t.Fatalf("job: %+v, %v", res, err)
	}
}

// capture starts tcpdump on loopback for srv's two ports and returns a
// func that stops it and reports the bytes captured and whether the
// canary is among them.
func capture(t *testing.T, tcpdump string, srv *server.Server) func() (int, bool) {
	t.Helper()
	var ports []string
	for _, ep := range []string{srv.ClientEndpoint(), srv.WorkerEndpoint()} {
		u, err := url.Parse(ep)
		if err != nil {
			t.Fatal(err)
		}
		_, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, "tcp port "+port)
	}
	file := filepath.Join(t.TempDir(), "lo.pcap")
	cmd := exec.Command(tcpdump, "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-Z", "root", "-w", file, strings.Join(ports, " or "))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	var errs bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			errs.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "listening on") {
				once = true
				close(listening)
			}
		}
	}()
	select {
	case <-listening:
	case <-time.After(wait):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("tcpdump did not start listening: %s", errs.String())
	}
	stopped := false
	stop := func() (int, bool) {
		if !stopped {
			stopped = true
			// A last packet in the clear marks the end: once the file holds
			// it, it holds everything before it.
			markEnd(t, srv.ClientEndpoint())
			zmqtest.Eventually(t, "the end marker in the capture", wait, func() bool {
				data, _ := os.ReadFile(file)
				return bytes.Contains(data, []byte(endMarker))
			})
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return len(data), bytes.Contains(data, []byte(canary))
	}
	t.Cleanup(func() { stop() })
	return stop
}

const endMarker = "END-OF-CAPTURE-e41b"

// markEnd sends endMarker to a ZeroMQ endpoint over plain TCP (libzmq
// drops the connection: it is no ZMTP greeting).
func markEnd(t *testing.T, ep string) {
	t.Helper()
	u, err := url.Parse(ep)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(endMarker)); err != nil {
		t.Fatal(err)
	}
}
