package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/config"
	"github.com/zmws/zmws/supervise"
)

// installFlags are the flags of start, stop and status: which
// installation, and where its PID files and logs are.
type installFlags struct {
	Config string `help:"The installation file (docs/CONFIG.md): its [broker] and [[worker]] entries are what runs. Default: ./zmws.toml, else /etc/zmws/zmws.toml." env:"ZMWS_CONFIG" placeholder:"FILE"`
	RunDir string `help:"Folder of the PID files (NAME.pid), the logs (NAME.log) and the lock. Default: run/ in the broker's data directory." placeholder:"DIR"`
}

// supervisor loads the installation file and returns its Supervisor;
// with binDir set or bins true it finds zmwsd and zmws-run too.
func (f installFlags) supervisor(e *env, bins bool, binDir string, wait time.Duration) (*supervise.Supervisor, error) {
	path := f.Config
	if path == "" {
		p, err := config.Find()
		if err != nil {
			return nil, err
		}
		if p == "" {
			return nil, errors.New("no installation file: give --config FILE (neither ./zmws.toml nor /etc/zmws/zmws.toml exists)")
		}
		path = p
	}
	file, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	cfg := supervise.Config{File: file, RunDir: f.RunDir, Wait: wait, Output: e.stderr}
	if bins {
		if cfg.Zmwsd, err = supervise.FindBinary("zmwsd", binDir); err != nil {
			return nil, err
		}
		if cfg.ZmwsRun, err = supervise.FindBinary("zmws-run", binDir); err != nil {
			return nil, err
		}
	}
	if cfg.Curve, err = e.curve(); err != nil {
		return nil, err
	}
	cw := zerolog.ConsoleWriter{Out: e.stderr, TimeFormat: "15:04:05", NoColor: !e.stderrTerminal}
	cfg.Logger = zerolog.New(cw).With().Timestamp().Str("component", "zmws").Logger()
	return supervise.New(cfg)
}

// StartCmd starts what the installation file describes.
type StartCmd struct {
	installFlags
	Servers    bool          `help:"Start the broker (the [broker] table)."`
	Workers    bool          `help:"Start the workers (the [[worker]] entries). With neither flag, both."`
	Foreground bool          `help:"Run them as children of zmws instead, restarting one that dies (1s, doubling to 30s), until Ctrl-C or SIGTERM stops them all: for containers and terminals."`
	Wait       time.Duration `help:"How long to wait for each process to be ready: the broker answering, each worker's services READY." default:"30s"`
	BinDir     string        `help:"Folder of zmwsd and zmws-run. Default: the folder zmws is in, else $PATH." placeholder:"DIR"`
}

// Run checks every process, starts those not running yet, waits until
// each is ready and prints what runs where.
func (c *StartCmd) Run(e *env) error {
	s, err := c.supervisor(e, true, c.BinDir, c.Wait)
	if err != nil {
		return err
	}
	defer s.Close()
	w := supervise.Which{Servers: c.Servers, Workers: c.Workers}
	if c.Foreground {
		return s.Foreground(e.ctx, w, func(rows []supervise.Row) {
			supervise.WriteTable(e.stdout, rows)
			fmt.Fprintf(e.stdout, "in the foreground; PID files in %s; Ctrl-C stops them\n", s.RunDir())
		})
	}
	rows, err := s.Start(e.ctx, w)
	if err != nil {
		return err
	}
	if err := supervise.WriteTable(e.stdout, rows); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "logs and PID files in %s\n", s.RunDir())
	return nil
}

// StopCmd stops what zmws start started.
type StopCmd struct {
	installFlags
	Servers bool `help:"Stop the broker."`
	Workers bool `help:"Stop the workers; with neither flag, both (the workers first)."`
}

// Run stops the workers (SIGTERM, SIGKILL past their grace), then the
// broker, and removes their PID files.
func (c *StopCmd) Run(e *env) error {
	s, err := c.supervisor(e, false, "", 0)
	if err != nil {
		return err
	}
	defer s.Close()
	rows, err := s.Stop(e.ctx, supervise.Which{Servers: c.Servers, Workers: c.Workers})
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		fmt.Fprintf(e.stdout, "nothing runs (no PID files in %s)\n", s.RunDir())
		return nil
	}
	return supervise.WriteTable(e.stdout, rows)
}

// StatusCmd shows what runs.
type StatusCmd struct {
	installFlags
}

// Run prints each process, its PID, uptime and services.
func (c *StatusCmd) Run(e *env) error {
	s, err := c.supervisor(e, false, "", 0)
	if err != nil {
		return err
	}
	defer s.Close()
	rows, note := s.Status(e.ctx)
	if err := supervise.WriteTable(e.stdout, rows); err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(e.stdout, "note:", note)
	}
	return nil
}
