package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/zmws/zmws/client"
)

// bareExec is one spawn of rev with the payload on stdin, as the anchors'
// execbench does it: os/exec, output and exit status checked.
func bareExec(path string) error {
	c := exec.Command(path)
	c.Stdin = bytes.NewReader(payload)
	var outb bytes.Buffer
	c.Stdout = &outb
	if err := c.Run(); err != nil {
		return err
	}
	if outb.String() != want {
		return fmt.Errorf("%w %q", errBadOutput, outb.String())
	}
	return nil
}

// ecase is one exec measurement, run once per round.
type ecase struct {
	label string
	async bool
	fn    func(jobs int, deadline time.Time) (run, error)
	b     *backend // the zmwsd and zmws-run it uses (nil: bare exec)
}

// execMeter reads the CPU of an exec case's processes: the harness (the
// Go clients, or the parent of a bare exec), the commands (rev: children
// of the harness or of zmws-run), zmwsd and zmws-run.
func execMeter(b *backend) *cpuMeter {
	m := (&cpuMeter{}).add("client", selfCPU)
	if b == nil {
		return m.add("commands", waitedCPU)
	}
	return m.add("zmwsd", pidCPU(b.z.pid())).add("zmws-run", pidCPU(b.zr.pid())).add("commands", pidChildrenCPU(b.zr.pid()))
}

// sectionExec: for concurrency 1 and 2, a zmwsd child (durable journal and
// HTTP gateway, as zmwsd runs by default) with zmws-run --concurrency P
// --service rev -- rev; then rounds in which each case runs once, so bare
// exec and zmws alternate and see the same machine.
func sectionExec(ctx context.Context, o *opts) error {
	revPath, err := exec.LookPath("rev")
	if err != nil {
		return fmt.Errorf("rev: %w", err)
	}
	for _, p := range []int{1, 2} {
		say("exec, concurrency %d", p)
		if err := execRounds(ctx, o, revPath, p); err != nil {
			return err
		}
	}
	return nil
}

// backend is a zmwsd child with a zmws-run child serving rev on it.
type backend struct {
	store    string
	prestart bool // zmws-run --prestart
	prefetch int  // zmws-run --prefetch
	z        *zmwsd
	zr       *child
	q        *client.Client
	cs       []*client.Client
}

func (b *backend) close() {
	closeClients(b.cs)
	if b.q != nil {
		b.q.Close()
	}
	if b.zr != nil {
		b.zr.stop()
	}
	b.z.stop()
}

// label is how the backend's cases are labelled: "store=S", then
// "prestart" if it has it.
func (b *backend) label() string {
	l := "store=" + b.store
	if b.prestart {
		l += " prestart"
	}
	if b.prefetch > 0 {
		l += fmt.Sprintf(" prefetch=%d", b.prefetch)
	}
	return l
}

func startBackend(ctx context.Context, o *opts, store string, p int, prestart bool, prefetch int) (*backend, error) {
	name := fmt.Sprintf("%s-%d", store, p)
	args := []string{"--concurrency", fmt.Sprint(p)}
	if prestart {
		name += "-prestart"
		args = append(args, "--prestart")
	}
	if prefetch > 0 {
		name += fmt.Sprintf("-prefetch%d", prefetch)
		args = append(args, "--prefetch", fmt.Sprint(prefetch))
	}
	z, err := startZmwsd(o.bin, o.tmp, "zmwsd-exec-"+name, store, store == "bolt")
	if err != nil {
		return nil, err
	}
	b := &backend{store: store, prestart: prestart, prefetch: prefetch, z: z}
	b.zr, err = startChild("zmws-run-"+name, filepath.Join(o.tmp, "zmws-run-"+name+".log"),
		filepath.Join(o.bin, "zmws-run"), append(append([]string{"--broker", z.worker}, args...), "--service", "rev", "--", "rev")...)
	if err != nil {
		b.close()
		return nil, err
	}
	if b.q, err = client.New(client.Config{Broker: z.client, Timeout: 20 * time.Second}); err != nil {
		b.close()
		return nil, err
	}
	if err := waitWorkers(ctx, b.q, one("rev"), p, 10*time.Second); err != nil {
		b.close()
		return nil, fmt.Errorf("zmws-run: %w: %s", err, tail(b.zr.log, 2000))
	}
	if b.cs, err = newClients(z.client, p); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// execRounds: bare exec and zmws-run behind zmwsd, with the durable
// journal (zmwsd's default; also its HTTP gateway) and without a store
// (--data-dir ""), at concurrency p; then the same through the client with
// zmws-run --prestart (cases after the others, so the first SUMMARY line
// that matches a label's words is still one without prestart).
func execRounds(ctx context.Context, o *opts, revPath string, p int) error {
	var backends []*backend
	defer func() {
		for _, b := range backends {
			b.close()
		}
	}()
	for _, c := range []struct {
		store    string
		prestart bool
		prefetch int
	}{{"bolt", false, 0}, {"none", false, 0}, {"bolt", true, 0}, {"none", true, 0}, {"bolt", true, 1}, {"none", true, 1}} {
		b, err := startBackend(ctx, o, c.store, p, c.prestart, c.prefetch)
		if err != nil {
			return err
		}
		backends = append(backends, b)
	}
	bolt, none := backends[0], backends[1]
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	base := "http://" + bolt.z.http
	// The gateway gives ?str=... to the job as a parameter; zmws-run feeds
	// parameter values to rev's stdin, one per line: the same payload.
	query := "?str=" + strings.ReplaceAll(strings.TrimSuffix(string(payload), "\n"), " ", "+")
	httpGet := func(url string, status int, check bool) error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != status {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
		}
		if check && string(body) != want {
			return fmt.Errorf("GET %s: %w %q", url, errBadOutput, body)
		}
		return nil
	}
	svc := one("rev")
	tag := fmt.Sprintf("c=%d n=%d", p, o.nexec)
	cases := []ecase{
		{"bare-exec cmd=rev p=" + fmt.Sprint(p) + fmt.Sprintf(" n=%d", o.nexec), false, func(jobs int, dl time.Time) (run, error) {
			return parallel(ctx, p, jobs, dl, func(_, _ int) error { return bareExec(revPath) })
		}, nil},
	}
	viaClient := func(b *backend) []ecase {
		return []ecase{
			{"zmws-run-sync via=client " + b.label() + " " + tag, false, func(jobs int, dl time.Time) (run, error) {
				return syncRun(ctx, b.cs, constSvc("rev"), jobs, dl)
			}, b},
			{"zmws-run-async via=client " + b.label() + " " + tag, true, func(jobs int, dl time.Time) (run, error) {
				return asyncRun(ctx, b.cs, b.q, svc, constSvc("rev"), jobs, 2*time.Millisecond, dl)
			}, b},
		}
	}
	cases = append(cases, viaClient(bolt)...)
	cases = append(cases, viaClient(none)...)
	cases = append(cases,
		ecase{"zmws-run-sync via=http store=bolt " + tag, false, func(jobs int, dl time.Time) (run, error) {
			return parallel(ctx, p, jobs, dl, func(_, _ int) error { return httpGet(base+"/SYNC-rev"+query, http.StatusOK, true) })
		}, bolt},
		ecase{"zmws-run-async via=http store=bolt " + tag, true, func(jobs int, dl time.Time) (run, error) {
			b0, _, err := finished(ctx, bolt.q, svc)
			if err != nil {
				return run{}, err
			}
			t0 := time.Now()
			r, err := parallel(ctx, p, jobs, dl, func(_, _ int) error { return httpGet(base+"/rev"+query, http.StatusAccepted, false) })
			if err != nil {
				return r, err
			}
			t, err := waitFinished(ctx, bolt.q, svc, b0+uint64(jobs), 2*time.Millisecond, dl)
			if err != nil {
				return r, err
			}
			r.Done = t.Sub(t0)
			return r, nil
		}, bolt})
	for _, b := range backends[2:] {
		cases = append(cases, viaClient(b)...)
	}
	results := make([][]run, len(cases))
	meters := make([]*cpuMeter, len(cases))
	cpu := make([]*cpuRuns, len(cases))
	for i, c := range cases {
		meters[i] = execMeter(c.b)
		cpu[i] = newCPURuns(meters[i])
	}
	warm := max(50, o.nexec/20)
	for r := -1; r < o.runs; r++ {
		for i, c := range cases {
			jobs := o.nexec
			if r < 0 {
				jobs = warm
			}
			before := meters[i].snap()
			res, err := c.fn(jobs, time.Now().Add(o.caseTime))
			if r >= 0 {
				cpu[i].addRun(before, meters[i].snap(), res.Jobs, nil)
			}
			if err != nil {
				var logs []string
				for _, b := range backends {
					logs = append(logs, tail(b.zr.log, 800))
				}
				return fmt.Errorf("%s: %w (zmws-run logs: %s)", c.label, err, strings.Join(logs, " "))
			}
			if r >= 0 {
				out("%s", res.line(c.label, r))
				results[i] = append(results[i], res)
			}
		}
	}
	for i, c := range cases {
		out("%s", summary(c.label, results[i]))
		if c.async {
			out("%s", doneSummary(strings.Replace(c.label, "-async ", "-async-done ", 1), results[i]))
		}
		// CPU per job by process, run by run.
		out("%s", cpu[i].summary(c.label))
	}
	// Paired ratios: each zmws run against the bare exec run of its round.
	for i, c := range cases[1:] {
		var xs []float64
		for r := range results[0] {
			a := results[i+1][r]
			rate := a.rate()
			if c.async {
				rate = a.doneRate()
			}
			xs = append(xs, rate/results[0][r].rate())
		}
		m, lo, hi := medMinMax(xs)
		kind, rest, _ := strings.Cut(strings.TrimSuffix(c.label, " "+tag), " ")
		out("SUMMARY paired %s/bare-exec %s %s runs=%d ratio=%.3f [%.3f..%.3f]", kind, rest, tag, len(xs), m, lo, hi)
		// zmws-run's CPU per job against the bare exec parent's per spawn,
		// round by round: what the runner costs beside the spawn itself.
		out("%s", cpuRatio(fmt.Sprintf("exec %s/exec-parent %s %s", kind, rest, tag), cpu[i+1], "zmws-run", cpu[0], "client"))
	}
	return nil
}
