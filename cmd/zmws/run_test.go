package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// startServer runs a broker with its client socket bound to clientBind
// until the returned stop is called (or the test ends).
func startServer(t *testing.T, clientBind, workerBind string) (srv *server.Server, stop func()) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	srv, err := server.New(server.Config{ClientBind: clientBind, WorkerBind: workerBind,
		Broker: broker.Config{Heartbeat: 100 * time.Millisecond}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("broker did not stop")
		}
	}
	t.Cleanup(stop)
	return srv, stop
}

// startWorker runs a worker for service until the returned stop is called.
func startWorker(t *testing.T, endpoint, service string, h worker.HandlerFunc) (stop func()) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	w, err := worker.New(worker.Config{Brokers: []string{endpoint}, Service: service, Handler: h,
		Heartbeat: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestCLI_RunNoWorkerSaysSoAndTimesOut: `zmws run` once waited silently
// forever on a known service with no live worker; now it says so on
// stderr at once, and --timeout ends it with exit status 124.
func TestCLI_RunNoWorkerSaysSoAndTimesOut(t *testing.T) {
	srv, _ := startServer(t, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
	r := rig{client: srv.ClientEndpoint(), events: srv.EventsEndpoint()}
	stopWorker := startWorker(t, srv.WorkerEndpoint(), "GONE", func(context.Context, *worker.Job) ([]byte, error) { return nil, nil })
	zmqtest.Eventually(t, "GONE registered", wait, func() bool {
		out, _, err := r.zmws(t, "", "workers", "-o", "json")
		return err == nil && strings.Contains(out, "GONE")
	})
	stopWorker()
	zmqtest.Eventually(t, "GONE's worker gone", wait, func() bool {
		out, _, err := r.zmws(t, "", "workers", "-o", "json")
		return err == nil && !strings.Contains(out, "GONE")
	})

	_, errOut, err := r.zmws(t, "", "--timeout", "300ms", "run", "GONE")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != exitTimeout {
		t.Fatalf("zmws run GONE --timeout 300ms: %v, want exit status %d", err, exitTimeout)
	}
	if !strings.Contains(errOut, "no worker is connected for service GONE") || !strings.Contains(errOut, "did not finish within --timeout 300ms") {
		t.Fatalf("stderr %q: want the no-worker notice and the timeout", errOut)
	}
}

// TestMain lets the test binary play a broker process, for tests that
// kill one: with ZMWS_TEST_BROKER set to "CLIENT WORKER" endpoints it serves
// them, prints the bound endpoints on one line, and runs until killed.
func TestMain(m *testing.M) {
	if eps := os.Getenv("ZMWS_TEST_BROKER"); eps != "" {
		cep, wep, _ := strings.Cut(eps, " ")
		srv, err := server.New(server.Config{ClientBind: cep, WorkerBind: wep, Broker: broker.Config{Heartbeat: 100 * time.Millisecond}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(srv.ClientEndpoint(), srv.WorkerEndpoint())
		if err := srv.Run(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// brokerProcess starts the test binary as a broker on the endpoints
// (tcp://127.0.0.1:* for any port) and returns the bound ones; the process
// is killed with SIGKILL by kill, or at the end of the test.
func brokerProcess(t *testing.T, cep, wep string) (boundC, boundW string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ZMWS_TEST_BROKER="+cep+" "+wep)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill = sync.OnceFunc(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	t.Cleanup(kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("broker process: %v", err)
	}
	boundC, boundW, _ = strings.Cut(strings.TrimSpace(line), " ")
	return boundC, boundW, kill
}

// TestCLI_RunEndsWhenTheBrokerDies: `zmws run` once hung forever
// when the broker died (kill -9) during a sync job, even after the broker
// was back. Now, after --liveness of silence it asks the broker about its
// job: the restarted broker no longer knows it (sync jobs are not
// journaled), and run exits 1 saying so; with no broker back, it exits
// saying the broker does not answer.
func TestCLI_RunEndsWhenTheBrokerDies(t *testing.T) {
	for _, restart := range []bool{true, false} {
		t.Run(fmt.Sprint("restart=", restart), func(t *testing.T) {
			cep, wep, kill := brokerProcess(t, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
			r := rig{client: cep}
			started := make(chan struct{}, 1)
			startWorker(t, wep, "SLOW", func(ctx context.Context, j *worker.Job) ([]byte, error) {
				started <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			})
			zmqtest.Eventually(t, "SLOW registered", wait, func() bool {
				out, _, err := r.zmws(t, "", "services", "-o", "json")
				return err == nil && strings.Contains(out, "SLOW")
			})
			type result struct {
				errOut string
				err    error
			}
			ran := make(chan result, 1)
			go func() {
				// Each probe of the quiet job waits --liveness for its answer.
				_, errOut, err := r.zmws(t, "", "--timeout", "20s", "run", "--liveness", "200ms", "SLOW")
				ran <- result{errOut, err}
			}()
			<-started
			kill()
			want := "does not answer"
			if restart {
				brokerProcess(t, cep, wep) // the same endpoints: the client reconnects
				want = "job lost by the broker"
			}
			select {
			case res := <-ran:
				if res.err == nil || !strings.Contains(res.err.Error(), want) {
					t.Fatalf("zmws run after kill -9 of the broker: %v (stderr %q), want %q", res.err, res.errOut, want)
				}
				t.Logf("zmws run after kill -9 of the broker: %v", res.err)
			case <-time.After(30 * time.Second):
				t.Fatal("zmws run still waiting 30 s after the broker died")
			}
		})
	}
}
