package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/testbroker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
)

const wait = 10 * time.Second

// parse parses args as main does, defaults and all.
func parse(t *testing.T, args ...string) CLI {
	t.Helper()
	var cli CLI
	k, err := kong.New(&cli, append(options(), kong.Exit(func(int) { t.Fatalf("kong exits on %q", args) }))...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return cli
}

func TestRun_Check(t *testing.T) {
	var out, logs bytes.Buffer
	cli := parse(t, "--check", "--jobs-dir", "../../examples/jobs.d", "--service", "SAY-HI", "--", "echo", "-n", "hi {{name:you}}")
	if err := run(context.Background(), cli, &out, &logs); err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	want := "SAY-HI\techo -n 'hi {{name:you}}'\tparams: name\n" +
		"FILE-SHA256\tsha256sum -- {{file}}\tparams: file\n" +
		"SAY\techo {{msg}}\tparams: msg\n" +
		"SLEEP\tsleep {{seconds:1}}\tparams: seconds\n" +
		"STR-REV\trev\tparams: str\n" +
		"WORDCOUNT\twc\tparams: text\n"
	contain, why, _ := containment("process-group") // the default
	last := containLine(contain, why) + "\n"
	want += last
	if out.String() != want {
		t.Errorf("--check printed:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	cli = parse(t, "--check", "--prestart", "--service", "REV", "--", "rev")
	if err := run(context.Background(), cli, &out, &logs); err != nil || out.String() != "REV\trev\tprestart\n"+last {
		t.Errorf("--check --prestart printed %q, %v", out.String(), err)
	}

	out.Reset()
	cli = parse(t, "--check", "--service", "REV", "--idle-command", "sh -c 'sync; fstrim -a'", "--idle-after", "5m", "--", "rev")
	if err := run(context.Background(), cli, &out, &logs); err != nil ||
		out.String() != "REV\trev\n--idle-command\tsh -c 'sync; fstrim -a'\tafter 5m0s, timeout 5m0s\n"+last {
		t.Errorf("--check --idle-command printed %q, %v", out.String(), err)
	}

	out.Reset()
	cli = parse(t, "--check", "--jobs-dir", "../../examples/jobs.d", "--only", "SLEEP", "--only", "SAY")
	if err := run(context.Background(), cli, &out, &logs); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "SAY\t") || !strings.Contains(got, "\nSLEEP\t") || strings.Count(got, "\n") != 3 {
		t.Errorf("--only SLEEP --only SAY printed:\n%s", got)
	}
}

func TestRun_Errors(t *testing.T) {
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "X.toml"), []byte(`command = "echo hi; rm -rf /"`), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{nil, "nothing to serve"},
		{[]string{"--service", "X"}, "no command"},
		{[]string{"--", "rev"}, "no --service"},
		{[]string{"--only", "X", "--service", "X", "--", "rev"}, "--only needs --jobs-dir"},
		{[]string{"--jobs-dir", "../../examples/jobs.d", "--only", "NOPE"}, "--only NOPE: no such service"},
		{[]string{"--jobs-dir", "../../examples/jobs.d", "--service", "SAY", "--", "rev"}, "service SAY: both --service and"},
		{[]string{"--jobs-dir", bad}, `X.toml: command: ";" at column 8`},
		{[]string{"--jobs-dir", "/nonexistent/zmws"}, "no such file"},
		{[]string{"--service", "X", "--", "{{prog}}"}, "cannot come from a parameter"},
		{[]string{"--service", "SYNC-X", "--", "rev"}, "--service SYNC-X"},
		{[]string{"--service", "X", "--env", "NOVALUE", "--", "rev"}, "want NAME=VALUE"},
		{[]string{"--service", "X", "--concurrency", "0", "--", "rev"}, "--concurrency"},
		{[]string{"--service", "X", "--log-level", "loud", "--", "rev"}, "log level"},
		{[]string{"--prestart", "--service", "X", "--", "echo", "{{msg}}"}, `prestart: word 2 of the command, "{{msg}}", holds a placeholder`},
		{[]string{"--prestart", "--jobs-dir", "../../examples/jobs.d"}, "--prestart is for the --service command"},
		{[]string{"--idle-command", "sync", "--service", "X", "--", "rev"}, "--idle-command needs --idle-after"},
		{[]string{"--idle-after", "1m", "--service", "X", "--", "rev"}, "go with --idle-command"},
		{[]string{"--idle-command", "echo {{msg}}", "--idle-after", "1m", "--service", "X", "--", "rev"}, "--idle-command: {{msg}} is a placeholder"},
		{[]string{"--idle-command", "sync; reboot", "--idle-after", "1m", "--service", "X", "--", "rev"}, `--idle-command: command: ";" at column 5`},
		{[]string{"--idle-command", "sync", "--idle-after", "1m", "--idle-timeout=-1s", "--service", "X", "--", "rev"}, "--idle-timeout must not be negative"},
		{[]string{"--user", "nobody", "--jobs-dir", "../../examples/jobs.d"}, "--user is for the --service command and the --idle-command"},
		{[]string{"--metrics-bind", "9556", "--service", "X", "--", "rev"}, "--metrics-bind 9556: want host:port"},
	}
	for _, tc := range cases {
		cli := parse(t, append([]string{"--check"}, tc.args...)...)
		err := run(context.Background(), cli, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v; want it to contain %q", tc.args, err, tc.want)
		}
	}
}

// start runs zmws-run with args against srv until stop is called (or the
// test ends) and waits until every service in want is known to the broker.
func start(t *testing.T, srv *server.Server, c *client.Client, args []string, want ...string) (stop func() error) {
	t.Helper()
	return startLog(t, srv, c, zerolog.NewTestWriter(t), args, want...)
}

// startLog is start with zmws-run's log going to logw.
func startLog(t *testing.T, srv *server.Server, c *client.Client, logw io.Writer, args []string, want ...string) (stop func() error) {
	t.Helper()
	return startCLI(t, c, logw, parse(t, append([]string{"--broker", srv.WorkerEndpoint(), "--heartbeat", "200ms"}, args...)...), want...)
}

// startCLI runs zmws-run with cli as start does, its log going to logw.
func startCLI(t *testing.T, c *client.Client, logw io.Writer, cli CLI, want ...string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cli, &bytes.Buffer{}, logw) }()
	var stopped bool
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { stop() })
	qctx, qcancel := context.WithTimeout(context.Background(), wait)
	defer qcancel()
	for _, name := range want {
		zmqtest.Eventually(t, name+" registered", wait, func() bool {
			select {
			case err = <-done: // what stop returns, so the cleanup does not wait for it
				stopped = true
				cancel()
				t.Fatalf("zmws-run stopped: %v", err)
			default:
			}
			st, serr := c.ServiceStatus(qctx, name)
			return serr == nil && st == "200"
		})
	}
	return stop
}

func TestRun_Inline(t *testing.T) {
	if _, err := exec.LookPath("rev"); err != nil {
		t.Skip("rev not installed")
	}
	srv, c := testbroker.Start(t)
	stop := start(t, srv, c, []string{"--service", "STR-REV", "--", "rev"}, "STR-REV")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := c.Call(ctx, "STR-REV", client.Request{Params: map[string]string{"str": "Hello, world"}}, nil)
	if err != nil || !res.OK() || string(res.Output) != "dlrow ,olleH\n" {
		t.Fatalf("SYNC-STR-REV?str=Hello,+world: %+v, %v", res, err)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestRun_JobsDir(t *testing.T) {
	srv, c := testbroker.Start(t)
	start(t, srv, c, []string{"--jobs-dir", "../../examples/jobs.d", "--only", "SAY", "--only", "SLEEP"}, "SAY", "SLEEP")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := c.Call(ctx, "SAY", client.Request{Params: map[string]string{"msg": "$(touch /tmp/x); rm -rf /"}}, nil)
	if err != nil || !res.OK() || string(res.Output) != "$(touch /tmp/x); rm -rf /\n" {
		t.Errorf("SAY: %+v, %v", res, err)
	}
	res, err = c.Call(ctx, "SAY", client.Request{Params: map[string]string{"msg": "-n"}}, nil)
	if err != nil || res.OK() || !strings.Contains(res.Error, `parameter "msg"`) {
		t.Errorf("SAY msg=-n: %+v, %v", res, err)
	}
	res, err = c.Call(ctx, "SLEEP", client.Request{Params: map[string]string{"seconds": "0"}}, nil)
	if err != nil || !res.OK() {
		t.Errorf("SLEEP: %+v, %v", res, err)
	}
	if st, err := c.ServiceStatus(ctx, "STR-REV"); err != nil || st != "404" {
		t.Errorf("STR-REV was not asked for but is %q, %v", st, err)
	}
}

// On shutdown a job that outlasts the grace is stopped with its process
// group, and zmws-run returns.
func TestRun_ShutdownStopsJobs(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	srv, c := testbroker.Start(t)
	// Process groups: the job prints its pids, which in a PID namespace
	// would be the namespace's, not /proc's.
	stop := start(t, srv, c, []string{"--contain", "process-group", "--grace", "100ms", "--kill-grace", "100ms",
		"--service", "NAP", "--", "sh", "-c", "trap '' TERM; echo $$; sleep 60 & echo $!; wait"}, "NAP")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	pids := make(chan string, 16)
	go c.Call(ctx, "NAP", client.Request{}, func(p []byte) error {
		select {
		case pids <- string(p):
		default:
		}
		return nil
	})
	var got string
	select {
	case got = <-pids:
	case <-ctx.Done():
		t.Fatal("job never started")
	}
	for strings.Count(got, "\n") < 2 { // both pids, possibly in two partials
		select {
		case more := <-pids:
			got += more
		case <-ctx.Done():
			t.Fatalf("output %q", got)
		}
	}
	t0 := time.Now()
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	// SIGKILL has been sent to the group; the kernel ends the processes a
	// moment later, so poll (bounded) until each is gone or a zombie.
	gone(t, strings.Fields(got))
}

// With --prestart, jobs run on processes started ahead, and none of them
// outlives zmws-run: the spares are killed at shutdown.
func TestRun_Prestart(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	if _, err := exec.LookPath("cat"); err != nil {
		t.Skip("no cat")
	}
	pidFile := filepath.Join(t.TempDir(), "pids")
	srv, c := testbroker.Start(t)
	stop := start(t, srv, c, []string{"--prestart", "--concurrency", "2", "--service", "CAT", "--",
		"sh", "-c", "read -r pid rest < /proc/self/stat; echo $pid >> '" + pidFile + "'; exec cat"}, "CAT")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for i := range 5 {
		in := fmt.Sprintf("job %d\n", i)
		res, err := c.Call(ctx, "CAT", client.Request{Input: []byte(in)}, nil)
		if err != nil || !res.OK() || string(res.Output) != in {
			t.Fatalf("job %d: %+v, %v", i, res, err)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pids := strings.Fields(string(b))
	// One per job, and the spares: those killed at shutdown before they
	// wrote their PID are not in the file.
	if len(pids) < 5 {
		t.Errorf("%d processes started; want at least one per job", len(pids))
	}
	gone(t, pids)
}

// gone waits (bounded) until each process in pids (decimal) has exited or
// is a zombie: the kernel ends a killed process a moment after the signal.
func gone(t *testing.T, pids []string) {
	t.Helper()
	zmqtest.Eventually(t, fmt.Sprintf("processes %v ended with zmws-run", pids), 5*time.Second, func() bool {
		for _, f := range pids {
			b, err := os.ReadFile("/proc/" + f + "/stat")
			if err == nil && !bytes.Contains(b, []byte(") Z")) {
				return false
			}
		}
		return true
	})
}

// Output cut at --max-output is marked in the job's record: SERVER-JOB
// says output_truncated, so a client can tell it has only the first part.
func TestRun_MaxOutputMarksJobTruncated(t *testing.T) {
	if _, err := exec.LookPath("echo"); err != nil {
		t.Skip("no echo")
	}
	srv, c := testbroker.Start(t)
	start(t, srv, c, []string{"--max-output", "10", "--service", "SAY", "--", "echo", "{{msg}}"}, "SAY")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{"a message longer than ten bytes", true},
		{"short", false},
	} {
		res, err := c.Call(ctx, "SAY", client.Request{Params: map[string]string{"msg": tc.msg}}, nil)
		if err != nil || !res.OK() {
			t.Fatalf("SAY %q: %+v, %v", tc.msg, res, err)
		}
		ji, err := c.Job(ctx, res.JobID)
		if err != nil || ji.OutputTruncated != tc.want {
			t.Errorf("SAY %q: SERVER-JOB output_truncated %v (%v), want %v; output %q", tc.msg, ji.OutputTruncated, err, tc.want, ji.Output)
		}
	}
}
