// Command chaos is zmws's fault test (docs/DURABILITY.md): it starts
// zmwsd and several zmws-run workers on loopback, submits thousands of async
// jobs whose command appends its job ID to a file, kill -9's the broker and
// workers while they run (and restarts them), waits until every accepted job
// has finished, and prints
//
//	accepted=N completed=C failed=F lost=L duplicated=D ...
//
// It exits 1 when an accepted job is lost, 2 when the run itself went wrong
// (set-up, submissions that were never answered, jobs still unfinished at the
// end, a process that died without being killed). scripts/chaos runs it; a
// short version runs in go test.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("chaos", flag.ExitOnError)
	cfg.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chaos [flags]\n\nzmws fault test: kill -9 the broker and workers while jobs run; exit 1 if an accepted job is lost.\nEvery flag can also be set as ZMWS_CHAOS_<FLAG> (upper case, - as _).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(envArgs(fs, os.Args[1:])); err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	os.Exit(sum.exitCode())
}

// config is one chaos run. The zero value is not useful: start from
// defaultConfig.
type config struct {
	Jobs        int           // async jobs to submit
	Workers     int           // zmws-run processes
	Concurrency int           // jobs at once per zmws-run
	Prefetch    int           // zmws-run --prefetch
	Submitters  int           // concurrent submitting clients
	BrokerKills int           // kill -9's of zmwsd, spread over the submissions
	WorkerKills int           // kill -9's of a random worker, at most
	KillEvery   time.Duration // mean time between worker kills (uniform in [KillEvery/2, 3*KillEvery/2])
	Down        time.Duration // how long a killed process stays down
	MaxSleep    time.Duration // each job sleeps a random time up to this, so jobs are in flight at a kill
	Heartbeat   time.Duration // zmwsd and zmws-run --heartbeat
	Liveness    int           // zmwsd --liveness
	MaxAttempts int           // zmwsd --max-attempts
	ClientWait  time.Duration // client.Config.Timeout of one submission attempt
	SubmitLimit time.Duration // give up on one submission after this long (across resends)
	Wait        time.Duration // after the last submission, give up when no job has finished for this long
	MaxDrain    time.Duration // after the last submission, give up after this long anyway
	Seed        int64         // 0: from the clock
	WorkDir     string        // "": a new temporary folder (kept: it holds the logs)
	BinDir      string        // "": go build zmwsd and zmws-run into WorkDir/bin
}

func defaultConfig() config {
	return config{
		Jobs:        5000,
		Workers:     4,
		Concurrency: 2,
		Submitters:  4,
		BrokerKills: 2,
		WorkerKills: 16,
		KillEvery:   time.Second,
		Down:        300 * time.Millisecond,
		MaxSleep:    40 * time.Millisecond,
		Heartbeat:   200 * time.Millisecond,
		Liveness:    3,
		MaxAttempts: 10,
		ClientWait:  1500 * time.Millisecond,
		SubmitLimit: 60 * time.Second,
		Wait:        120 * time.Second,
		MaxDrain:    30 * time.Minute,
	}
}

func (c *config) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.Jobs, "jobs", c.Jobs, "async jobs to submit")
	fs.IntVar(&c.Workers, "workers", c.Workers, "zmws-run processes")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "jobs at once per zmws-run (--concurrency)")
	fs.IntVar(&c.Prefetch, "prefetch", c.Prefetch, "jobs each zmws-run slot takes ahead (--prefetch)")
	fs.IntVar(&c.Submitters, "submitters", c.Submitters, "concurrent submitting clients")
	fs.IntVar(&c.BrokerKills, "broker-kills", c.BrokerKills, "kill -9's of zmwsd, spread evenly over the submissions")
	fs.IntVar(&c.WorkerKills, "worker-kills", c.WorkerKills, "kill -9's of a random worker, at most (they stop when all jobs are done)")
	fs.DurationVar(&c.KillEvery, "kill-every", c.KillEvery, "mean time between worker kills")
	fs.DurationVar(&c.Down, "down", c.Down, "how long a killed process stays down before it is restarted")
	fs.DurationVar(&c.MaxSleep, "max-sleep", c.MaxSleep, "each job's command sleeps a random time up to this")
	fs.DurationVar(&c.Heartbeat, "heartbeat", c.Heartbeat, "zmwsd and zmws-run --heartbeat")
	fs.IntVar(&c.Liveness, "liveness", c.Liveness, "zmwsd --liveness")
	fs.IntVar(&c.MaxAttempts, "max-attempts", c.MaxAttempts, "zmwsd --max-attempts")
	fs.DurationVar(&c.ClientWait, "client-timeout", c.ClientWait, "wait for one submission's reply before resending it (same idempotency key)")
	fs.DurationVar(&c.SubmitLimit, "submit-limit", c.SubmitLimit, "give up on one submission after this long")
	fs.DurationVar(&c.Wait, "wait", c.Wait, "after the last submission, give up when no accepted job has finished for this long")
	fs.DurationVar(&c.MaxDrain, "max-drain", c.MaxDrain, "after the last submission, give up after this long anyway")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "random seed (0: from the clock)")
	fs.StringVar(&c.WorkDir, "work-dir", c.WorkDir, "folder for binaries, data, results and logs (default: a new temporary folder)")
	fs.StringVar(&c.BinDir, "bin-dir", c.BinDir, "folder holding zmwsd and zmws-run (default: go build them)")
}

func (c config) check() error {
	switch {
	case c.Jobs < 1, c.Workers < 1, c.Concurrency < 1, c.Submitters < 1:
		return errors.New("--jobs, --workers, --concurrency and --submitters must be at least 1")
	case c.Prefetch < 0:
		return errors.New("--prefetch must not be negative")
	case c.BrokerKills < 0, c.WorkerKills < 0, c.KillEvery <= 0, c.Down < 0, c.MaxSleep < 0:
		return errors.New("kill counts, --kill-every, --down and --max-sleep must not be negative")
	case c.Heartbeat <= 0, c.Liveness < 1, c.MaxAttempts < 1:
		return errors.New("--heartbeat, --liveness and --max-attempts must be positive")
	case c.ClientWait <= 0, c.SubmitLimit <= 0, c.Wait <= 0, c.MaxDrain <= 0:
		return errors.New("--client-timeout, --submit-limit, --wait and --max-drain must be positive")
	}
	return nil
}

// envArgs puts ZMWS_CHAOS_<FLAG> variables in front of args, so that flags
// given on the command line win.
func envArgs(fs *flag.FlagSet, args []string) []string {
	var pre []string
	fs.VisitAll(func(f *flag.Flag) {
		name := "ZMWS_CHAOS_"
		for _, r := range f.Name {
			switch {
			case r == '-':
				name += "_"
			case r >= 'a' && r <= 'z':
				name += string(r - 'a' + 'A')
			default:
				name += string(r)
			}
		}
		if v, ok := os.LookupEnv(name); ok {
			pre = append(pre, "-"+f.Name+"="+v)
		}
	})
	return append(pre, args...)
}

// seconds formats d as seconds with one decimal.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}

// tee writes to the terminal and to the run's log, one Write at a time.
type tee struct {
	mu   sync.Mutex
	a, b io.Writer
}

func (t *tee) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.a.Write(p)
	return t.b.Write(p)
}
