// Command hostile measures what a hostile peer's endless multipart message
// does to zmwsd's memory (docs/SECURITY.md, "A peer's messages and
// zmwsd's memory"). It starts zmwsd on
// loopback ports the system picks, and for each scenario reads zmwsd's
// resident size (VmRSS, /proc/PID/status) before the attack, at its peak
// (every 100 ms) and after the peer has left, until it is back within the
// bound or the settle time is up:
//
//	endless       a raw ZMTP peer (NULL) sends 1 MiB frames, each with MORE,
//	              never a last one, then disconnects
//	endless again the same again, in the same zmwsd: glibc keeps what a
//	              second burst of big frames leaves, unless told not to
//	complete      the same peer sends whole messages of 1,000 such frames
//	curve-stranger  on a CURVE broker, a peer without an authorized key:
//	              a NULL greeting, then the endless message
//	curve-nohello   a CURVE greeting, then the endless message in place of
//	              the handshake
//	curve-unknown   a libzmq CURVE client with a key the broker does not
//	              know, behind a relay that drops each message's last frame
//	curve-client    the same with an authorized client key: an endless
//	              message from a peer the broker admitted
//
// It prints one line per scenario and exits 0 when zmwsd came back within
// the bound after each, 1 when it did not, 2 when the run failed.
// scripts/hostile-multipart runs it; a short version runs in go test.
//
//	hostile [-bin zmwsd] [-seconds 10] [-bound 64] [-settle 20s] [-curve=false]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if spec, ok := os.LookupEnv(peerEnv); ok {
		fmt.Fprintln(os.Stderr, "hostile: curve peer:", curvePeer(spec))
		os.Exit(2)
	}
	cfg := defaultConfig()
	fs := flag.NewFlagSet("hostile", flag.ExitOnError)
	cfg.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: hostile [flags]\n\nzmwsd's resident size before, during and after a hostile peer's endless multipart message.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(2)
	}
	for _, r := range res {
		if !r.within {
			os.Exit(1)
		}
	}
}

// config is one run.
type config struct {
	Bin       string        // zmwsd; "": go build it into WorkDir
	WorkDir   string        // logs, keys, the binary; "": a temporary folder, removed
	Attack    time.Duration // how long each attack lasts
	MaxBytes  int64         // and how many bytes of frames it sends at most (0: no bound)
	Frame     int           // frame size
	PerMsg    int           // frames per message of the complete scenario
	Bound     int64         // bytes over the baseline zmwsd must come back within
	Settle    time.Duration // after the peer left, how long it has to
	Curve     bool          // also the CURVE scenarios
	ZmwsdArgs []string      // more flags for zmwsd
}

func defaultConfig() config {
	return config{Attack: 10 * time.Second, Frame: 1 << 20, PerMsg: 1000, Bound: 64 << 20, Settle: 20 * time.Second, Curve: true}
}

func (c *config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Bin, "bin", c.Bin, "zmwsd binary (default: go build it)")
	fs.StringVar(&c.WorkDir, "work-dir", c.WorkDir, "folder for logs and keys (default: a temporary one, removed)")
	fs.DurationVar(&c.Attack, "attack", c.Attack, "how long each attack lasts")
	fs.Func("seconds", "the same as -attack, in seconds", func(s string) error {
		d, err := time.ParseDuration(s + "s")
		c.Attack = d
		return err
	})
	fs.Int64Var(&c.MaxBytes, "max-bytes", c.MaxBytes, "bytes of frames an attack sends at most (0: as many as it can)")
	fs.IntVar(&c.Frame, "frame", c.Frame, "frame size, bytes")
	fs.IntVar(&c.PerMsg, "per-msg", c.PerMsg, "frames per message in the complete scenario")
	fs.Func("bound", "MiB over its baseline zmwsd must come back within (default 64)", func(s string) error {
		var mib int64
		_, err := fmt.Sscan(s, &mib)
		c.Bound = mib << 20
		return err
	})
	fs.DurationVar(&c.Settle, "settle", c.Settle, "how long zmwsd has to come back within the bound after the peer left")
	fs.BoolVar(&c.Curve, "curve", c.Curve, "also run the CURVE scenarios")
	fs.Func("zmwsd-args", "more flags for zmwsd, space-separated (--mem-trim=0 ...)", func(s string) error {
		c.ZmwsdArgs = strings.Fields(s)
		return nil
	})
}

// result is one scenario's figures (bytes).
type result struct {
	name     string
	sent     int64 // bytes of frames the attacker sent (CURVE: that reached the broker)
	attack   time.Duration
	baseline int64 // zmwsd's size at the start of its run
	before   int64 // just before this attack
	peak     int64
	after    int64         // when it got within the bound, or at the end of the settle time
	settled  time.Duration // how long after the peer left
	within   bool
	note     string
}

// run starts zmwsd (and a CURVE zmwsd), runs every scenario, and prints
// the table.
func run(ctx context.Context, cfg config, out io.Writer) ([]result, error) {
	work := cfg.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "zmws-hostile-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	if cfg.Bin == "" {
		cfg.Bin = work + "/zmwsd"
		if err := build(cfg.Bin); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(out, "zmwsd %s; attacks of %v", cfg.Bin, cfg.Attack)
	if cfg.MaxBytes > 0 {
		fmt.Fprintf(out, " or %s", size(cfg.MaxBytes))
	}
	fmt.Fprintf(out, ", %s frames; bound: baseline + %s within %v of the peer leaving\n", size(int64(cfg.Frame)), size(cfg.Bound), cfg.Settle)
	fmt.Fprintf(out, "%-16s %10s %7s %9s %9s %9s %9s  %s\n", "scenario", "sent", "secs", "baseline", "before", "peak", "after", "settled")
	var all []result
	report := func(rs []result) {
		for _, r := range rs {
			mark := ""
			if !r.within {
				mark = "  PAST THE BOUND"
			}
			fmt.Fprintf(out, "%-16s %10s %7.1f %9s %9s %9s %9s  %.1f s%s%s\n", r.name, size(r.sent), r.attack.Seconds(),
				size(r.baseline), size(r.before), size(r.peak), size(r.after), r.settled.Seconds(), mark, r.note)
		}
		all = append(all, rs...)
	}
	z, err := startZmwsd(ctx, cfg.Bin, work, "zmwsd", cfg.ZmwsdArgs)
	if err != nil {
		return nil, err
	}
	rs, err := scenarios(ctx, cfg, z, []scenario{
		{"endless", func(ctx context.Context) (int64, error) { return endless(ctx, z.client, "NULL", cfg) }},
		{"endless again", func(ctx context.Context) (int64, error) { return endless(ctx, z.client, "NULL", cfg) }},
		{"complete", func(ctx context.Context) (int64, error) { return complete(ctx, z.client, cfg) }},
	})
	z.stop()
	report(rs)
	if err != nil {
		return all, err
	}
	if cfg.Curve {
		keys, err := makeKeys(work)
		if err != nil {
			return all, err
		}
		args := append([]string{"--curve-key", keys.brokerKey, "--client-keys", keys.clientDir}, cfg.ZmwsdArgs...)
		z, err := startZmwsd(ctx, cfg.Bin, work, "zmwsd-curve", args)
		if err != nil {
			return all, err
		}
		rs, err := scenarios(ctx, cfg, z, []scenario{
			{"curve-stranger", func(ctx context.Context) (int64, error) { return endless(ctx, z.client, "NULL", cfg) }},
			{"curve-nohello", func(ctx context.Context) (int64, error) { return endless(ctx, z.client, "CURVE", cfg) }},
			{"curve-unknown", func(ctx context.Context) (int64, error) { return endlessCurve(ctx, z.client, keys.stranger, cfg) }},
			{"curve-client", func(ctx context.Context) (int64, error) { return endlessCurve(ctx, z.client, keys.client, cfg) }},
		})
		z.stop()
		report(rs)
		if err != nil {
			return all, err
		}
	}
	past := 0
	for _, r := range all {
		if !r.within {
			past++
		}
	}
	if past == 0 {
		fmt.Fprintf(out, "hostile: zmwsd came back within %s of its baseline after every scenario\n", size(cfg.Bound))
	} else {
		fmt.Fprintf(out, "hostile: %d of %d scenarios left zmwsd past its baseline + %s\n", past, len(all), size(cfg.Bound))
	}
	return all, nil
}

// scenario is an attack: it runs until ctx ends (or its byte budget is
// spent), disconnects, and says how many bytes it sent.
type scenario struct {
	name   string
	attack func(ctx context.Context) (int64, error)
}

// scenarios runs each attack on z in turn and measures z around it.
func scenarios(ctx context.Context, cfg config, z *zmwsd, list []scenario) ([]result, error) {
	baseline, err := z.rss()
	if err != nil {
		return nil, err
	}
	var rs []result
	for _, s := range list {
		r := result{name: s.name, baseline: baseline}
		if r.before, err = z.rss(); err != nil {
			return rs, err
		}
		peak := sample(z)
		actx, cancel := context.WithTimeout(ctx, cfg.Attack)
		start := time.Now()
		r.sent, err = s.attack(actx)
		r.attack = time.Since(start)
		cancel()
		r.peak = peak()
		if err != nil {
			return rs, fmt.Errorf("%s: %w", s.name, err)
		}
		if ctx.Err() != nil {
			return rs, ctx.Err()
		}
		left := time.Now()
		for {
			r.after, err = z.rss()
			if err != nil {
				return rs, fmt.Errorf("%s: zmwsd is gone (%w); its log: %s", s.name, err, z.logPath)
			}
			r.settled = time.Since(left)
			if r.within = r.after <= baseline+cfg.Bound; r.within || r.settled >= cfg.Settle || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// sample reads z's size every 100 ms until the returned function is called,
// which returns the largest.
func sample(z *zmwsd) func() int64 {
	stop := make(chan struct{})
	peak := make(chan int64)
	go func() {
		var m int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if r, err := z.rss(); err == nil {
				m = max(m, r)
			}
			select {
			case <-stop:
				peak <- m
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(stop); return <-peak }
}

// size writes n bytes in KiB, MiB or GiB.
func size(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20 || n == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
