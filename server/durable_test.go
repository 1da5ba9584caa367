package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
)

// TestMain lets the test binary play a zmwsd that a test kills with SIGKILL.
func TestMain(m *testing.M) {
	if dir := os.Getenv("ZMWS_TEST_BROKER_CHILD"); dir != "" {
		os.Exit(childBroker(dir))
	}
	if dir := os.Getenv("ZMWS_TEST_SCHEDULE_CHILD"); dir != "" {
		os.Exit(childScheduler(dir))
	}
	os.Exit(m.Run())
}

// childBroker runs a durable server on random ports (or on the client and
// worker endpoints in ZMWS_TEST_BROKER_BIND), prints its client and worker
// endpoints on one line, and serves until killed.
func childBroker(dir string) int {
	st, err := store.OpenBolt(filepath.Join(dir, "zmws.db"), store.BoltOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	clientEP, workerEP := "tcp://127.0.0.1:*", "tcp://127.0.0.1:*"
	if eps := strings.Fields(os.Getenv("ZMWS_TEST_BROKER_BIND")); len(eps) == 2 {
		clientEP, workerEP = eps[0], eps[1]
	}
	srv, err := server.New(server.Config{ClientBind: clientEP, WorkerBind: workerEP, Store: st,
		Broker: broker.Config{Heartbeat: 100 * time.Millisecond}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(srv.ClientEndpoint(), srv.WorkerEndpoint())
	srv.Run(context.Background())
	return 0
}

// gatedStore is a Memory store whose commits wait for the test, or fail.
type gatedStore struct {
	*store.Memory
	gate chan struct{}
	mu   sync.Mutex
	fail error
}

func (g *gatedStore) Commit(b *store.Batch) error {
	if g.gate != nil {
		<-g.gate
	}
	g.mu.Lock()
	err := g.fail
	g.mu.Unlock()
	if err != nil {
		return err
	}
	return g.Memory.Commit(b)
}

// submit sends an async request from a zmws client and returns the reply meta.
func submit(t *testing.T, c *zmq.Socket, service string, meta protocol.Meta) protocol.Meta {
	t.Helper()
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b(service), protocol.EncodeMeta(meta))
	r := zmqtest.Recv(t, c, wait)
	md, err := protocol.DecodeMeta(r[3])
	if err != nil {
		t.Fatalf("reply %s: %v", zmqtest.Join(r), err)
	}
	return md
}

// knownService makes service known to the broker with a worker that leaves.
func knownService(t *testing.T, srv *server.Server, service string) {
	t.Helper()
	w := v2Worker(t, srv.WorkerEndpoint(), service)
	waitService(t, srv.ClientEndpoint(), service)
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x06})
}

func TestServer_JobIDOnlyAfterCommit(t *testing.T) {
	g := &gatedStore{Memory: store.NewMemory(), gate: make(chan struct{})}
	srv := start(t, server.Config{Store: g})
	w := v2Worker(t, srv.WorkerEndpoint(), "S")
	g.gate <- struct{}{} // the service record
	waitService(t, srv.ClientEndpoint(), "S")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("S"), protocol.EncodeMeta(protocol.Meta{}))
	// The worker may get the job at once, but the client gets no ID while
	// the commit is held.
	recvSkipHeartbeats(t, w, 0x05)
	if r, ok := zmqtest.TryRecv(c, 200*time.Millisecond); ok {
		t.Fatalf("job ID handed out before its record was committed: %s", zmqtest.Join(r))
	}
	close(g.gate)
	r := zmqtest.Recv(t, c, wait)
	md, _ := protocol.DecodeMeta(r[3])
	if md.Status != protocol.StatusAccepted {
		t.Fatalf("after commit: %+v", md)
	}
	if rec, ok, _ := g.Job(md.Job); !ok || rec.Service != "S" {
		t.Fatalf("record of the accepted job: %+v %v", rec, ok)
	}
}

func TestServer_StoreFailureRefusesSubmission(t *testing.T) {
	g := &gatedStore{Memory: store.NewMemory()}
	srv := start(t, server.Config{Store: g})
	knownService(t, srv, "S")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	g.mu.Lock()
	g.fail = errors.New("write zmws.db: no space left on device")
	g.mu.Unlock()
	md := submit(t, c, "S", protocol.Meta{})
	if md.Status != protocol.StatusRefused || md.Code != protocol.CodeStoreUnavailable ||
		!strings.Contains(md.Error, "no space left on device") {
		t.Fatalf("submission on a failing store: %+v", md)
	}
	// The disk recovers: the next submission is accepted.
	g.mu.Lock()
	g.fail = nil
	g.mu.Unlock()
	if md := submit(t, c, "S", protocol.Meta{}); md.Status != protocol.StatusAccepted {
		t.Fatalf("after recovery: %+v", md)
	}
	// The refused job never reached the queue.
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SERVER-QUEUE"), protocol.EncodeMeta(protocol.Meta{}))
	var q []protocol.QueueInfo
	json.Unmarshal(zmqtest.Recv(t, c, wait)[4], &q)
	if len(q) != 1 || q[0].Queued != 1 {
		t.Fatalf("queue %+v, want only the accepted job", q)
	}
}

func TestServer_IdempotencyKeyMakesOneJob(t *testing.T) {
	srv := start(t, server.Config{Store: store.NewMemory()})
	knownService(t, srv, "S")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	first := submit(t, c, "S", protocol.Meta{Key: "order-42"})
	again := submit(t, c, "S", protocol.Meta{Key: "order-42"})
	other := submit(t, c, "S", protocol.Meta{Key: "order-43"})
	if first.Job == "" || again.Job != first.Job || other.Job == first.Job {
		t.Fatalf("ids %s %s %s: want the same job for one key", first.Job, again.Job, other.Job)
	}
}

func queuedIDs(t *testing.T, ep string) []string {
	t.Helper()
	c := zmqtest.Connect(t, zmq.DEALER, ep)
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b("SERVER-QUEUE"), protocol.EncodeMeta(protocol.Meta{}))
	var q []protocol.QueueInfo
	if err := json.Unmarshal(zmqtest.Recv(t, c, wait)[4], &q); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range q {
		ids = append(ids, s.Jobs...)
	}
	sort.Strings(ids)
	return ids
}

func TestServer_RestartKeepsJobs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zmws.db")
	st, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", Store: st,
		Broker: broker.Config{Heartbeat: 100 * time.Millisecond}, Logger: zerolog.New(zerolog.NewTestWriter(t))}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	// One job finishes, five stay queued.
	w := v2Worker(t, srv.WorkerEndpoint(), "S")
	waitService(t, srv.ClientEndpoint(), "S")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	finished := submit(t, c, "S", protocol.Meta{Params: map[string]string{"n": "0"}})
	req := recvSkipHeartbeats(t, w, 0x05)
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x04}, req[2], b(""), b("done"))
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x06})
	var want []string
	for i := 1; i <= 5; i++ {
		want = append(want, submit(t, c, "S", protocol.Meta{Params: map[string]string{"n": fmt.Sprint(i)}}).Job)
	}
	sort.Strings(want)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st.Close()

	// A new broker on the same journal.
	st, err = store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg.Store = st
	srv2 := start(t, cfg)
	if got := queuedIDs(t, srv2.ClientEndpoint()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("queued after restart %v, want %v", got, want)
	}
	// The finished job still answers, with its output.
	c2 := zmqtest.Connect(t, zmq.DEALER, srv2.ClientEndpoint())
	zmqtest.Send(t, c2, b("MDPC02"), []byte{0x01}, b("SERVER-JOB"), protocol.EncodeMeta(protocol.Meta{}), b(finished.Job))
	var ji protocol.JobInfo
	if err := json.Unmarshal(zmqtest.Recv(t, c2, wait)[4], &ji); err != nil || ji.State != protocol.JobComplete || string(ji.Output) != "done" {
		t.Fatalf("finished job after restart: %+v %v", ji, err)
	}
	// So do the service's counters.
	zmqtest.Send(t, c2, b("MDPC02"), []byte{0x01}, b("SERVER-SERVICES"), protocol.EncodeMeta(protocol.Meta{}))
	var ss []protocol.ServiceInfo
	if err := json.Unmarshal(zmqtest.Recv(t, c2, wait)[4], &ss); err != nil || len(ss) != 1 || ss[0].Completed != 1 || ss[0].Failed != 0 {
		t.Fatalf("services after restart: %+v %v; want S with 1 completed", ss, err)
	}
	// A worker arriving now gets every queued job, oldest first.
	w2 := v2Worker(t, srv2.WorkerEndpoint(), "S")
	for _, id := range want {
		r := heartbeatUntilRequest(t, w2, 100*time.Millisecond)
		if string(r[2]) != id {
			t.Fatalf("dispatched %s, want %s", r[2], id)
		}
		zmqtest.Send(t, w2, b("MDPW02"), []byte{0x04}, r[2], b(""), b("ok"))
	}
}

// startChildBroker runs this test binary as a durable broker on the
// journal in dir (childBroker), to be killed with SIGKILL; it returns the
// process and its client and worker endpoints. The test's end kills it.
func startChildBroker(t *testing.T, dir string) (cmd *exec.Cmd, eps []string) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ZMWS_TEST_BROKER_CHILD="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child broker: %v", err)
	}
	return cmd, strings.Fields(line)
}

func TestServer_KillMinus9KeepsAcceptedJobs(t *testing.T) {
	dir := t.TempDir()
	cmd, eps := startChildBroker(t, dir)

	w := v2Worker(t, eps[1], "S")
	waitService(t, eps[0], "S")
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x06})
	c := zmqtest.Connect(t, zmq.DEALER, eps[0])
	var want []string
	for i := 0; i < 200; i++ {
		want = append(want, submit(t, c, "S", protocol.Meta{}).Job)
	}
	sort.Strings(want)
	// Kill the broker the moment the last ID arrived: nothing is flushed
	// on the way out.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	st, err := store.OpenBolt(filepath.Join(dir, "zmws.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := start(t, server.Config{Store: st})
	c2 := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	lost := 0
	for _, id := range want {
		zmqtest.Send(t, c2, b("MDPC02"), []byte{0x01}, b("SERVER-JOB"), protocol.EncodeMeta(protocol.Meta{}), b(id))
		r := zmqtest.Recv(t, c2, wait)
		var ji protocol.JobInfo
		if len(r) < 5 || json.Unmarshal(r[4], &ji) != nil || ji.State != protocol.JobQueued {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("after kill -9: %d of %d accepted jobs lost", lost, len(want))
	}
}

// Records no reply waits for (a job finished) wait up to CommitDelay for
// company; an acceptance never does; a clean stop commits what waits.
func TestServer_CommitDelay(t *testing.T) {
	for _, delay := range []time.Duration{time.Hour, 50 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			st := store.NewMemory()
			srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*",
				Store: st, CommitDelay: delay, Broker: broker.Config{Heartbeat: 100 * time.Millisecond},
				Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()

			w := v2Worker(t, srv.WorkerEndpoint(), "S")
			waitService(t, srv.ClientEndpoint(), "S")
			c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
			id := submit(t, c, "S", protocol.Meta{}).Job // within wait, not delay
			req := recvSkipHeartbeats(t, w, 0x05)
			zmqtest.Send(t, w, b("MDPW02"), []byte{0x04}, req[2], b(""), b("done"))
			complete := func() bool {
				rec, ok, err := st.Job(id)
				return err == nil && ok && rec.State == protocol.JobComplete
			}
			if delay == time.Hour {
				// The end is not committed while the broker runs: time
				// passing (300 ms of the hour) is what is tested...
				time.Sleep(300 * time.Millisecond)
				if complete() {
					t.Fatal("the job's end was committed before CommitDelay")
				}
				// ...but at a clean stop.
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if !complete() {
					t.Fatal("the job's end was not committed at stop")
				}
				return
			}
			// With nothing else going on, the delay runs out by itself.
			zmqtest.Eventually(t, "the job's end committed", wait, complete)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestServer_HealthComesBackWithTheStore: once a failed disk works again,
// SERVER-HEALTH (and so /healthz) says ok within the 5 s probe interval,
// though no job comes to try the store.
func TestServer_HealthComesBackWithTheStore(t *testing.T) {
	g := &gatedStore{Memory: store.NewMemory()}
	srv := start(t, server.Config{Store: g})
	knownService(t, srv, "S")
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	// An accepted job first: every record so far is committed, so the
	// failing batch holds the refused job alone, and nothing is left over
	// to try the store again.
	if md := submit(t, c, "S", protocol.Meta{}); md.Status != protocol.StatusAccepted {
		t.Fatalf("first submission: %+v", md)
	}
	g.mu.Lock()
	g.fail = errors.New("write zmws.db: no space left on device")
	g.mu.Unlock()
	if md := submit(t, c, "S", protocol.Meta{}); md.Status != protocol.StatusRefused {
		t.Fatalf("submission on a failing store: %+v", md)
	}
	health := func() string {
		zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b(protocol.ServerHealth), protocol.EncodeMeta(protocol.Meta{}))
		var h protocol.HealthInfo
		json.Unmarshal(zmqtest.Recv(t, c, wait)[4], &h)
		return h.Store
	}
	if s := health(); s != protocol.StoreFailing {
		t.Fatalf("health after the failure: %s", s)
	}
	g.mu.Lock()
	g.fail = nil
	g.mu.Unlock()
	start := time.Now()
	zmqtest.Eventually(t, "health ok after the store recovered, with no job submitted", 15*time.Second, func() bool {
		return health() == protocol.StoreOK
	})
	t.Logf("health ok %v after the store recovered", time.Since(start).Round(time.Millisecond))
}
