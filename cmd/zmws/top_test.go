package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
)

var t0 = time.Unix(1_000_000, 0)

func snapshotAt(at time.Time, services ...protocol.ServiceInfo) *topSnapshot {
	return &topSnapshot{At: at, Services: services}
}

func TestServiceRates(t *testing.T) {
	prev := snapshotAt(t0,
		protocol.ServiceInfo{Name: "A", Completed: 100, Failed: 1},
		protocol.ServiceInfo{Name: "GONE", Completed: 5},
		protocol.ServiceInfo{Name: "RESET", Completed: 50})
	cur := snapshotAt(t0.Add(2*time.Second),
		protocol.ServiceInfo{Name: "A", Completed: 150, Failed: 5},
		protocol.ServiceInfo{Name: "NEW", Completed: 7},
		protocol.ServiceInfo{Name: "RESET", Completed: 3}) // a broker restarted without a journal
	got := serviceRates(prev, cur)
	if len(got) != 1 || got["A"] != (serviceRate{Completed: 25, Failed: 2}) {
		t.Fatalf("rates %v, want only A: 25/s completed, 2/s failed", got)
	}
	if got := serviceRates(nil, cur); len(got) != 0 {
		t.Fatalf("without a previous snapshot: %v", got)
	}
	if got := serviceRates(cur, cur); len(got) != 0 {
		t.Fatalf("no time between: %v", got)
	}
}

func TestTopRows_Sort(t *testing.T) {
	prev := snapshotAt(t0,
		protocol.ServiceInfo{Name: "A"}, protocol.ServiceInfo{Name: "B"}, protocol.ServiceInfo{Name: "C"}, protocol.ServiceInfo{Name: "D"})
	cur := snapshotAt(t0.Add(time.Second),
		protocol.ServiceInfo{Name: "A", Completed: 1},
		protocol.ServiceInfo{Name: "B", Queued: 5, Active: 1, Completed: 10},
		protocol.ServiceInfo{Name: "C", Queued: 9, Completed: 100},
		protocol.ServiceInfo{Name: "D"})
	names := func(rows []topRow) string {
		var s []string
		for _, r := range rows {
			s = append(s, r.Name)
		}
		return strings.Join(s, " ")
	}
	for by, want := range map[string]string{sortBusy: "C B A D", sortRate: "C B A D", sortName: "A B C D"} {
		if got := names(topRows(prev, cur, by)); got != want {
			t.Errorf("by %s: %s, want %s", by, got, want)
		}
	}
	cur.Services[2].Queued = 0 // C: fastest, but idle
	if got := names(topRows(prev, cur, sortBusy)); got != "B C A D" {
		t.Errorf("by busy: %s", got)
	}
	if got := names(topRows(prev, cur, sortRate)); got != "C B A D" {
		t.Errorf("by rate: %s", got)
	}
	rows := topRows(prev, cur, sortName)
	if c := rows[1].cells(); strings.Join(c, " ") != "B 0 0 0 5 0 1 10.0 0.0 10 0" {
		t.Errorf("B's cells %q", c)
	}
	if c := topRows(nil, cur, sortName)[1].cells(); c[7] != "-" || c[8] != "-" {
		t.Errorf("no rates without a previous snapshot: %q", c)
	}
}

func TestHostRows(t *testing.T) {
	ws := []protocol.WorkerInfo{
		{Service: "A", State: protocol.WorkerBusy, Details: &protocol.WorkerDetails{Host: "h2"}},
		{Service: "B", State: protocol.WorkerIdle, Details: &protocol.WorkerDetails{Host: "h1"}},
		{Service: "A", State: protocol.WorkerIdle, Details: &protocol.WorkerDetails{Host: "h2"}},
		{Service: "A", State: protocol.WorkerIdle},                                               // a stock MDP worker
		{Service: "A", State: protocol.WorkerGone, Details: &protocol.WorkerDetails{Host: "h9"}}, // not counted
	}
	hosts := hostRows(ws)
	var got []string
	for _, h := range hosts {
		got = append(got, strings.Join(h.cells(), ","))
	}
	if strings.Join(got, " | ") != "h2,2,1,1,A | ?,1,0,1,A | h1,1,0,1,B" {
		t.Fatalf("hosts %q", got)
	}
	if s := workerSummary(ws, hosts); s != "workers 4: 1 busy, 3 idle, on 3 hosts" {
		t.Fatalf("summary %q", s)
	}
}

func TestRenderTop(t *testing.T) {
	var services []protocol.ServiceInfo
	for _, n := range []string{"ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON", "ZETA"} {
		services = append(services, protocol.ServiceInfo{Name: n, WorkersIdle: 1, Completed: 10})
	}
	prev := snapshotAt(t0, services...)
	cur := snapshotAt(t0.Add(2*time.Second), services...)
	cur.Services = append([]protocol.ServiceInfo(nil), services...)
	cur.Services[1] = protocol.ServiceInfo{Name: "BETA", WorkersBusy: 2, Queued: 40, Active: 2, Completed: 30, Failed: 2}
	cur.Workers = []protocol.WorkerInfo{
		{Service: "BETA", State: protocol.WorkerBusy, Details: &protocol.WorkerDetails{Host: "h1"}},
		{Service: "BETA", State: protocol.WorkerBusy, Details: &protocol.WorkerDetails{Host: "h1"}},
	}
	v := topView{Endpoint: "tcp://b1:5555", Interval: 2 * time.Second, Sort: sortBusy, Prev: prev, Cur: cur}

	lines := renderTop(v, 100, 30)
	if !strings.HasPrefix(lines[0], "zmws top  tcp://b1:5555  ") || !strings.HasSuffix(lines[0], "every 2s, by busy  (q quits)") {
		t.Errorf("title %q", lines[0])
	}
	if lines[1] != "services 6  queued 40  active 2  completed 10.0/s  failed 1.0/s" || lines[2] != "workers 2: 2 busy, 0 idle, on 1 host" {
		t.Errorf("totals %q", lines[1:3])
	}
	if strings.Join(strings.Fields(lines[4]), " ") != strings.Join(serviceHeader, " ") {
		t.Errorf("header %q", lines[4])
	}
	// BETA first (busy), with its rates over 2 s: 20 completed, 2 failed.
	if got := strings.Join(strings.Fields(lines[5]), " "); got != "BETA 2 0 2 40 0 2 10.0 1.0 30 2" {
		t.Errorf("first row %q", got)
	}
	if got := strings.Join(strings.Fields(lines[6]), " "); got != "ALPHA 1 1 0 0 0 0 0.0 0.0 10 0" {
		t.Errorf("second row %q", got)
	}
	if want := "HOST  WORKERS  BUSY  IDLE  SERVICES"; lines[len(lines)-2] != want || lines[len(lines)-1] != "h1          2     2     0  BETA" {
		t.Errorf("hosts %q", lines[len(lines)-2:])
	}
	for _, l := range lines {
		if len(l) > 100 {
			t.Errorf("%d wide: %q", len(l), l)
		}
	}

	// 10 lines: the title, two of totals, a blank, the header, 4
	// services and a line for the other 2; the hosts would take more
	// than half of the room the services have, so they go.
	lines = renderTop(v, 40, 10)
	if len(lines) != 10 || lines[9] != "… and 2 more services" || strings.Contains(strings.Join(lines, "\n"), "HOST") {
		t.Errorf("10 lines:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if len(l) > 40 {
			t.Errorf("%d wide: %q", len(l), l)
		}
	}

	// Before the first answer, and after a failed refresh (the last
	// answer stays on the screen).
	v2 := topView{Endpoint: "e", Interval: time.Second, Sort: sortName}
	if got := renderTop(v2, 80, 24); len(got) != 2 || got[1] != "asking the broker…" {
		t.Errorf("first: %q", got)
	}
	v.Err, v.ErrAt = errors.New("query SERVER-SERVICES: timeout"), t0
	lines = renderTop(v, 100, 30)
	if !strings.HasSuffix(lines[1], ": query SERVER-SERVICES: timeout (trying again every 2s)") || !strings.HasPrefix(lines[6], "BETA") {
		t.Errorf("after an error:\n%s", strings.Join(lines, "\n"))
	}
}

// fakeScreen is a terminal for the live view: a fixed size, keys from a
// pipe, and a count of restores.
type fakeScreen struct {
	keys     io.Reader
	restored atomic.Int32
	resized  chan os.Signal
}

func (s *fakeScreen) Size() (int, int) { return 100, 30 }

func (s *fakeScreen) Raw() (io.Reader, func() error, error) {
	return s.keys, func() error { s.restored.Add(1); return nil }, nil
}

func (s *fakeScreen) Resized() (<-chan os.Signal, func()) { return s.resized, func() {} }

func TestCLI_TopLiveQuitsOnKey(t *testing.T) {
	r := newRig(t)
	for _, key := range []string{"q", "\x03"} { // q, Ctrl-C in raw mode
		pr, pw := io.Pipe()
		scr := &fakeScreen{keys: pr, resized: make(chan os.Signal, 1)}
		var cli CLI
		p, _ := kong.New(&cli)
		kctx, err := p.Parse([]string{"--broker", r.client, "top", "--interval", "100ms"})
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- kctx.Run(&env{ctx: context.Background(), cli: &cli, stdout: &out, stderr: &out, screen: scr})
		}()
		// Two refreshes: the second has rates.
		zmqtest.Eventually(t, "a frame with rates", wait, func() bool { return strings.Contains(out.String(), "completed 0.0/s") })
		scr.resized <- os.Interrupt // any signal: a redraw
		pw.Write([]byte("x" + key))
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("key %q: %v", key, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("key %q did not quit", key)
		}
		pw.Close()
		got := out.String()
		if !strings.HasPrefix(got, enterScreen) || !strings.HasSuffix(got, leaveScreen) || scr.restored.Load() != 1 {
			t.Fatalf("key %q: the terminal was not left as found (restored %d): %q...%q", key, scr.restored.Load(),
				got[:min(20, len(got))], got[max(0, len(got)-20):])
		}
		if !strings.Contains(got, home+"zmws top  "+r.client) || !strings.Contains(got, "STR-REV") ||
			!strings.Contains(got, clearLine+"\r\n") || strings.Contains(got, "\n\n") {
			t.Fatalf("key %q: frames %q", key, got)
		}
	}
	// -o json is for a snapshot.
	var cli CLI
	p, _ := kong.New(&cli)
	kctx, _ := p.Parse([]string{"--broker", r.client, "-o", "json", "top"})
	if err := kctx.Run(&env{ctx: context.Background(), cli: &cli, stdout: io.Discard, stderr: io.Discard,
		screen: &fakeScreen{}}); err == nil || !strings.Contains(err.Error(), "--once") {
		t.Fatalf("live -o json: %v", err)
	}
}

func TestCLI_TopOnce(t *testing.T) {
	r := newRig(t)
	if _, _, err := r.zmws(t, "a\nb\nc\n", "submit", "--each-line", "--wait", "STR-REV"); err != nil {
		t.Fatal(err)
	}
	out, _, err := r.zmws(t, "", "top", "--once", "--interval", "0", "--sort", "name")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if strings.Join(strings.Fields(lines[0]), " ") != "SERVICE WORKERS IDLE BUSY QUEUED SCHEDULED ACTIVE COMPLETED/S FAILED/S COMPLETED FAILED" {
		t.Fatalf("header %q", lines[0])
	}
	// One sample: no rates. STR-REV completed 3; one worker each, idle.
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "FAIL 1 1 0 0 0 0 - - 0 0" {
		t.Errorf("FAIL row %q", got)
	}
	if got := strings.Join(strings.Fields(lines[2]), " "); got != "STR-REV 1 1 0 0 0 0 - - 3 0" {
		t.Errorf("STR-REV row %q", got)
	}
	if !strings.Contains(out, "\nworkers 2: 0 busy, 2 idle, on 1 host\n") || !strings.Contains(out, "FAIL STR-REV") {
		t.Errorf("worker summary:\n%s", out)
	}

	// Two samples 300 ms apart, jobs finishing meanwhile: a rate.
	ctx, cancel := context.WithCancel(context.Background())
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		for ctx.Err() == nil {
			r.zmws(t, "x\n", "run", "STR-REV")
		}
	}()
	out, _, err = r.zmws(t, "", "top", "--once", "--interval", "300ms", "-o", "json")
	cancel()
	<-busy
	var snap struct {
		IntervalS float64 `json:"interval_s"`
		Services  []struct {
			Name          string   `json:"name"`
			Completed     uint64   `json:"completed"`
			CompletedPerS *float64 `json:"completed_per_s"`
			FailedPerS    *float64 `json:"failed_per_s"`
		} `json:"services"`
		Hosts []struct {
			Workers int `json:"workers"`
		} `json:"hosts"`
	}
	if err != nil || json.Unmarshal([]byte(out), &snap) != nil || len(snap.Services) != 2 || snap.IntervalS < 0.3 {
		t.Fatalf("top -o json: %v\n%s", err, out)
	}
	for _, s := range snap.Services {
		if s.CompletedPerS == nil || s.FailedPerS == nil || (s.Name == "STR-REV" && *s.CompletedPerS <= 0) {
			t.Errorf("rates of %s: %s", s.Name, out)
		}
	}
	if len(snap.Hosts) != 1 || snap.Hosts[0].Workers != 2 {
		t.Errorf("hosts: %s", out)
	}
	if _, _, err := r.zmws(t, "", "top", "--once", "--interval", "-1s"); err == nil {
		t.Error("a negative interval was taken")
	}
}

// A paused or draining service says so in its row.
func TestTopRow_PausedAndDraining(t *testing.T) {
	for _, c := range []struct {
		info protocol.ServiceInfo
		want string
	}{
		{protocol.ServiceInfo{Name: "S", Paused: true, Queued: 3, Scheduled: 2}, "S (paused)"},
		{protocol.ServiceInfo{Name: "S", Paused: true, Draining: true}, "S (draining)"},
		{protocol.ServiceInfo{Name: "S"}, "S"},
	} {
		if got := (topRow{ServiceInfo: c.info}).cells(); got[0] != c.want || got[5] != strconv.Itoa(c.info.Scheduled) {
			t.Errorf("%+v: cells %q, want name %q and %d scheduled", c.info, got, c.want, c.info.Scheduled)
		}
	}
}
