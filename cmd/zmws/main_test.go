package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// rig is a real broker with STR-REV and FAIL workers.
type rig struct {
	client, events, worker string
}

// wait bounds what the tests wait for: a broker seeing a worker, a job's end.
const wait = 10 * time.Second

func newRig(t *testing.T) rig {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*",
		EventsBind: "tcp://127.0.0.1:*", Broker: broker.Config{Heartbeat: 100 * time.Millisecond,
			Schedules: []broker.Schedule{{Name: "yearly", Spec: "CRON_TZ=UTC @yearly", Service: "STR-REV"}}}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stops []chan error
	run := func(f func(context.Context) error) {
		done := make(chan error, 1)
		go func() { done <- f(ctx) }()
		stops = append(stops, done)
	}
	run(srv.Run)
	handlers := map[string]worker.HandlerFunc{
		"STR-REV": func(ctx context.Context, j *worker.Job) ([]byte, error) {
			in := []rune(j.Params["str"])
			if len(in) == 0 {
				in = []rune(strings.TrimSuffix(string(bytes.Join(j.Input, nil)), "\n"))
			}
			for i, k := 0, len(in)-1; i < k; i, k = i+1, k-1 {
				in[i], in[k] = in[k], in[i]
			}
			return []byte(string(in) + "\n"), nil
		},
		"FAIL": func(ctx context.Context, j *worker.Job) ([]byte, error) {
			fmt.Fprintf(j, "partial output\n")
			return nil, &worker.ExitError{Code: 3, Err: errors.New("disk full")}
		},
	}
	for name, h := range handlers {
		w, err := worker.New(worker.Config{Brokers: []string{srv.WorkerEndpoint()}, Service: name, Handler: h,
			Heartbeat: 100 * time.Millisecond, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		run(w.Run)
	}
	t.Cleanup(func() {
		cancel()
		for _, d := range stops {
			select {
			case <-d:
			case <-time.After(15 * time.Second):
				t.Error("a component did not stop")
			}
		}
	})
	r := rig{client: srv.ClientEndpoint(), events: srv.EventsEndpoint(), worker: srv.WorkerEndpoint()}
	// Wait (bounded) for both services to be known.
	zmqtest.Eventually(t, "STR-REV and FAIL registered", wait, func() bool {
		out, _, err := r.zmws(t, "", "services", "-o", "json")
		return err == nil && strings.Contains(out, "STR-REV") && strings.Contains(out, "FAIL")
	})
	return r
}

// zmws runs the CLI in-process: args parsed by kong, the command's Run
// called with buffers for stdin, stdout and stderr.
func (r rig) zmws(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var cli CLI
	p, err := kong.New(&cli, kong.Name("zmws"), kong.Exit(func(int) { t.Fatalf("kong exited on %v", args) }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := p.Parse(append([]string{"--broker", r.client, "--events", r.events, "--timeout", "3s"}, args...))
	if err != nil {
		return "", "", err
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = kctx.Run(&env{ctx: ctx, cli: &cli, stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr,
		stdinTerminal: stdin == ""})
	return stdout.String(), stderr.String(), err
}

func TestCLI_RunStreamsAndExitsWithJobCode(t *testing.T) {
	r := newRig(t)
	out, _, err := r.zmws(t, "hello\n", "run", "STR-REV")
	if err != nil || out != "olleh\n" {
		t.Fatalf("echo hello | zmws run STR-REV: %q %v", out, err)
	}
	out, _, err = r.zmws(t, "", "run", "STR-REV", "str=Hello, world")
	if err != nil || out != "dlrow ,olleH\n" {
		t.Fatalf("zmws run STR-REV str=...: %q %v", out, err)
	}
	out, errOut, err := r.zmws(t, "", "run", "FAIL")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("failed job: err %v, want exit status 3", err)
	}
	if out != "partial output\n" || !strings.Contains(errOut, "disk full") {
		t.Fatalf("stdout %q stderr %q", out, errOut)
	}
	if _, _, err := r.zmws(t, "", "run", "NOPE"); err == nil || err.Error() != "no worker has ever provided service NOPE" {
		t.Fatalf("unknown service: %v", err)
	}
	if _, _, err := r.zmws(t, "", "run", "STR-REV", "novalue"); err == nil || !strings.Contains(err.Error(), "key=value") {
		t.Fatalf("bad parameter: %v", err)
	}
}

func TestCLI_SubmitJobAndListings(t *testing.T) {
	r := newRig(t)
	id, _, err := r.zmws(t, "", "submit", "STR-REV", "str=abc")
	id = strings.TrimSpace(id)
	if err != nil || len(id) != 26 {
		t.Fatalf("submit: %q %v", id, err)
	}
	out, _, err := r.zmws(t, "", "job", id, "--wait", "-o", "json")
	var j protocol.JobView
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.State != protocol.JobComplete ||
		j.Output == nil || *j.Output != "cba\n" || j.OutputEncoding != protocol.OutputUTF8 {
		t.Fatalf("job --wait: %s %v", out, err)
	}
	out, _, err = r.zmws(t, "", "job", id)
	if err != nil || !strings.Contains(out, "complete") || !strings.Contains(out, "cba") {
		t.Fatalf("job table: %s %v", out, err)
	}
	for _, args := range [][]string{{"jobs"}, {"jobs", "--active"}, {"jobs", "--queued"}, {"workers"}, {"services"}, {"schedules"}} {
		out, _, err := r.zmws(t, "", args...)
		if err != nil || !strings.Contains(strings.SplitN(out, "\n", 2)[0], "SERVICE") {
			t.Fatalf("%v: %s %v", args, out, err)
		}
	}
	out, _, err = r.zmws(t, "", "schedules", "-o", "json")
	var scheds []protocol.ScheduleInfo
	if err != nil || json.Unmarshal([]byte(out), &scheds) != nil || len(scheds) != 1 || scheds[0].Name != "yearly" ||
		scheds[0].Service != "STR-REV" || scheds[0].Next.IsZero() {
		t.Fatalf("schedules -o json: %s %v", out, err)
	}
	out, _, _ = r.zmws(t, "", "jobs")
	if !strings.Contains(out, id) {
		t.Fatalf("jobs does not list %s:\n%s", id, out)
	}
	if _, _, err := r.zmws(t, "", "submit", "NOPE"); err == nil || !strings.Contains(err.Error(), "no worker has ever provided service NOPE") {
		t.Fatalf("submit NOPE: %v", err)
	}
	for _, args := range [][]string{{"submit", "SYNC-STR-REV", "str=abc"}, {"submit", "SYNC:STR-REV"}, {"submit", "--each-line", "SYNC-STR-REV"}} {
		if _, _, err := r.zmws(t, "a\n", args...); err == nil || !strings.Contains(err.Error(), "zmws run STR-REV") || strings.Contains(err.Error(), "Call") {
			t.Errorf("zmws %s: %v, want it to say zmws run STR-REV", strings.Join(args, " "), err)
		}
	}
	if _, _, err := r.zmws(t, "", "job", "01NOTAJOB"); err == nil {
		t.Fatal("job of an unknown ID succeeded")
	}
}

func TestCLI_WorkersAll(t *testing.T) {
	r := newRig(t)
	w, err := worker.New(worker.Config{Brokers: []string{r.worker}, Service: "BYE", Heartbeat: 100 * time.Millisecond,
		Handler: worker.HandlerFunc(func(context.Context, *worker.Job) ([]byte, error) { return nil, nil }),
		Logger:  zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	defer stop()
	// listed polls zmws workers (with --all when all) until what holds.
	listed := func(what string, all bool, ok func([]protocol.WorkerInfo) bool) {
		t.Helper()
		args := []string{"workers", "-o", "json"}
		if all {
			args = append(args, "--all")
		}
		zmqtest.Eventually(t, what, wait, func() bool {
			out, _, err := r.zmws(t, "", args...)
			var ws []protocol.WorkerInfo
			return err == nil && json.Unmarshal([]byte(out), &ws) == nil && ok(ws)
		})
	}
	bye := func(ws []protocol.WorkerInfo, state string) bool {
		for _, w := range ws {
			if w.Service == "BYE" && w.State == state {
				return true
			}
		}
		return false
	}
	listed("BYE's worker ready", false, func(ws []protocol.WorkerInfo) bool { return bye(ws, protocol.WorkerIdle) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	listed("BYE's worker gone", true, func(ws []protocol.WorkerInfo) bool { return bye(ws, protocol.WorkerGone) })
	listed("only live workers without --all", false, func(ws []protocol.WorkerInfo) bool {
		return len(ws) == 2 && !bye(ws, protocol.WorkerGone)
	})

	out, _, err := r.zmws(t, "", "workers", "--all")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") !=
		"IDENTITY SERVICE STATE JOB COMPLETED FAILED PROTOCOL HOST LAST HEARTBEAT GONE WHY" {
		t.Fatalf("workers --all: %v\n%s", err, out)
	}
	// Sorted by service: BYE first; its row ends with the time it went
	// (date and time) and why.
	row := strings.Fields(lines[1])
	if row[1] != "BYE" || row[2] != protocol.WorkerGone || row[len(row)-1] != protocol.GoneDisconnected {
		t.Fatalf("BYE's row %q", lines[1])
	}
	out, _, err = r.zmws(t, "", "workers")
	if err != nil || strings.Contains(out, "BYE") || strings.Contains(out, "GONE") {
		t.Fatalf("workers without --all: %v\n%s", err, out)
	}
}

func TestCLI_SubmitEachLine(t *testing.T) {
	r := newRig(t)
	out, errOut, err := r.zmws(t, "a\nb\nc\n", "submit", "--each-line", "STR-REV", "--line-param", "str")
	ids := strings.Fields(out)
	if err != nil || len(ids) != 3 || !strings.Contains(errOut, "submitted 3 jobs") {
		t.Fatalf("each-line: %q %q %v", out, errOut, err)
	}
	for i, want := range []string{"a\n", "b\n", "c\n"} {
		out, _, err := r.zmws(t, "", "job", ids[i], "--wait", "-o", "json")
		var j protocol.JobView
		if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.Output == nil || *j.Output != want {
			t.Fatalf("job %d: %s %v", i, out, err)
		}
	}
	_, errOut, err = r.zmws(t, "x\n", "submit", "--each-line", "NOPE")
	if err == nil || !strings.Contains(errOut, "line 1 refused") || !strings.Contains(errOut, "1 refused") {
		t.Fatalf("each-line to an unknown service: %q %v", errOut, err)
	}
}

func TestCLI_Watch(t *testing.T) {
	r := newRig(t)
	var cli CLI
	p, _ := kong.New(&cli)
	kctx, err := p.Parse([]string{"--events", r.events, "watch", "--json"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan string, 100)
	w := &lineWriter{ch: lines}
	done := make(chan error, 1)
	go func() { done <- kctx.Run(&env{ctx: ctx, cli: &cli, stdout: w, stderr: w}) }()
	defer func() { cancel(); <-done }()
	// The subscription joins asynchronously: submit until an event shows.
	zmqtest.Eventually(t, "an event of a job submitted", wait, func() bool {
		if _, _, err := r.zmws(t, "", "submit", "STR-REV", "str=x"); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-lines:
			var ev protocol.Event
			if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Service != "STR-REV" {
				t.Fatalf("event line %q: %v", l, err)
			}
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
}

type lineWriter struct{ ch chan string }

func (w *lineWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		select {
		case w.ch <- l:
		default:
		}
	}
	return len(p), nil
}

func TestCLI_CancelAndRetry(t *testing.T) {
	r := newRig(t)
	// FAIL fails at once: retry it by hand, then it fails again.
	out, _, err := r.zmws(t, "", "submit", "FAIL")
	id := strings.TrimSpace(out)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = r.zmws(t, "", "job", id, "--wait", "-o", "json")
	var j protocol.JobView
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.State != protocol.JobFailed || j.ExitCode == nil || *j.ExitCode != 3 {
		t.Fatalf("failed job: %s %v", out, err)
	}
	out, _, err = r.zmws(t, "", "retry", id, "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.ID != id || (j.State != protocol.JobQueued && j.State != protocol.JobActive) {
		t.Fatalf("retry: %s %v", out, err)
	}
	if _, _, err := r.zmws(t, "", "job", id, "--wait"); err != nil {
		t.Fatal(err)
	}
	// A finished job cannot be cancelled; an unknown one is not found.
	if _, _, err := r.zmws(t, "", "cancel", id); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("cancel of a finished job: %v", err)
	}
	if _, _, err := r.zmws(t, "", "cancel", "01NOPE"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("cancel of an unknown job: %v", err)
	}
	if _, _, err := r.zmws(t, "", "submit", "STR-REV", "--ttr", "10s", "--retries", "2", "str=x"); err != nil {
		t.Fatalf("submit with --ttr and --retries: %v", err)
	}
}
