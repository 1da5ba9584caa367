package supervise

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/config"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
)

// bin holds zmwsd and zmws-run, built once for the package's tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zmws-supervise-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/zmws/zmws/cmd/zmwsd", "github.com/zmws/zmws/cmd/zmws-run").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build zmwsd and zmws-run: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port free a moment ago: workers need a
// fixed broker endpoint.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// clearEnv unsets the variables zmwsd and zmws-run would take over the file.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ZMWSD_") || strings.HasPrefix(k, "ZMWS_RUN_") {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
}

type install struct {
	dir      string
	path     string
	clientEP string
	s        *Supervisor
	logs     *syncBuf
}

// setup writes a zmws.toml of a broker on free ports and workers, and a
// Supervisor for it; every process it starts is killed at the end.
func setup(t *testing.T, workers string, env ...string) *install {
	t.Helper()
	clearEnv(t)
	for i := 0; i+1 < len(env); i += 2 {
		t.Setenv(env[i], env[i+1])
	}
	dir := t.TempDir()
	cp, wp := freePort(t), freePort(t)
	text := fmt.Sprintf(`[broker]
client_bind = "tcp://127.0.0.1:%d"
worker_bind = "tcp://127.0.0.1:%d"
events_bind = ""
http_bind = ""
data_dir = "data"
heartbeat = "200ms"
log_level = "debug"
%s`, cp, wp, workers)
	path := filepath.Join(dir, "zmws.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	s, err := New(Config{File: f, Zmwsd: filepath.Join(bin, "zmwsd"), ZmwsRun: filepath.Join(bin, "zmws-run"),
		Wait: 20 * time.Second, BackoffMin: 100 * time.Millisecond, Output: logs,
		Logger: zerolog.New(zerolog.ConsoleWriter{Out: logs, NoColor: true})})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "data", "run"); s.RunDir() != want {
		t.Errorf("run dir %s, want %s", s.RunDir(), want)
	}
	t.Cleanup(func() {
		s.Close()
		killAll(t, s.RunDir())
		if t.Failed() {
			t.Logf("supervisor and foreground output:\n%s", logs.String())
			paths, _ := filepath.Glob(filepath.Join(s.RunDir(), "*.log"))
			for _, p := range paths {
				b, _ := os.ReadFile(p)
				t.Logf("%s:\n%s", p, b)
			}
		}
	})
	return &install{dir: dir, path: path, clientEP: cmp.Or(os.Getenv("ZMWSD_CLIENT_BIND"), fmt.Sprintf("tcp://127.0.0.1:%d", cp)), s: s, logs: logs}
}

// killAll kills what the PID files in dir name, if it is still theirs.
func killAll(t *testing.T, dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, p := range paths {
		pf, err := readPIDFile(p)
		if err == nil && alive(pf) == nil && pf.PID != os.Getpid() {
			t.Errorf("%s: PID %d still runs at the end: killed", p, pf.PID)
			syscall.Kill(pf.PID, syscall.SIGKILL)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (in *install) client(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Broker: in.clientEP, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pids(rows []Row) map[string]int {
	m := map[string]int{}
	for _, r := range rows {
		m[r.Name] = r.PID
	}
	return m
}

func states(rows []Row) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s=%s ", r.Name, r.State)
	}
	return strings.TrimSpace(b.String())
}

func pidFiles(t *testing.T, dir string) []string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for i, p := range paths {
		paths[i] = filepath.Base(p)
	}
	return paths
}

const twoWorkers = `
[[worker]]
name = "rev"
service = "REV"
command = "rev"
concurrency = 2

[[worker]]
name = "slow"
service = "SLOW"
command = "sleep 30"
grace = "500ms"
`

// TestSupervisor_StartStopStart: start everything, start again (nothing
// new), stop the workers (the broker stays, its services known with
// their workers gone), start them again, stop everything (no process,
// no PID file).
func TestSupervisor_StartStopStart(t *testing.T) {
	in := setup(t, twoWorkers)
	ctx := context.Background()
	rows, err := in.s.Start(ctx, Which{})
	if err != nil {
		t.Fatal(err)
	}
	if got := states(rows); got != "zmwsd=started rev=started slow=started" {
		t.Fatalf("start: %s", got)
	}
	var table bytes.Buffer
	WriteTable(&table, rows)
	t.Logf("zmws start:\n%s", table.String())
	if !strings.Contains(table.String(), "zmws-run rev") || !strings.Contains(table.String(), "REV → tcp://127.0.0.1:") {
		t.Errorf("table:\n%s", table.String())
	}
	first := pids(rows)

	again, err := in.s.Start(ctx, Which{})
	if err != nil {
		t.Fatal(err)
	}
	if got := states(again); got != "zmwsd=running rev=running slow=running" {
		t.Errorf("start again: %s", got)
	}
	for name, pid := range pids(again) {
		if first[name] != pid {
			t.Errorf("start again: %s PID %d, was %d", name, pid, first[name])
		}
	}

	st, note := in.s.Status(ctx)
	table.Reset()
	WriteTable(&table, st)
	t.Logf("zmws status:\n%s", table.String())
	if note != "" || states(st) != "zmwsd=running rev=running slow=running" || !strings.Contains(table.String(), "REV×2") {
		t.Errorf("status (%s):\n%s", note, table.String())
	}

	c := in.client(t)
	if out := call(t, c, "hello"); out != "olleh" {
		t.Errorf("REV: %q", out)
	}

	stopped, err := in.s.Stop(ctx, Which{Workers: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := states(stopped); got != "rev=stopped slow=stopped" {
		t.Errorf("stop --workers: %s", got)
	}
	if got := pidFiles(t, in.s.RunDir()); len(got) != 1 || got[0] != "zmwsd.pid" {
		t.Errorf("PID files after stop --workers: %v", got)
	}
	ws, err := c.WorkersWithGone(ctx)
	if err != nil {
		t.Fatalf("the broker after stop --workers: %v", err)
	}
	gone := map[string]int{}
	for _, w := range ws {
		if w.State != "gone" {
			t.Errorf("a live worker after stop --workers: %+v", w)
		}
		gone[w.Service]++
	}
	if gone["REV"] != 2 || gone["SLOW"] != 1 {
		t.Errorf("gone workers: %v", gone)
	}

	rows, err = in.s.Start(ctx, Which{Workers: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := states(rows); got != "rev=started slow=started" {
		t.Errorf("start --workers: %s", got)
	}
	if out := call(t, c, "again"); out != "niaga" {
		t.Errorf("REV after start --workers: %q", out)
	}

	all := pids(rows)
	all["zmwsd"] = first["zmwsd"]
	stopped, err = in.s.Stop(ctx, Which{})
	if err != nil {
		t.Fatal(err)
	}
	if got := states(stopped); got != "rev=stopped slow=stopped zmwsd=stopped" {
		t.Errorf("stop: %s", got)
	}
	if got := pidFiles(t, in.s.RunDir()); len(got) != 0 {
		t.Errorf("PID files after stop: %v", got)
	}
	for name, pid := range all {
		if runs(pid) {
			t.Errorf("%s (PID %d) runs after stop", name, pid)
		}
	}
	st, _ = in.s.Status(ctx)
	if got := states(st); got != "zmwsd=not running rev=not running slow=not running" {
		t.Errorf("status after stop: %s", got)
	}
}

// TestSupervisor_StalePIDFiles: a PID file of a process gone, and one
// whose PID another program runs now, are stale: start starts anew.
func TestSupervisor_StalePIDFiles(t *testing.T) {
	in := setup(t, `
[[worker]]
service = "REV"
command = "rev"
`)
	ctx := context.Background()
	os.MkdirAll(in.s.RunDir(), 0o755)
	// The broker's: this test process, which is not the zmwsd started then.
	me, err := identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	other := me
	other.Start-- // started at another time: the PID was reused
	writePIDFile(in.s.pidPath("zmwsd"), other)
	// The worker's: a process that has exited.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	writePIDFile(in.s.pidPath("zmws-run-REV"), pidFile{PID: cmd.Process.Pid, Start: 1, Exe: "/bin/true"})

	st, _ := in.s.Status(ctx)
	if got := states(st); got != "zmwsd=stale REV=stale" {
		t.Errorf("status: %s", got)
	}
	rows, err := in.s.Start(ctx, Which{})
	if err != nil {
		t.Fatal(err)
	}
	if got := states(rows); got != "zmwsd=started REV=started" {
		t.Errorf("start: %s", got)
	}
	if pids(rows)["zmwsd"] == os.Getpid() {
		t.Error("the test process taken for the broker")
	}
	if got := in.logs.String(); strings.Count(got, "stale PID file removed") != 2 || !strings.Contains(got, "another process now") {
		t.Errorf("notes:\n%s", got)
	}
	if _, err := in.s.Stop(ctx, Which{}); err != nil {
		t.Fatal(err)
	}
}

// TestSupervisor_WorkersFollowTheBroker: ZMWSD_WORKER_BIND moves the
// broker's worker endpoint, and the workers started with it follow, as
// zmws start sees (their READY, on the broker ZMWSD_CLIENT_BIND moved).
func TestSupervisor_WorkersFollowTheBroker(t *testing.T) {
	cep, wep := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t)), fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	in := setup(t, `
[[worker]]
service = "REV"
command = "rev"
`, "ZMWSD_CLIENT_BIND", cep, "ZMWSD_WORKER_BIND", wep)
	ctx := context.Background()
	rows, err := in.s.Start(ctx, Which{})
	if err != nil {
		t.Fatal(err)
	}
	if got := states(rows); got != "zmwsd=started REV=started" || rows[1].Note != "" || !strings.Contains(rows[1].Where, wep) {
		t.Errorf("start: %s, %+v", got, rows)
	}
	if out := call(t, in.client(t), "moved"); out != "devom" {
		t.Errorf("REV: %q", out)
	}
	if _, err := in.s.Stop(ctx, Which{}); err != nil {
		t.Fatal(err)
	}
}

// TestSupervisor_ConcurrentStarts: two starts at once start one set; the
// later finds it running.
func TestSupervisor_ConcurrentStarts(t *testing.T) {
	in := setup(t, `
[[worker]]
service = "REV"
command = "rev"
`)
	other, err := New(in.s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		rows [2][]Row
		errs [2]error
	)
	for i, s := range []*Supervisor{in.s, other} {
		wg.Go(func() { rows[i], errs[i] = s.Start(ctx, Which{}) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	got := states(rows[0]) + " | " + states(rows[1])
	if got != "zmwsd=started REV=started | zmwsd=running REV=running" && got != "zmwsd=running REV=running | zmwsd=started REV=started" {
		t.Errorf("two starts: %s", got)
	}
	if a, b := pids(rows[0]), pids(rows[1]); a["zmwsd"] != b["zmwsd"] || a["REV"] != b["REV"] {
		t.Errorf("two starts, two sets: %v, %v", a, b)
	}
	if _, err := in.s.Stop(ctx, Which{}); err != nil {
		t.Fatal(err)
	}
}

// TestSupervisor_CheckStartsNothing: a worker entry zmws-run refuses
// stops the start before anything runs, naming the entry's line.
func TestSupervisor_CheckStartsNothing(t *testing.T) {
	in := setup(t, `
[[worker]]
service = "REV"
command = "rev"

[[worker]]
name = "bad"
service = "BAD"
command = "rev 'x"
`)
	_, err := in.s.Start(context.Background(), Which{})
	if err == nil || !strings.Contains(err.Error(), "zmws.toml:17:") || !strings.Contains(err.Error(), "--worker bad --check") {
		t.Fatalf("start: %v", err)
	}
	if got := pidFiles(t, in.s.RunDir()); len(got) != 0 {
		t.Errorf("PID files: %v", got)
	}
}

// TestSupervisor_FailedStartShowsLog: a broker that cannot bind fails the
// start with its log's end, and leaves nothing running.
func TestSupervisor_FailedStartShowsLog(t *testing.T) {
	in := setup(t, `
[[worker]]
service = "REV"
command = "rev"
`)
	port := strings.TrimPrefix(in.clientEP, "tcp://127.0.0.1:")
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = in.s.Start(context.Background(), Which{})
	if err == nil || !strings.Contains(err.Error(), "zmwsd: exited at start (exit status 1)") || !strings.Contains(err.Error(), "zmwsd.log:") {
		t.Fatalf("start: %v", err)
	}
	t.Logf("the error:\n%v", err)
	if got := pidFiles(t, in.s.RunDir()); len(got) != 0 {
		t.Errorf("PID files: %v", got)
	}
}

// TestSupervisor_ForegroundRestarts: a worker killed with SIGKILL while
// it runs a job is started again, the job runs again on it (at least
// once), the log says why; the end of the context stops everything.
func TestSupervisor_ForegroundRestarts(t *testing.T) {
	in := setup(t, `
[[worker]]
name = "slow"
service = "SLOW"
command = ["sh", "-c", "sleep 1; echo done"]
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan []Row, 1)
	done := make(chan error, 1)
	go func() { done <- in.s.Foreground(ctx, Which{}, func(r []Row) { started <- r }) }()
	var rows []Row
	select {
	case rows = <-started:
	case err := <-done:
		t.Fatalf("foreground: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("foreground not ready")
	}
	if got := states(rows); got != "zmwsd=started slow=started" {
		t.Fatalf("foreground: %s", got)
	}
	if got := pidFiles(t, in.s.RunDir()); strings.Join(got, " ") != "supervisor.pid zmws-run-slow.pid zmwsd.pid" {
		t.Errorf("PID files: %v", got)
	}
	// A detached start now starts nothing.
	again, err := in.s.Start(ctx, Which{})
	if err != nil || states(again) != "zmwsd=running slow=running" {
		t.Errorf("start beside foreground: %s, %v", states(again), err)
	}

	c := in.client(t)
	id, err := c.Submit(ctx, "SLOW", client.Request{})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Eventually(t, "the job to run", 10*time.Second, func() bool {
		j, err := c.Job(ctx, id)
		return err == nil && j.State == "active"
	})
	worker := pids(rows)["slow"]
	syscall.Kill(worker, syscall.SIGKILL)
	var j protocol.JobInfo
	zmqtest.Eventually(t, "the job to complete", 20*time.Second, func() bool {
		j, err = c.Job(ctx, id)
		return err == nil && j.State == "complete"
	})
	if j.Attempts != 2 {
		t.Errorf("job: %d attempts, want 2", j.Attempts)
	}
	pf, err := readPIDFile(in.s.pidPath("zmws-run-slow"))
	if err != nil || pf.PID == worker || alive(pf) != nil {
		t.Errorf("the worker's PID file after the restart: %+v, %v", pf, err)
	}
	if got := in.logs.String(); !strings.Contains(got, "process exited: restarting") || !strings.Contains(got, "killed by SIGKILL") ||
		!strings.Contains(got, "process restarted") {
		t.Errorf("log:\n%s", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("foreground did not stop")
	}
	if got := pidFiles(t, in.s.RunDir()); len(got) != 0 {
		t.Errorf("PID files after foreground: %v", got)
	}
	for _, pid := range []int{pids(rows)["zmwsd"], pf.PID} {
		if runs(pid) {
			t.Errorf("PID %d runs after foreground", pid)
		}
	}
}

// call runs a SYNC job of REV with input and returns its output.
func call(t *testing.T, c *client.Client, input string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Call(ctx, "REV", client.Request{Input: []byte(input)}, nil)
	if err != nil {
		t.Errorf("REV %q: %v", input, err)
		return ""
	}
	return strings.TrimSpace(string(r.Output))
}

// runs tells whether pid runs: a zombie not yet reaped (this test
// process is the parent of what it started) does not.
func runs(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

func TestReadStat_OddCommandName(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil || st.Start == 0 {
		t.Fatalf("own stat: %+v, %v", st, err)
	}
	if _, err := readStat(1 << 30); err == nil {
		t.Error("stat of no process")
	}
}

// TestTerminate_KillsPastTheBound: a process that ignores SIGTERM gets
// SIGKILL once the bound has passed; a stale PID file is never signalled.
func TestTerminate_KillsPastTheBound(t *testing.T) {
	cmd := exec.Command("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	pf, err := identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	stale := pf
	stale.Start++
	if sig := terminate(stale, time.Second); sig != "" {
		t.Errorf("a stale PID file signalled: %s", sig)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t0 := time.Now()
	if sig := terminate(pf, 200*time.Millisecond); sig != "SIGKILL" {
		t.Errorf("terminate: %q", sig)
	}
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Errorf("killed after %v, before the bound", d)
	}
	<-done
}
