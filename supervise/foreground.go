package supervise

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// watched is a process Foreground keeps running. Its monitor goroutine
// owns the restarts; mu guards cur and stopped against the stop path.
type watched struct {
	p        Proc
	services []string

	mu      sync.Mutex
	cur     *child
	stopped bool          // no more restarts
	stop    chan struct{} // closed with stopped set
	exited  chan struct{} // closed when the monitor returns
}

// Foreground starts the processes w selects as its children, waits until
// each is ready, and keeps them running until ctx ends: one that exits is
// started again after a backoff (BackoffMin doubling to BackoffMax; back
// to BackoffMin once one stayed up BackoffReset), each exit and restart
// logged with its exit status or signal. When ctx ends it stops the
// workers, then the broker, as Stop does. The PID files are written as
// Start writes them, so zmws status sees the processes and zmws start
// starts no second set; RUN/supervisor.pid lets zmws stop end this.
func (s *Supervisor) Foreground(ctx context.Context, w Which, ready func([]Row)) error {
	ps, err := s.selected(w)
	if err != nil {
		return err
	}
	if err := s.needCurve(); err != nil {
		return err
	}
	services, err := s.check(ctx, ps)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.cfg.RunDir, 0o755); err != nil {
		return err
	}
	unlock, err := lock(s.cfg.RunDir, s.cfg.LockWait)
	if err != nil {
		return err
	}
	var running []string
	for _, p := range append(ps, Proc{Name: "zmws start --foreground"}) {
		base := p.base()
		if p.Entry == nil && p.Name != brokerName {
			base = strings.TrimSuffix(supervisorFile, ".pid")
		}
		pf, err := s.running(base)
		if err != nil {
			unlock()
			return err
		}
		if pf != nil {
			running = append(running, fmt.Sprintf("%s (PID %d)", p.Name, pf.PID))
		}
	}
	if len(running) > 0 {
		unlock()
		return fmt.Errorf("already running: %s; zmws stop them first", strings.Join(running, ", "))
	}
	me, err := identify(os.Getpid())
	if err == nil {
		me.Where = "zmws start --foreground"
		err = writePIDFile(s.pidPath(strings.TrimSuffix(supervisorFile, ".pid")), me)
	}
	if err != nil {
		unlock()
		return err
	}
	defer os.Remove(s.pidPath(strings.TrimSuffix(supervisorFile, ".pid")))

	var (
		ws   []*watched
		rows []Row
	)
	stopAll := func() {
		stopWatched(s, ws)
	}
	for _, p := range ps {
		c, err := s.spawn(p, services[p.Name], false)
		if err == nil {
			err = s.ready(ctx, p, c, services[p.Name])
			if err != nil {
				terminate(c.pf, stopMargin)
				<-c.done
				os.Remove(s.pidPath(p.base()))
			}
		}
		if err != nil {
			unlock()
			stopAll()
			return err
		}
		x := &watched{p: p, services: services[p.Name], cur: c, stop: make(chan struct{}), exited: make(chan struct{})}
		ws = append(ws, x)
		go s.monitor(x)
		rows = append(rows, s.startedRow(p, c))
	}
	unlock()
	if ready != nil {
		ready(rows)
	}
	<-ctx.Done()
	s.cfg.Logger.Info().Msg("stopping: workers first, then the broker")
	stopAll()
	return nil
}

// stopWatched stops the workers of ws, then the broker, and removes their
// PID files.
func stopWatched(s *Supervisor, ws []*watched) {
	var workers, brokers []*watched
	for _, x := range ws {
		if x.p.Entry != nil {
			workers = append(workers, x)
		} else {
			brokers = append(brokers, x)
		}
	}
	for _, group := range [][]*watched{workers, brokers} {
		var wg sync.WaitGroup
		for _, x := range group {
			wg.Go(func() {
				x.mu.Lock()
				x.stopped = true
				close(x.stop)
				c := x.cur
				x.mu.Unlock()
				bound := stopMargin + 10*time.Second
				if x.p.Entry != nil {
					bound = s.graceOf(x.p.Name)
				}
				if !c.exited() {
					t0 := time.Now()
					sig := terminate(c.pf, bound)
					<-c.done
					s.cfg.Logger.Info().Str("name", x.p.Name).Int("pid", c.pf.PID).Str("signal", sig).
						Str("exit", exitText(c.err)).Dur("elapsed", time.Since(t0)).Msg("stopped")
				}
				<-x.exited
				os.Remove(s.pidPath(x.p.base()))
			})
		}
		wg.Wait()
	}
}

// monitor restarts x's process each time it exits, until x is stopped.
func (s *Supervisor) monitor(x *watched) {
	defer close(x.exited)
	log := s.cfg.Logger.With().Str("name", x.p.Name).Logger()
	backoff := s.cfg.BackoffMin
	for {
		x.mu.Lock()
		c := x.cur
		x.mu.Unlock()
		<-c.done
		x.mu.Lock()
		stopped := x.stopped
		x.mu.Unlock()
		if stopped {
			return
		}
		up := time.Since(c.begun)
		if up >= s.cfg.BackoffReset {
			backoff = s.cfg.BackoffMin
		}
		log.Warn().Int("pid", c.pf.PID).Str("exit", exitText(c.err)).Dur("uptime", up.Round(time.Millisecond)).
			Dur("backoff", backoff).Msg("process exited: restarting it after the backoff")
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-x.stop:
			t.Stop()
			return
		}
		backoff = min(2*backoff, s.cfg.BackoffMax)
		x.mu.Lock()
		if x.stopped {
			x.mu.Unlock()
			return
		}
		n, err := s.spawn(x.p, x.services, false)
		if err != nil {
			x.mu.Unlock()
			log.Error().Err(err).Msg("restart failed: trying again after the backoff")
			c = &child{begun: time.Now(), done: make(chan struct{}), err: err}
			close(c.done)
			x.mu.Lock()
			x.cur = c
			x.mu.Unlock()
			continue
		}
		x.cur = n
		x.mu.Unlock()
		log.Info().Int("pid", n.pf.PID).Msg("process restarted")
	}
}
