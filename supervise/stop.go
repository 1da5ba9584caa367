package supervise

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zmws/zmws/config"
)

// terminate sends SIGTERM to the process pf names when it still runs, waits
// for it at most bound, then sends SIGKILL and waits a little more. It
// returns the signal that ended it ("" when it was gone already).
func terminate(pf pidFile, bound time.Duration) string {
	if alive(pf) != nil {
		return ""
	}
	syscall.Kill(pf.PID, syscall.SIGTERM)
	if waitGone(pf, bound) {
		return "SIGTERM"
	}
	syscall.Kill(pf.PID, syscall.SIGKILL)
	waitGone(pf, killWait)
	return "SIGKILL"
}

// waitGone polls until pf's process is gone, at most d.
func waitGone(pf pidFile, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pf) == nil {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// graceOf returns how long worker name may take to stop: its grace (the
// entry's, ZMWS_RUN_GRACE, or zmws-run's default) plus a margin.
func (s *Supervisor) graceOf(name string) time.Duration {
	g := DefaultGrace
	if v, ok := os.LookupEnv("ZMWS_RUN_GRACE"); ok {
		if d, err := time.ParseDuration(v); err == nil {
			g = d
		}
	} else if w, err := s.cfg.File.Worker(name); err == nil && w != nil {
		if d, ok := w.Values["grace"].(time.Duration); ok {
			g = d
		}
	}
	return g + stopMargin
}

// stopItem is a process Stop ends.
type stopItem struct {
	name   string
	worker bool
	path   string
	bound  time.Duration
}

// Stop stops the processes w selects that run, by their PID files in
// RUN (an entry gone from the file since it started included): the
// workers first, with SIGTERM, so their running jobs finish or are given
// back within their grace, SIGKILL past it; then the broker. It removes
// the PID files, stale ones with a note. Under zmws start --foreground it
// stops that supervisor, which stops everything in the same order.
func (s *Supervisor) Stop(ctx context.Context, w Which) ([]Row, error) {
	if _, err := os.Stat(s.cfg.RunDir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	unlock, err := lock(s.cfg.RunDir, s.cfg.LockWait)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if sup, _ := s.running(strings.TrimSuffix(supervisorFile, ".pid")); sup != nil {
		if !w.all() {
			return nil, fmt.Errorf("zmws start --foreground (PID %d) supervises these processes and would start them again: stop it (Ctrl-C, or zmws stop with neither --servers nor --workers)", sup.PID)
		}
		bound := 2 * stopMargin
		for _, p := range s.workers {
			bound = max(bound, s.graceOf(p.Name)+2*stopMargin)
		}
		sig := terminate(*sup, bound)
		return []Row{{Name: "zmws start --foreground", PID: sup.PID, State: stoppedBy(sig)}}, nil
	}
	w = w.norm()
	var workers, brokers []stopItem
	if w.Workers {
		paths, _ := filepath.Glob(filepath.Join(s.cfg.RunDir, workerPrefix+"*.pid"))
		for _, path := range paths {
			name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), workerPrefix), ".pid")
			workers = append(workers, stopItem{name: name, worker: true, path: path, bound: s.graceOf(name)})
		}
	}
	if w.Servers {
		brokers = append(brokers, stopItem{name: brokerName, path: s.pidPath(brokerName), bound: stopMargin + 10*time.Second})
	}
	rows := s.stopAll(workers)
	return append(rows, s.stopAll(brokers)...), nil
}

// stopAll ends items at once and waits for them all.
func (s *Supervisor) stopAll(items []stopItem) []Row {
	rows := make([]Row, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		pf, err := readPIDFile(it.path)
		if errors.Is(err, fs.ErrNotExist) {
			rows[i] = Row{Name: it.name, Worker: it.worker, State: "not running"}
			continue
		}
		if err != nil {
			rows[i] = Row{Name: it.name, Worker: it.worker, State: "stale", Note: err.Error()}
			os.Remove(it.path)
			continue
		}
		if err := alive(pf); err != nil {
			rows[i] = Row{Name: it.name, Worker: it.worker, PID: pf.PID, State: "stale", Note: "PID file removed: " + strings.TrimPrefix(err.Error(), "stale: ")}
			os.Remove(it.path)
			continue
		}
		wg.Go(func() {
			t0 := time.Now()
			sig := terminate(pf, it.bound)
			rows[i] = Row{Name: it.name, Worker: it.worker, PID: pf.PID, State: stoppedBy(sig), Where: pf.Where,
				Note: fmt.Sprintf("in %v", time.Since(t0).Round(10*time.Millisecond))}
			if sig == "SIGKILL" {
				rows[i].Note += fmt.Sprintf(", still running %v after SIGTERM", it.bound)
			}
			os.Remove(it.path)
		})
	}
	wg.Wait()
	return rows
}

func stoppedBy(sig string) string {
	switch sig {
	case "SIGKILL":
		return "killed"
	case "":
		return "gone"
	}
	return "stopped"
}

// Status returns a row for the broker and each worker, of the file and of
// the PID files in RUN, with the services each worker has live on the
// broker when it answers (note says when it does not).
func (s *Supervisor) Status(ctx context.Context) (rows []Row, note string) {
	ps := slices.Clone(s.workers)
	if s.broker != nil {
		ps = append([]Proc{*s.broker}, ps...)
	} else if _, err := os.Stat(s.pidPath(brokerName)); err == nil {
		ps = append([]Proc{{Name: brokerName}}, ps...)
	}
	paths, _ := filepath.Glob(filepath.Join(s.cfg.RunDir, workerPrefix+"*.pid"))
	for _, path := range paths {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), workerPrefix), ".pid")
		if !slices.ContainsFunc(ps, func(p Proc) bool { return p.Entry != nil && p.Name == name }) {
			ps = append(ps, Proc{Name: name, Entry: &config.Worker{Name: name}})
		}
	}
	var live map[int]map[string]int
	if err := s.needCurve(); err != nil {
		note = err.Error()
	} else if cl, err := s.client(); err != nil {
		note = err.Error()
	} else {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ws, err := cl.Workers(qctx)
		cancel()
		if err != nil {
			note = fmt.Sprintf("the broker does not answer on %s (%v): services as started", s.clientEP, err)
		} else {
			live = liveByPID(ws)
		}
	}
	for _, p := range ps {
		path := s.pidPath(p.base())
		pf, err := readPIDFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			rows = append(rows, Row{Name: p.Name, Worker: p.Entry != nil, State: "not running"})
			continue
		case err != nil:
			rows = append(rows, Row{Name: p.Name, Worker: p.Entry != nil, State: "stale", Note: err.Error()})
			continue
		}
		if err := alive(pf); err != nil {
			rows = append(rows, Row{Name: p.Name, Worker: p.Entry != nil, PID: pf.PID, State: "stale",
				Note: strings.TrimPrefix(err.Error(), "stale: ") + "; zmws start or stop removes " + path})
			continue
		}
		r := s.row(p, pf, "running")
		if p.Entry != nil && live != nil {
			var parts []string
			for _, svc := range pf.Services {
				n := live[pf.PID][svc]
				if n == 0 {
					parts = append(parts, svc+" (not live)")
				} else {
					parts = append(parts, fmt.Sprintf("%s×%d", svc, n))
				}
			}
			r.Where = strings.Join(parts, " ")
			if _, after, ok := strings.Cut(pf.Where, " → "); ok {
				r.Where += " → " + after
			}
		}
		rows = append(rows, r)
	}
	return rows, note
}
