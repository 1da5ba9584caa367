package server_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
	"github.com/zmws/zmws/worker"
)

// recorder is a worker's record of the jobs it started: their "i"
// parameter in order, and when each started. A job with the parameter
// "block" waits until release (or its worker stops).
type recorder struct {
	mu      sync.Mutex
	order   []string
	started map[string]time.Time // by job ID
	params  map[string]map[string]string
	blocked chan struct{} // a blocking job started
	release chan struct{}
}

func newRecorder(released bool) *recorder {
	r := &recorder{started: map[string]time.Time{}, params: map[string]map[string]string{},
		blocked: make(chan struct{}, 1), release: make(chan struct{})}
	if released {
		close(r.release)
	}
	return r
}

func (r *recorder) handle(ctx context.Context, j *worker.Job) ([]byte, error) {
	now := time.Now()
	r.mu.Lock()
	if _, ok := r.params[j.ID]; !ok {
		r.started[j.ID] = now
		r.params[j.ID] = j.Params
	}
	if i, ok := j.Params["i"]; ok {
		r.order = append(r.order, i)
	}
	r.mu.Unlock()
	if j.Params["block"] != "" {
		select {
		case r.blocked <- struct{}{}:
		default:
		}
		select {
		case <-r.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, nil
}

// distinct is how many jobs ran, each counted once.
func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.params)
}

func (r *recorder) ran() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

// runRecorder runs a worker of service S with concurrency slots for rec, until
// the returned stop is called (or the test ends).
func runRecorder(t *testing.T, ep string, concurrency int, rec *recorder) (stop func()) {
	t.Helper()
	w, err := worker.New(worker.Config{Brokers: []string{ep}, Service: "S", Concurrency: concurrency,
		Heartbeat: 100 * time.Millisecond, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
		Handler: worker.HandlerFunc(rec.handle),
		Logger:  zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	return zmqtest.Go(t, "worker", w.Run)
}

// submitInterleaved keeps a worker of S busy with a blocking job, then
// submits 100 jobs at priorities 0 and 10 in turn, and returns the order
// they must run in: every 10 before every 0, each priority first in first
// out.
func submitInterleaved(t *testing.T, ep string, rec *recorder) []string {
	t.Helper()
	c := zmqtest.Connect(t, zmq.DEALER, ep)
	if md := submit(t, c, "S", protocol.Meta{Params: map[string]string{"block": "1"}}); md.Status != protocol.StatusAccepted {
		t.Fatalf("blocking job: %+v", md)
	}
	select {
	case <-rec.blocked:
	case <-time.After(wait):
		t.Fatal("the blocking job never started")
	}
	var high, low []string
	for i := range 100 {
		p := 0
		if i%2 == 1 {
			p = 10
		}
		if md := submit(t, c, "S", protocol.Meta{Priority: p, Params: map[string]string{"i": strconv.Itoa(i)}}); md.Status != protocol.StatusAccepted {
			t.Fatalf("job %d: %+v", i, md)
		}
		if p == 10 {
			high = append(high, strconv.Itoa(i))
		} else {
			low = append(low, strconv.Itoa(i))
		}
	}
	return slices.Concat(high, low)
}

func openJournal(t *testing.T, dir string) *store.Bolt {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(dir, "zmws.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// One worker busy, 100 jobs at priorities 0 and 10 interleaved: the 10s
// run before the 0s, first in first out within each; and so again when
// the broker was killed (kill -9) with them queued and restarted on its
// journal.
func TestServer_PriorityOrder(t *testing.T) {
	t.Run("running", func(t *testing.T) {
		st := openJournal(t, t.TempDir())
		t.Cleanup(func() { st.Close() })
		srv := start(t, server.Config{Store: st})
		rec := newRecorder(false)
		runRecorder(t, srv.WorkerEndpoint(), 1, rec)
		waitService(t, srv.ClientEndpoint(), "S")
		want := submitInterleaved(t, srv.ClientEndpoint(), rec)
		close(rec.release)
		zmqtest.Eventually(t, "100 jobs run", wait, func() bool { return rec.ran() == 100 })
		if !slices.Equal(rec.order, want) {
			t.Fatalf("ran in the order\n %v\nwant\n %v", rec.order, want)
		}
	})
	t.Run("killed", func(t *testing.T) {
		dir := t.TempDir()
		cmd, eps := startChildBroker(t, dir)
		rec := newRecorder(false)
		stop := runRecorder(t, eps[1], 1, rec)
		waitService(t, eps[0], "S")
		want := submitInterleaved(t, eps[0], rec)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		stop()
		if n := rec.ran(); n != 0 {
			t.Fatalf("%d jobs ran before the kill", n)
		}

		st := openJournal(t, dir)
		t.Cleanup(func() { st.Close() })
		srv := start(t, server.Config{Store: st})
		rec = newRecorder(true) // the blocking job, requeued, runs through
		runRecorder(t, srv.WorkerEndpoint(), 1, rec)
		zmqtest.Eventually(t, "100 jobs run after the restart", wait, func() bool { return rec.ran() == 100 })
		if !slices.Equal(rec.order, want) {
			t.Fatalf("after kill -9, ran in the order\n %v\nwant\n %v", rec.order, want)
		}
	})
}

// delayedJobs is how many jobs TestServer_DelayedJobsStartOnTime
// schedules: a few hundred in CI, ZMWS_TEST_DELAYED_JOBS=10000 locally.
func delayedJobs(t *testing.T) int {
	v := os.Getenv("ZMWS_TEST_DELAYED_JOBS")
	if v == "" {
		return 300
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("ZMWS_TEST_DELAYED_JOBS=%q: want a count of jobs", v)
	}
	return n
}

// delaySlots is the worker's concurrency in TestServer_DelayedJobsStartOnTime:
// enough that 10,000 jobs due over 3 s do not wait for a free slot.
const delaySlots = 8

// runServer runs a durable server on the given endpoints until its stop is
// called, which shuts it down cleanly and closes its journal.
func runServer(t *testing.T, dir, clientEP, workerEP string) (stop func()) {
	t.Helper()
	st := openJournal(t, dir)
	var srv *server.Server
	// The endpoints of a server just stopped may take a moment to be free.
	zmqtest.Eventually(t, "server.New binding "+clientEP+" and "+workerEP, wait, func() bool {
		var err error
		srv, err = server.New(server.Config{ClientBind: clientEP, WorkerBind: workerEP, Store: st,
			Broker: broker.Config{Heartbeat: 100 * time.Millisecond},
			Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		if err != nil {
			t.Logf("server.New: %v (retrying)", err)
		}
		return err == nil
	})
	stopServer := zmqtest.Go(t, "server", srv.Run)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopServer()
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// killableServer runs a durable server in a child process on the given
// endpoints; its stop kills it (SIGKILL: nothing is flushed on the way out).
func killableServer(t *testing.T, dir, clientEP, workerEP string) (stop func()) {
	t.Helper()
	var cmd *exec.Cmd
	// The endpoints of a server just killed may take a moment to be free:
	// a child that cannot bind exits before it prints them.
	zmqtest.Eventually(t, "a child broker binding "+clientEP+" and "+workerEP, wait, func() bool {
		cmd = exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ZMWS_TEST_BROKER_CHILD="+dir, "ZMWS_TEST_BROKER_BIND="+clientEP+" "+workerEP)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			cmd.Wait()
			return false
		}
		return true
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Error(err)
			}
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

// Jobs delayed by 2 to 5 s start at their time, never before, within
// 100 ms of it (measured at the worker; see onTime below), and none is
// lost when the broker restarts in the middle; jobs due while it is down
// start once it is back.
func TestServer_DelayedJobsStartOnTime(t *testing.T) {
	t.Run("stopped", func(t *testing.T) { testDelayedJobs(t, runServer) })
	t.Run("killed", func(t *testing.T) { testDelayedJobs(t, killableServer) })
}

// testDelayedJobs is TestServer_DelayedJobsStartOnTime with servers that run
// will start (and stop).
func testDelayedJobs(t *testing.T, run func(t *testing.T, dir, clientEP, workerEP string) (stop func())) {
	n := delayedJobs(t)
	dir := t.TempDir()
	clientEP, workerEP := zmqtest.FreeEndpoint(t), zmqtest.FreeEndpoint(t)
	stop := run(t, dir, clientEP, workerEP)
	rec := newRecorder(true)
	runRecorder(t, workerEP, delaySlots, rec)
	waitService(t, clientEP, "S")
	cl, err := client.New(client.Config{Broker: clientEP, Timeout: wait})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })

	begin := time.Now()
	reqs := func(yield func(client.Request) bool) {
		for i := range n {
			at := time.Now().Add(2*time.Second + rand.N(3*time.Second))
			if !yield(client.Request{At: at, Params: map[string]string{"i": strconv.Itoa(i), "at": at.Format(time.RFC3339Nano)}}) {
				return
			}
		}
	}
	accepted := 0
	err = cl.SubmitMany(context.Background(), "S", reqs, 0, func(s client.Submitted) error {
		if s.Err != nil {
			return fmt.Errorf("job %d: %w", s.Index, s.Err)
		}
		accepted++
		return nil
	})
	if err != nil || accepted != n {
		t.Fatalf("%d of %d accepted: %v", accepted, n, err)
	}
	submitted := time.Since(begin)
	if ran := rec.ran(); ran != 0 {
		t.Fatalf("%d delayed jobs ran at once", ran)
	}

	// The restart, 3.5 s in: time passing is what is tested here.
	time.Sleep(time.Until(begin.Add(3500 * time.Millisecond)))
	down := time.Now()
	stop()
	run(t, dir, clientEP, workerEP)
	up := time.Now()

	zmqtest.Eventually(t, fmt.Sprintf("%d delayed jobs run", n), 10*time.Second+submitted, func() bool { return rec.distinct() == n })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// None lost; a job running when the broker stopped may run again (at
	// least once: its end was not heard).
	if len(rec.params) != n {
		t.Errorf("%d of %d jobs ran", len(rec.params), n)
	}
	// Jobs due before the broker was back that had not started when it
	// stopped were caught by the restart: they all start when it is back,
	// and so do, behind them, the jobs due while that backlog drains.
	dueAt := make(map[string]time.Time, len(rec.params))
	var drained time.Time
	for id, p := range rec.params {
		at, err := time.Parse(time.RFC3339Nano, p["at"])
		if err != nil {
			t.Fatalf("job %s: at %q: %v", id, p["at"], err)
		}
		dueAt[id] = at
		if s := rec.started[id]; at.Before(up) && s.After(down) && s.After(drained) {
			drained = s
		}
	}
	var late, inWindow []time.Duration
	early := 0
	var worst time.Duration
	var worstAt time.Time
	for id, at := range dueAt {
		d := rec.started[id].Sub(at)
		switch {
		case d < 0:
			early++
			t.Errorf("job %s started %v before its time", id, -d)
		case !at.After(drained) && rec.started[id].After(down):
			inWindow = append(inWindow, d)
		default:
			late = append(late, d)
			if d > worst {
				worst, worstAt = d, at
			}
		}
	}
	slices.Sort(late)
	slices.Sort(inWindow)
	backlog := "no backlog"
	if !drained.IsZero() {
		backlog = fmt.Sprintf("its backlog drained %v after it", drained.Sub(up).Round(time.Millisecond))
	}
	t.Logf("%d jobs submitted in %v; restart at %v (down %v, %s); %d runs; early %d", n,
		submitted.Round(time.Millisecond), down.Sub(begin).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond),
		backlog, len(rec.order), early)
	t.Logf("lateness of %d jobs due while the broker was up: %s; the latest was due %v after the restart", len(late), spread(late),
		worstAt.Sub(up).Round(time.Millisecond))
	t.Logf("lateness of %d jobs caught by the restart or its backlog: %s", len(inWindow), spread(inWindow))
	// The target is 100 ms. In the test suite, under the race detector
	// and beside other tests, a few jobs held up by the scheduler (not by
	// the broker, whose median stays near 1 ms) can pass it: the suite
	// checks a loose bound (a stalled loop) and logs the distribution;
	// ZMWS_TIMING=1 checks the target. That the loop wakes at a job's
	// time is a broker test with a chosen clock.
	onTime := time.Second
	if os.Getenv("ZMWS_TIMING") != "" {
		onTime = 100 * time.Millisecond
	}
	if len(late) > 0 && late[len(late)-1] > onTime {
		t.Errorf("jobs started up to %v after their time, want within %v (%s)", late[len(late)-1], onTime, spread(late))
	}
}

// spread describes sorted durations: min, p50, p99, max.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	q := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1))].Round(10 * time.Microsecond) }
	return fmt.Sprintf("min %v p50 %v p99 %v max %v", q(0), q(0.5), q(0.99), q(1))
}
