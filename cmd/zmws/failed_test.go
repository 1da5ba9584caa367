package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/curvetest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
	"github.com/zmws/zmws/worker"
)

// journalRig is a real broker with a journal in a temporary folder, a
// history of 100 finished jobs, and a worker for each of services whose
// handler fails while its switch is off. Liveness 20: a loaded machine
// does not expire a worker between its heartbeats.
type journalRig struct {
	rig
	ok map[string]*atomic.Bool
}

func newJournalRig(t *testing.T, cv *server.Curve, workerKey *curve.Client, services ...string) journalRig {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), store.BoltFile), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*",
		Broker: broker.Config{Heartbeat: 100 * time.Millisecond, Liveness: 20, History: 100}, Store: st, Curve: cv, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the store closes after the server stopped.
	t.Cleanup(func() { _ = st.Close() })
	zmqtest.Go(t, "server", srv.Run)
	r := journalRig{rig: rig{client: srv.ClientEndpoint(), events: "tcp://127.0.0.1:1"}, ok: map[string]*atomic.Bool{}}
	for _, name := range services {
		ok := new(atomic.Bool)
		r.ok[name] = ok
		w, err := worker.New(worker.Config{Brokers: []string{srv.WorkerEndpoint()}, Service: name, Curve: workerKey,
			Heartbeat: 100 * time.Millisecond, Liveness: 20, Logger: log,
			Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
				if ok.Load() {
					return []byte("done\n"), nil
				}
				return nil, &worker.ExitError{Code: 4, Err: errors.New("not today")}
			})})
		if err != nil {
			t.Fatal(err)
		}
		zmqtest.Go(t, "worker "+name, w.Run)
	}
	return r
}

// submitN submits n async jobs to service through cl and returns their IDs.
func submitN(t *testing.T, cl *client.Client, service string, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		id, err := cl.Submit(context.Background(), service, client.Request{Input: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func failedList(t *testing.T, run func(args ...string) (string, string, error), args ...string) []protocol.JobView {
	t.Helper()
	out, errOut, err := run(append([]string{"jobs", "--failed", "-o", "json"}, args...)...)
	if err != nil {
		t.Fatalf("jobs --failed %v: %v %s", args, err, errOut)
	}
	var jobs []protocol.JobView
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		t.Fatalf("jobs --failed %v: %v in %q", args, err, out)
	}
	return jobs
}

func viewIDs(jobs []protocol.JobView) []string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

// 150 failed jobs (more than the broker's history of 100) are all listed
// from the journal, newest first, by service and by finish time; a bulk
// retry of the service requeues every one to its worker, which now
// succeeds, and none is failed after.
func TestCLI_FailedJobsFromTheJournal(t *testing.T) {
	r := newJournalRig(t, nil, nil, "FLAKY", "OTHER")
	run := func(args ...string) (string, string, error) { return r.zmws(t, "", args...) }
	cl, err := client.New(client.Config{Broker: r.client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	zmqtest.Eventually(t, "FLAKY and OTHER registered", wait, func() bool {
		out, _, err := run("services", "-o", "json")
		return err == nil && strings.Contains(out, "FLAKY") && strings.Contains(out, "OTHER")
	})

	flaky := submitN(t, cl, "FLAKY", 150)
	zmqtest.Eventually(t, "150 failed jobs of FLAKY", 2*wait, func() bool { return len(failedList(t, run, "--service", "FLAKY")) == 150 })
	cut := time.Now().UTC()
	other := submitN(t, cl, "OTHER", 3)
	zmqtest.Eventually(t, "153 failed jobs", wait, func() bool { return len(failedList(t, run)) == 153 })

	all := failedList(t, run)
	if got, want := viewIDs(all), newest(flaky, other); !slices.Equal(got, want) {
		t.Errorf("jobs --failed: %d jobs, want the 153 newest first\n got %v\nwant %v", len(got), got, want)
	}
	if j := all[0]; j.Code != protocol.CodeJobFailed || !strings.Contains(j.Error, "not today") || j.ExitCode == nil || *j.ExitCode != 4 || j.Attempts != 1 || j.Finished == nil {
		t.Errorf("a failed job is listed as %+v", j)
	}
	if got := viewIDs(failedList(t, run, "--service", "OTHER")); !slices.Equal(got, newest(other)) {
		t.Errorf("--service OTHER: %v", got)
	}
	if got := viewIDs(failedList(t, run, "--since", cut.Format(time.RFC3339Nano))); !slices.Equal(got, newest(other)) {
		t.Errorf("--since the cut: %v, want the jobs of OTHER", got)
	}
	if got := failedList(t, run, "--since", "1h"); len(got) != 153 {
		t.Errorf("--since 1h: %d jobs", len(got))
	}
	out, errOut, err := run("jobs", "--failed", "--limit", "10")
	if err != nil || strings.Count(out, "FLAKY") != 7 || strings.Count(out, "OTHER") != 3 || !strings.Contains(errOut, "--after") {
		t.Errorf("jobs --failed --limit 10: %v\n%s%s", err, out, errOut)
	}
	if _, _, err := run("jobs", "--failed", "--since", "yesterday"); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Errorf("a bad --since: %v", err)
	}
	if _, _, err := run("retry", "--failed"); err == nil || !strings.Contains(err.Error(), "--service") {
		t.Errorf("retry --failed without --service: %v", err)
	}

	r.ok["FLAKY"].Store(true)
	out, errOut, err = run("retry", "--failed", "--service", "FLAKY")
	if err != nil || !strings.Contains(out, "150 failed jobs of FLAKY queued again") {
		t.Fatalf("retry --failed --service FLAKY: %v\n%s%s", err, out, errOut)
	}
	zmqtest.Eventually(t, "the 150 retried jobs complete", 2*wait, func() bool {
		for _, id := range flaky {
			if j, err := cl.Job(context.Background(), id); err != nil || j.State != protocol.JobComplete {
				return false
			}
		}
		return true
	})
	if got := viewIDs(failedList(t, run)); !slices.Equal(got, newest(other)) {
		t.Errorf("failed after the retry: %v, want the jobs of OTHER", got)
	}
}

// newest is the IDs of lists, newest (last) first.
func newest(lists ...[]string) []string {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.Reverse(all)
	return all
}

// A key that may not administer lists and retries its own failed jobs
// only; the admin's stay failed, and the admin sees them all.
func TestCLI_RetryFailedOnlyOwnJobs(t *testing.T) {
	f := curvetest.New(t, []curvetest.Entry{
		{Name: "admin", Role: auth.RoleClient, Rights: auth.Rights{Admin: true}},
		{Name: "user", Role: auth.RoleClient},
		{Name: "w", Role: auth.RoleWorker},
	})
	r := newJournalRig(t, &server.Curve{Key: f.Broker, Keys: f.Keys(t)}, f.Client(t, "w"), "FAIL")
	as := func(name string) func(args ...string) (string, string, error) {
		return func(args ...string) (string, string, error) {
			return r.zmws(t, "", append([]string{"--broker-key", f.PubFile("broker"), "--curve-key", f.KeyFile(name)}, args...)...)
		}
	}
	submit := func(name string) string {
		cl, err := client.New(client.Config{Broker: r.client, Curve: f.Client(t, name)})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		id, err := cl.Submit(context.Background(), "FAIL", client.Request{})
		if err != nil {
			t.Fatalf("a job of %s: %v", name, err)
		}
		return id
	}
	zmqtest.Eventually(t, "FAIL registered", wait, func() bool {
		out, _, err := as("admin")("services", "-o", "json")
		return err == nil && strings.Contains(out, `"FAIL"`)
	})
	mine, theirs := submit("user"), submit("admin")
	zmqtest.Eventually(t, "both jobs failed", wait, func() bool { return len(failedList(t, as("admin"))) == 2 })
	if got := viewIDs(failedList(t, as("user"))); !slices.Equal(got, []string{mine}) {
		t.Errorf("the user's failed jobs: %v, want only %s", got, mine)
	}
	out, errOut, err := as("user")("retry", "--failed", "--service", "FAIL")
	if err != nil || !strings.Contains(out, "1 failed jobs of FAIL queued again") {
		t.Fatalf("the user's bulk retry: %v\n%s%s", err, out, errOut)
	}
	zmqtest.Eventually(t, "the user's job failed again", wait, func() bool {
		j := failedList(t, as("admin"))
		return len(j) == 2 && j[0].ID == mine && j[0].Attempts == 1
	})
	// A single retry has the same rule: another's job is refused.
	if _, _, err := as("user")("retry", theirs); err == nil || !strings.Contains(err.Error(), "only the jobs it submitted") {
		t.Errorf("the user's retry of the admin's job: %v", err)
	}
	out, _, err = as("admin")("retry", "--failed", "--service", "FAIL")
	if err != nil || !strings.Contains(out, "2 failed jobs of FAIL queued again") {
		t.Errorf("the admin's bulk retry: %v %s", err, out)
	}
}
