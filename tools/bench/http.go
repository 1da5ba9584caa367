package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zmws/zmws/client"
)

// The http section: zmws's gateway and webhook (adnanh/webhook, Debian's
// package) running the same command, /usr/bin/echo with the query's
// value as its argument, each driven by hey in the same rounds.

// echoQuery is the payload as a query value; echo prints it back with a
// newline: the payload itself.
var echoQuery = "str=" + strings.ReplaceAll(strings.TrimSuffix(string(payload), "\n"), " ", "+")

// webhookHooks is webhook's configuration: hook "echo" runs /usr/bin/echo
// with the query parameter str as its one argument and answers with its
// output.
const webhookHooks = `[{"id": "echo", "execute-command": "/usr/bin/echo",
  "include-command-output-in-response": true,
  "pass-arguments-to-command": [{"source": "url", "name": "str"}]}]
`

var (
	heyTotal  = regexp.MustCompile(`Total:\s+([0-9.]+) secs`)
	heyPct    = regexp.MustCompile(`(?m)^\s+(50|99)% in ([0-9.]+) secs`)
	heyStatus = regexp.MustCompile(`\[(\d+)\]\s+(\d+) responses`)
)

// heyRun runs hey once: n GETs of url from c workers (n rounded down to
// a multiple of c). The run counts the
// responses with status want (any other status, or an error, fails it);
// the latencies are hey's percentiles. It returns hey's state for its CPU.
func heyRun(ctx context.Context, hey, url string, n, c, want int, timeout time.Duration) (run, *os.ProcessState, error) {
	n -= n % c // hey sends n/c requests from each worker
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, hey, "-n", fmt.Sprint(n), "-c", fmt.Sprint(c), "-t", "30", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var outb, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &errb
	if err := cmd.Run(); err != nil {
		return run{}, cmd.ProcessState, fmt.Errorf("hey: %w: %s", err, errb.String())
	}
	s := outb.String()
	var r run
	if m := heyTotal.FindStringSubmatch(s); m != nil {
		f, _ := strconv.ParseFloat(m[1], 64)
		r.Elapsed = time.Duration(f * 1e9)
	}
	for _, m := range heyPct.FindAllStringSubmatch(s, -1) {
		f, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "50" {
			r.P50 = time.Duration(f * 1e9)
		} else {
			r.P99 = time.Duration(f * 1e9)
		}
	}
	for _, m := range heyStatus.FindAllStringSubmatch(s, -1) {
		code, _ := strconv.Atoi(m[1])
		k, _ := strconv.Atoi(m[2])
		if code != want {
			return r, cmd.ProcessState, fmt.Errorf("hey %s: %d responses with status %d", url, k, code)
		}
		r.Jobs += k
	}
	if r.Jobs != n || r.Elapsed <= 0 {
		return r, cmd.ProcessState, fmt.Errorf("hey %s: %d of %d responses with status %d: %s", url, r.Jobs, n, want, s)
	}
	r.Max = r.P99
	return r, cmd.ProcessState, nil
}

// checkGet fetches url once and checks status and body.
func checkGet(url string, status int, body string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != status || (body != "" && string(b) != body) {
		return fmt.Errorf("GET %s: %s %q, want %d %q", url, resp.Status, b, status, body)
	}
	return nil
}

// sectionHTTP: zmwsd with its journal and gateway, zmws-run --concurrency 2
// --service ECHO -- /usr/bin/echo {{str}}, against webhook serving the
// same command; hey at c=1 and c=2 against each (GET /SYNC-ECHO?str=... and
// /hooks/echo?str=...), then async acceptance (GET /ECHO?str=..., 202)
// from 16 concurrent hey clients, jobs/s; the cases alternate round by
// round. CPU by process: hey (client), zmwsd (with its gateway), zmws-run
// and its commands, or webhook and its commands.
func sectionHTTP(ctx context.Context, o *opts) error {
	hey, err := exec.LookPath("hey")
	if err != nil {
		return fmt.Errorf("hey: %w (apt-get install hey)", err)
	}
	webhook, err := exec.LookPath("webhook")
	if err != nil {
		return fmt.Errorf("webhook: %w (apt-get install webhook)", err)
	}
	if _, err := os.Stat("/usr/bin/echo"); err != nil {
		return err
	}
	say("http: zmwsd (journal, gateway) + zmws-run ECHO vs webhook, hey c=1, 2; async acceptance c=16")
	z, err := startZmwsd(o.bin, o.tmp, "zmwsd-http", "bolt", true)
	if err != nil {
		return err
	}
	defer z.stop()
	zr, err := startChild("zmws-run-http", filepath.Join(o.tmp, "zmws-run-http.log"), filepath.Join(o.bin, "zmws-run"),
		"--broker", z.worker, "--concurrency", "2", "--service", "ECHO", "--", "/usr/bin/echo", "{{str}}")
	if err != nil {
		return err
	}
	defer zr.stop()
	q, err := client.New(client.Config{Broker: z.client, Timeout: 20 * time.Second})
	if err != nil {
		return err
	}
	defer q.Close()
	svc := one("ECHO")
	if err := waitWorkers(ctx, q, svc, 2, 10*time.Second); err != nil {
		return fmt.Errorf("zmws-run: %w: %s", err, tail(zr.log, 2000))
	}

	hooks := filepath.Join(o.tmp, "hooks.json")
	if err := os.WriteFile(hooks, []byte(webhookHooks), 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	wh, err := startChild("webhook", filepath.Join(o.tmp, "webhook.log"), webhook, "-hooks", hooks, "-ip", "127.0.0.1", "-port", fmt.Sprint(port))
	if err != nil {
		return err
	}
	defer wh.stop()
	whAddr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitPort(whAddr, 10*time.Second); err != nil {
		return fmt.Errorf("webhook: %w: %s", err, tail(wh.log, 1000))
	}

	whURL := "http://" + whAddr + "/hooks/echo?" + echoQuery
	syncURL := "http://" + z.http + "/SYNC-ECHO?" + echoQuery
	asyncURL := "http://" + z.http + "/ECHO?" + echoQuery
	for _, u := range []string{whURL, syncURL} {
		if err := checkGet(u, http.StatusOK, string(payload)); err != nil {
			return err
		}
	}
	if err := checkGet(asyncURL, http.StatusAccepted, ""); err != nil {
		return err
	}

	zmwsMeter := func() *cpuMeter {
		return (&cpuMeter{}).add("client", func() time.Duration { return 0 }).add("zmwsd", pidCPU(z.pid())).
			add("zmws-run", pidCPU(zr.pid())).add("commands", pidChildrenCPU(zr.pid()))
	}
	whMeter := func() *cpuMeter {
		return (&cpuMeter{}).add("client", func() time.Duration { return 0 }).add("webhook", pidCPU(wh.pid())).
			add("commands", pidChildrenCPU(wh.pid()))
	}
	heyCase := func(url string, c, status int) func(int) (run, map[string]time.Duration, error) {
		return func(jobs int) (run, map[string]time.Duration, error) {
			r, ps, err := heyRun(ctx, hey, url, jobs, c, status, o.caseTime)
			return r, map[string]time.Duration{"client": exitedCPU(ps)}, err
		}
	}
	var cases []*cpuCase
	for _, c := range []int{1, 2} {
		cases = append(cases,
			&cpuCase{label: fmt.Sprintf("http-sync server=webhook cmd=echo c=%d n=%d", c, o.nhttp), meter: whMeter(), fn: heyCase(whURL, c, http.StatusOK)},
			&cpuCase{label: fmt.Sprintf("http-sync server=zmws store=bolt cmd=echo c=%d n=%d", c, o.nhttp), meter: zmwsMeter(), fn: heyCase(syncURL, c, http.StatusOK)})
	}
	var base uint64
	asyncCase := &cpuCase{label: fmt.Sprintf("http-async-accept server=zmws store=bolt cmd=echo c=16 n=%d", o.nasync), meter: zmwsMeter(), n: o.nasync}
	asyncCase.fn = func(jobs int) (run, map[string]time.Duration, error) {
		var err error
		if base, _, err = finished(ctx, q, svc); err != nil {
			return run{}, nil, err
		}
		r, ps, err := heyRun(ctx, hey, asyncURL, jobs, 16, http.StatusAccepted, o.caseTime)
		if err == nil {
			base += uint64(r.Jobs)
		}
		return r, map[string]time.Duration{"client": exitedCPU(ps)}, err
	}
	// The accepted jobs run after the measured acceptance, before the next
	// case: the rounds stay apart.
	asyncCase.after = func() error {
		_, err := waitFinished(ctx, q, svc, base, 2*time.Millisecond, time.Now().Add(o.caseTime))
		return err
	}
	cases = append(cases, asyncCase)

	res, err := cpuRounds(cases, o.runs, 50, o.nhttp)
	if err != nil {
		return err
	}
	rate := run.rate
	for i, c := range []int{1, 2} {
		w, zc := cases[2*i], cases[2*i+1]
		out("%s", pairedRate(fmt.Sprintf("http-sync zmws/webhook store=bolt c=%d", c), res[2*i+1], res[2*i], rate, rate))
		out("%s", cpuRatio(fmt.Sprintf("http-sync zmws/webhook total store=bolt c=%d", c), zc.cpu, "total", w.cpu, "total"))
	}
	return nil
}
