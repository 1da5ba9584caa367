package supervise

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/config"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/protocol"
)

// Defaults of Config.
const (
	DefaultWait         = 30 * time.Second
	DefaultLockWait     = time.Minute
	DefaultBackoffMin   = time.Second
	DefaultBackoffMax   = 30 * time.Second
	DefaultBackoffReset = time.Minute
	// DefaultGrace is zmws-run's --grace, for an entry that sets none.
	DefaultGrace = 10 * time.Second
	// stopMargin is added to a worker's grace (and is the broker's whole
	// bound) before SIGKILL: the worker gives back its jobs, says
	// DISCONNECT and ends its ZeroMQ context in that time.
	stopMargin = 5 * time.Second
	// killWait bounds the wait for a process after SIGKILL.
	killWait = 5 * time.Second
	// brokerName is the broker's name in tables and in RUN/zmwsd.pid.
	brokerName = "zmwsd"
	// workerPrefix starts a worker's files in RUN: zmws-run-NAME.pid.
	workerPrefix = "zmws-run-"
	// supervisorFile is the PID file of zmws start --foreground.
	supervisorFile = "supervisor.pid"
)

// Config says what to supervise and with what.
type Config struct {
	// File is the installation, loaded with config.Load.
	File *config.File
	// RunDir holds the PID files, the logs and the lock (DefaultRunDir).
	RunDir string
	// Zmwsd and ZmwsRun are the programs to run (FindBinary).
	Zmwsd, ZmwsRun string
	// Curve is the client key pair to query a broker that speaks CURVE
	// with; it needs the admin right for SERVER-WORKERS.
	Curve *curve.Client
	// Wait bounds how long Start waits for each process to be ready
	// (DefaultWait).
	Wait time.Duration
	// LockWait bounds the wait for another zmws start or stop (DefaultLockWait).
	LockWait time.Duration
	// Output receives the processes' output under Foreground (default
	// os.Stderr); detached, each writes RUN/NAME.log.
	Output io.Writer
	// BackoffMin, BackoffMax and BackoffReset shape Foreground's restarts:
	// the first waits BackoffMin, each next twice as long up to BackoffMax,
	// and a process that stayed up BackoffReset starts again from BackoffMin.
	BackoffMin, BackoffMax, BackoffReset time.Duration
	// Logger receives notes (stale PID files) and, under Foreground, each
	// exit and restart.
	Logger zerolog.Logger
}

// Which selects the processes of a start or stop: the broker (Servers),
// the workers, or, with neither, both (as the original's start.php).
type Which struct{ Servers, Workers bool }

func (w Which) norm() Which {
	if !w.Servers && !w.Workers {
		return Which{true, true}
	}
	return w
}

func (w Which) all() bool { n := w.norm(); return n.Servers && n.Workers }

// Proc is one process of the installation: the broker, or a [[worker]].
type Proc struct {
	Name  string         // brokerName, or the entry's name
	Entry *config.Worker // nil for the broker
}

func (p Proc) base() string {
	if p.Entry == nil {
		return brokerName
	}
	return workerPrefix + p.Name
}

// Row is one line of a table: a process and its state.
type Row struct {
	Name   string
	Worker bool
	PID    int
	// State is started, running, stopped, killed (after its bound), not
	// running, or stale (its PID file named a process gone or another).
	State  string
	Uptime time.Duration
	// Where is the broker's endpoints, or a worker's services and broker.
	Where string
	Note  string
}

// Supervisor starts, stops and looks after an installation's processes.
// Its methods are meant for one call each, from one goroutine.
type Supervisor struct {
	cfg      Config
	path     string // the installation file, absolute
	broker   *Proc  // nil when the file has no [broker]
	workers  []Proc
	clientEP string // where to query the broker; "" when it cannot be reached
	workerEP string // where local workers reach it
	curveOn  bool   // the broker speaks CURVE

	cl *client.Client
}

// New returns a Supervisor for cfg.
func New(cfg Config) (*Supervisor, error) {
	if cfg.File == nil {
		return nil, errors.New("supervise: no installation file")
	}
	cfg.Wait = cmp.Or(cfg.Wait, DefaultWait)
	cfg.LockWait = cmp.Or(cfg.LockWait, DefaultLockWait)
	cfg.BackoffMin = cmp.Or(cfg.BackoffMin, DefaultBackoffMin)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, DefaultBackoffMax)
	cfg.BackoffReset = cmp.Or(cfg.BackoffReset, DefaultBackoffReset)
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	if cfg.RunDir == "" {
		d, err := DefaultRunDir(cfg.File)
		if err != nil {
			return nil, err
		}
		cfg.RunDir = d
	}
	rd, err := filepath.Abs(cfg.RunDir)
	if err != nil {
		return nil, err
	}
	cfg.RunDir = rd
	path, err := filepath.Abs(cfg.File.Path)
	if err != nil {
		return nil, err
	}
	s := &Supervisor{cfg: cfg, path: path}
	f := cfg.File
	if f.Broker.Line != 0 {
		s.broker = &Proc{Name: brokerName}
	}
	for i := range f.Workers {
		s.workers = append(s.workers, Proc{Name: f.Workers[i].Name, Entry: &f.Workers[i]})
	}
	s.clientEP, _ = config.Reachable(envOr("ZMWSD_CLIENT_BIND", f.ClientBind()))
	s.workerEP, _ = config.Reachable(envOr("ZMWSD_WORKER_BIND", f.WorkerBind()))
	fileKey, _ := f.Broker.Values["curve_key"].(string)
	s.curveOn = envOr("ZMWSD_CURVE_KEY", fileKey) != ""
	return s, nil
}

// RunDir returns the folder of the PID files and logs.
func (s *Supervisor) RunDir() string { return s.cfg.RunDir }

// DefaultRunDir is run/ in the broker's data directory (ZMWSD_DATA_DIR
// when set, as zmwsd would take it, else the file's data_dir or zmwsd's
// default), absolute.
func DefaultRunDir(f *config.File) (string, error) {
	d := envOr("ZMWSD_DATA_DIR", f.DataDir())
	if d == "" {
		return "", errors.New("the broker keeps no data directory (data_dir is empty): give --run-dir")
	}
	return filepath.Abs(filepath.Join(d, "run"))
}

// envOr returns the environment variable name when it is set (even
// empty), as zmwsd and zmws-run take it over the file, else def.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// FindBinary returns the path of the program name: in dir when dir is not
// empty, else next to the running executable, else on $PATH. The error
// names where it looked.
func FindBinary(name, dir string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, name)
		if isExec(p) {
			return filepath.Abs(p)
		}
		return "", fmt.Errorf("no %s in --bin-dir %s", name, dir)
	}
	var looked []string
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		p := filepath.Join(d, name)
		if isExec(p) {
			return p, nil
		}
		looked = append(looked, d)
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	looked = append(looked, "$PATH")
	return "", fmt.Errorf("no %s in %s: build it there (go build -o DIR ./cmd/%s) or give --bin-dir", name, strings.Join(looked, " or "), name)
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// selected returns the processes w selects, the broker first.
func (s *Supervisor) selected(w Which) ([]Proc, error) {
	w = w.norm()
	var ps []Proc
	if w.Servers && s.broker != nil {
		ps = append(ps, *s.broker)
	}
	if w.Workers {
		ps = append(ps, s.workers...)
	}
	if len(ps) == 0 {
		switch {
		case w.Servers && !w.Workers:
			return nil, fmt.Errorf("%s has no [broker] table: no server to start", s.cfg.File.Path)
		case w.Workers && !w.Servers:
			return nil, fmt.Errorf("%s has no [[worker]] entries", s.cfg.File.Path)
		}
		return nil, fmt.Errorf("%s has neither a [broker] table nor [[worker]] entries: nothing to start", s.cfg.File.Path)
	}
	return ps, nil
}

func (s *Supervisor) pidPath(base string) string { return filepath.Join(s.cfg.RunDir, base+".pid") }
func (s *Supervisor) logPath(base string) string { return filepath.Join(s.cfg.RunDir, base+".log") }

func (s *Supervisor) args(p Proc) (bin string, args []string) {
	if p.Entry == nil {
		return s.cfg.Zmwsd, []string{"--config", s.path}
	}
	return s.cfg.ZmwsRun, []string{"--config", s.path, "--worker", p.Name}
}

// Check runs each selected process's own check (zmwsd --check, zmws-run
// --worker NAME --check) with the environment they will run in, and
// returns each worker's services. Nothing is started.
func (s *Supervisor) Check(ctx context.Context, w Which) (map[string][]string, error) {
	ps, err := s.selected(w)
	if err != nil {
		return nil, err
	}
	return s.check(ctx, ps)
}

func (s *Supervisor) check(ctx context.Context, ps []Proc) (map[string][]string, error) {
	services := map[string][]string{}
	var errs []error
	for _, p := range ps {
		bin, args := s.args(p)
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, append(args, "--check")...)
		cmd.Env = s.env(p)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if msg == "" {
				msg = err.Error()
			}
			errs = append(errs, fmt.Errorf("%s %s --check: %s", filepath.Base(bin), strings.Join(args[2:], " "), msg))
			continue
		}
		if p.Entry != nil {
			for line := range strings.Lines(stdout.String()) {
				if strings.HasPrefix(line, "contain:") || strings.HasPrefix(line, "--") {
					continue
				}
				if svc, _, _ := strings.Cut(strings.TrimSpace(line), "\t"); svc != "" {
					services[p.Name] = append(services[p.Name], svc)
				}
			}
		}
	}
	return services, errors.Join(errs...)
}

// needCurve fails when the broker speaks CURVE and no client keys were
// given to ask it whether it, and the workers, are ready.
func (s *Supervisor) needCurve() error {
	if s.curveOn && s.cfg.Curve == nil {
		return errors.New("the broker speaks CURVE (curve_key): to see that it and its workers are ready, zmws needs a client key it admits with the admin right: give --broker-key and --curve-key (ZMWS_BROKER_KEY, ZMWS_CURVE_KEY)")
	}
	return nil
}

func (s *Supervisor) client() (*client.Client, error) {
	if s.cl != nil {
		return s.cl, nil
	}
	if s.clientEP == "" {
		return nil, errors.New("the broker's client endpoint cannot be reached from here")
	}
	c, err := client.New(client.Config{Broker: s.clientEP, Timeout: time.Second, Retries: -1, Curve: s.cfg.Curve, Logger: zerolog.Nop()})
	if err != nil {
		return nil, err
	}
	s.cl = c
	return c, nil
}

// Close releases the Supervisor's broker client.
func (s *Supervisor) Close() {
	if s.cl != nil {
		s.cl.Close()
		s.cl = nil
	}
}

// child is a process started by this Supervisor.
type child struct {
	base  string // its files' name in RUN
	cmd   *exec.Cmd
	pf    pidFile
	begun time.Time
	done  chan struct{} // closed once cmd has exited; then err is set
	err   error
}

// spawn starts p: detached (its own session, its output appended to
// RUN/NAME.log) or, for Foreground, in its own process group writing to
// cfg.Output. It writes RUN/NAME.pid.
func (s *Supervisor) spawn(p Proc, services []string, detached bool) (*child, error) {
	bin, args := s.args(p)
	cmd := exec.Command(bin, args...)
	cmd.Env = s.env(p)
	if detached {
		f, err := os.OpenFile(s.logPath(p.base()), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.Stdout, cmd.Stderr = s.cfg.Output, s.cfg.Output
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches the supervisor only
		cmd.WaitDelay = time.Second
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	pf, err := identify(cmd.Process.Pid)
	if err != nil {
		pf = pidFile{PID: cmd.Process.Pid}
	}
	pf.Exe = cmp.Or(pf.Exe, bin)
	pf.Services, pf.Where = services, s.where(p, services)
	c := &child{base: p.base(), cmd: cmd, pf: pf, begun: time.Now(), done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := writePIDFile(s.pidPath(p.base()), pf); err != nil {
		cmd.Process.Kill()
		<-c.done
		return nil, err
	}
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// where says where p runs, for the tables.
func (s *Supervisor) where(p Proc, services []string) string {
	if p.Entry == nil {
		f := s.cfg.File
		parts := []string{"clients " + envOr("ZMWSD_CLIENT_BIND", f.ClientBind()), "workers " + envOr("ZMWSD_WORKER_BIND", f.WorkerBind())}
		if e := envOr("ZMWSD_EVENTS_BIND", f.EventsBind()); e != "" {
			parts = append(parts, "events "+e)
		}
		if h := envOr("ZMWSD_HTTP_BIND", f.HTTPBind()); h != "" {
			parts = append(parts, "http "+h)
		}
		return strings.Join(parts, ", ")
	}
	return strings.Join(services, " ") + " → " + strings.Join(s.brokersOf(p), ",")
}

// brokersOf returns where worker p connects: ZMWS_RUN_BROKER when set,
// else its entry's brokers, else the broker's worker endpoint (which
// ZMWSD_WORKER_BIND may move: see env).
func (s *Supervisor) brokersOf(p Proc) []string {
	if v := s.runBroker(p); v != "" {
		return strings.Split(v, ",")
	}
	return p.Entry.Brokers()
}

// runBroker returns the ZMWS_RUN_BROKER worker p runs with: the
// environment's, or, for an entry without a brokers key when
// ZMWSD_WORKER_BIND moves the broker's worker endpoint, that endpoint, so
// that the workers follow the broker they are started with.
func (s *Supervisor) runBroker(p Proc) string {
	if v, ok := os.LookupEnv("ZMWS_RUN_BROKER"); ok && v != "" {
		return v
	}
	if _, set := p.Entry.Values["brokers"]; set {
		return ""
	}
	if _, moved := os.LookupEnv("ZMWSD_WORKER_BIND"); moved && s.workerEP != "" {
		return s.workerEP
	}
	return ""
}

// env is the environment p runs in: zmws's own, with ZMWS_RUN_BROKER set
// for a worker as runBroker says.
func (s *Supervisor) env(p Proc) []string {
	env := os.Environ()
	if p.Entry == nil {
		return env
	}
	if _, ok := os.LookupEnv("ZMWS_RUN_BROKER"); !ok {
		if v := s.runBroker(p); v != "" {
			env = append(env, "ZMWS_RUN_BROKER="+v)
		}
	}
	return env
}

// verifiable tells whether worker p's READY can be seen on the broker
// this Supervisor queries.
func (s *Supervisor) verifiable(p Proc) bool {
	return s.clientEP != "" && s.workerEP != "" && slices.Contains(s.brokersOf(p), s.workerEP)
}

// ready waits until c is ready: the broker answers SERVER-HEALTH, or each
// of a worker's services has a live worker of c's PID in SERVER-WORKERS.
func (s *Supervisor) ready(ctx context.Context, p Proc, c *child, services []string) error {
	deadline := time.Now().Add(s.cfg.Wait)
	var last error
	for {
		if c.exited() {
			return s.failed(p, fmt.Errorf("exited at start (%s)", exitText(c.err)))
		}
		if time.Now().After(deadline) {
			why := fmt.Sprintf("not ready within %v", s.cfg.Wait)
			if last != nil {
				why += ": " + last.Error()
			}
			return s.failed(p, errors.New(why))
		}
		if p.Entry != nil && !s.verifiable(p) {
			// It connects to a broker this zmws does not query: alive
			// for a second is all that can be seen.
			if time.Since(c.begun) > time.Second {
				return nil
			}
		} else if last = s.probe(ctx, p, c.pf.PID, services); last == nil {
			if c.exited() { // another broker answered on its endpoint
				continue
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probe asks the broker once whether p (of PID pid) is ready.
func (s *Supervisor) probe(ctx context.Context, p Proc, pid int, services []string) error {
	cl, err := s.client()
	if err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if p.Entry == nil {
		if _, err := cl.Query(qctx, protocol.ServerHealth); err != nil {
			return fmt.Errorf("the broker does not answer on %s: %w", s.clientEP, err)
		}
		return nil
	}
	ws, err := cl.Workers(qctx)
	if err != nil {
		return fmt.Errorf("the broker does not answer on %s: %w", s.clientEP, err)
	}
	live := liveByPID(ws)[pid]
	var missing []string
	for _, svc := range services {
		if live[svc] == 0 {
			missing = append(missing, svc)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no READY yet for %s", strings.Join(missing, ", "))
	}
	return nil
}

// liveByPID counts the live workers of each service by the PID their
// READY announced.
func liveByPID(ws []protocol.WorkerInfo) map[int]map[string]int {
	host, _ := os.Hostname()
	m := map[int]map[string]int{}
	for _, w := range ws {
		if w.State == "gone" || w.Details == nil || w.Details.PID == 0 || (w.Details.Host != "" && w.Details.Host != host) {
			continue
		}
		if m[w.Details.PID] == nil {
			m[w.Details.PID] = map[string]int{}
		}
		m[w.Details.PID][w.Service]++
	}
	return m
}

// failed is err for p, with the tail of its log.
func (s *Supervisor) failed(p Proc, err error) error {
	msg := fmt.Sprintf("%s: %v", p.Name, err)
	if t := tail(s.logPath(p.base()), 15); t != "" {
		msg += fmt.Sprintf("\nthe end of %s:\n%s", s.logPath(p.base()), t)
	}
	return errors.New(msg)
}

// tail returns the last n lines of the file at path ("" when unreadable).
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 64<<10 {
		f.Seek(-64<<10, io.SeekEnd)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		lines = append(lines, "  "+sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix(ws.Signal())
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func unix(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	}
	return sig.String()
}

// running reads p's PID file: the process when it runs, nil when it does
// not. A stale file is removed, with a note.
func (s *Supervisor) running(base string) (*pidFile, error) {
	path := s.pidPath(base)
	pf, err := readPIDFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := alive(pf); err != nil {
		s.cfg.Logger.Warn().Str("pid_file", path).Msgf("stale PID file removed (%v)", strings.TrimPrefix(err.Error(), "stale: "))
		os.Remove(path)
		return nil, nil
	}
	return &pf, nil
}

// Start starts the processes w selects that do not run yet, each detached
// with RUN/NAME.log and RUN/NAME.pid, the broker first, and waits until
// each is ready. Everything is checked before anything starts; when one
// fails to start, those this call started are stopped again. The rows say
// what runs, started now or before.
func (s *Supervisor) Start(ctx context.Context, w Which) ([]Row, error) {
	ps, err := s.selected(w)
	if err != nil {
		return nil, err
	}
	if err := s.needCurve(); err != nil {
		return nil, err
	}
	services, err := s.check(ctx, ps)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.cfg.RunDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lock(s.cfg.RunDir, s.cfg.LockWait)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var (
		rows    []Row
		started []*child
	)
	rollback := func(err error) ([]Row, error) {
		for _, c := range slices.Backward(started) {
			terminate(c.pf, stopMargin)
			<-c.done
		}
		for _, c := range started {
			os.Remove(s.pidPath(c.base))
		}
		return nil, err
	}
	// Under zmws start --foreground, what does not run is in its backoff:
	// it starts them again itself.
	sup, err := s.running(strings.TrimSuffix(supervisorFile, ".pid"))
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		pf, err := s.running(p.base())
		if err != nil {
			return rollback(err)
		}
		if pf != nil {
			rows = append(rows, s.row(p, *pf, "running"))
			continue
		}
		if sup != nil {
			rows = append(rows, Row{Name: p.Name, Worker: p.Entry != nil, State: "restarting",
				Note: fmt.Sprintf("zmws start --foreground (PID %d) restarts it", sup.PID)})
			continue
		}
		c, err := s.spawn(p, services[p.Name], true)
		if err != nil {
			return rollback(err)
		}
		started = append(started, c)
		if err := s.ready(ctx, p, c, services[p.Name]); err != nil {
			return rollback(err)
		}
		rows = append(rows, s.startedRow(p, c))
	}
	return rows, nil
}

// startedRow is the row of p, started now as c.
func (s *Supervisor) startedRow(p Proc, c *child) Row {
	r := s.row(p, c.pf, "started")
	r.Uptime = time.Since(c.begun) // /proc/stat's boot time has whole seconds only
	if p.Entry != nil && !s.verifiable(p) {
		r.Note = "READY not checked: it connects to " + strings.Join(s.brokersOf(p), ",") + ", not " + cmp.Or(s.workerEP, "this broker")
	}
	return r
}

func (s *Supervisor) row(p Proc, pf pidFile, state string) Row {
	r := Row{Name: p.Name, Worker: p.Entry != nil, PID: pf.PID, State: state, Where: pf.Where}
	if pf.Start != 0 {
		r.Uptime = uptime(pf.Start, time.Now())
	}
	return r
}
