package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// Sort orders of zmws top (--sort).
const (
	sortBusy = "busy" // queued + active jobs, most first
	sortRate = "rate" // jobs finished per second, most first
	sortName = "name"
)

// minInterval is the shortest refresh of the live view: each one is a
// few queries, and the counters move little faster than this.
const minInterval = 100 * time.Millisecond

// TopCmd shows the broker's services and workers, refreshed.
type TopCmd struct {
	Interval time.Duration `default:"2s" help:"How often to refresh; rates are measured over it (at least 100ms; --once: 0 prints at once, without rates)."`
	Once     bool          `help:"Print one snapshot and exit (also when stdout is not a terminal): it takes two samples --interval apart for the rates."`
	Sort     string        `default:"busy" enum:"busy,rate,name" help:"Order of the services: busy (queued and running jobs), rate (jobs finished per second) or name."`
}

func (c *TopCmd) Run(e *env) error {
	live := !c.Once && e.screen != nil
	switch {
	case c.Interval < 0, live && c.Interval < minInterval:
		return fmt.Errorf("--interval %v: want at least %v", c.Interval, minInterval)
	case live && e.cli.Output == "json":
		return errors.New("-o json goes with --once, or stdout not a terminal: the live view is for people")
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if live {
		return c.live(e.ctx, cl, e.screen, e.stdout, e.cli.Broker)
	}
	return c.once(e, cl)
}

// once prints one snapshot, with rates over --interval when it is above 0.
func (c *TopCmd) once(e *env, cl *client.Client) error {
	cur, err := fetchTop(e.ctx, cl)
	if err != nil {
		return err
	}
	var prev *topSnapshot
	if c.Interval > 0 {
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(c.Interval):
		}
		prev = cur
		if cur, err = fetchTop(e.ctx, cl); err != nil {
			return err
		}
	}
	rows := topRows(prev, cur, c.Sort)
	hosts := hostRows(cur.Workers)
	if e.cli.Output == "json" {
		return writeJSON(e.stdout, topJSON(prev, cur, rows, hosts))
	}
	if err := table(e.stdout, serviceHeader, len(rows), func(i int) []string { return rows[i].cells() }); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	fmt.Fprintln(e.stdout, workerSummary(cur.Workers, hosts))
	if len(hosts) == 0 {
		return nil
	}
	return table(e.stdout, hostHeader, len(hosts), func(i int) []string { return hosts[i].cells() })
}

// topSnapshot is what the broker said at one instant.
type topSnapshot struct {
	At       time.Time
	Services []protocol.ServiceInfo
	Workers  []protocol.WorkerInfo
}

// fetchTop reads every page of SERVER-SERVICES and the live workers.
func fetchTop(ctx context.Context, cl *client.Client) (*topSnapshot, error) {
	services, err := cl.Services(ctx)
	if err != nil {
		return nil, err
	}
	workers, err := cl.Workers(ctx)
	if err != nil {
		return nil, err
	}
	return &topSnapshot{At: time.Now(), Services: services, Workers: workers}, nil
}

// serviceRate is a service's jobs finished per second between two
// snapshots.
type serviceRate struct{ Completed, Failed float64 }

// serviceRates measures each service's rates from the counters of prev
// and cur. A service missing from either, or whose counters went down (a
// broker restarted without a journal), has none.
func serviceRates(prev, cur *topSnapshot) map[string]serviceRate {
	out := map[string]serviceRate{}
	if prev == nil || cur == nil {
		return out
	}
	dt := cur.At.Sub(prev.At).Seconds()
	if dt <= 0 {
		return out
	}
	before := make(map[string]protocol.ServiceInfo, len(prev.Services))
	for _, s := range prev.Services {
		before[s.Name] = s
	}
	for _, s := range cur.Services {
		p, ok := before[s.Name]
		if !ok || s.Completed < p.Completed || s.Failed < p.Failed {
			continue
		}
		out[s.Name] = serviceRate{float64(s.Completed-p.Completed) / dt, float64(s.Failed-p.Failed) / dt}
	}
	return out
}

// topRow is one service's line.
type topRow struct {
	protocol.ServiceInfo
	Rate *serviceRate // nil: not measured (the first snapshot, a new service)
}

var serviceHeader = []string{"SERVICE", "WORKERS", "IDLE", "BUSY", "QUEUED", "SCHEDULED", "ACTIVE", "COMPLETED/S", "FAILED/S", "COMPLETED", "FAILED"}

func (r topRow) cells() []string {
	done, failed := "-", "-"
	if r.Rate != nil {
		done, failed = fmtPerSecond(r.Rate.Completed), fmtPerSecond(r.Rate.Failed)
	}
	name := r.Name
	switch {
	case r.Draining:
		name += " (draining)"
	case r.Paused:
		name += " (paused)"
	}
	return []string{name, fmt.Sprint(r.WorkersIdle + r.WorkersBusy), fmt.Sprint(r.WorkersIdle), fmt.Sprint(r.WorkersBusy),
		fmt.Sprint(r.Queued), fmt.Sprint(r.Scheduled), fmt.Sprint(r.Active), done, failed, fmt.Sprint(r.Completed), fmt.Sprint(r.Failed)}
}

// fmtPerSecond formats a rate with one decimal.
func fmtPerSecond(r float64) string { return fmt.Sprintf("%.1f", r) }

// topRows makes cur's service rows with their rates since prev, ordered
// by sortBy (ties by name).
func topRows(prev, cur *topSnapshot, sortBy string) []topRow {
	rates := serviceRates(prev, cur)
	rows := make([]topRow, 0, len(cur.Services))
	for _, s := range cur.Services {
		r := topRow{ServiceInfo: s}
		if rt, ok := rates[s.Name]; ok {
			r.Rate = &rt
		}
		rows = append(rows, r)
	}
	rate := func(r topRow) float64 {
		if r.Rate == nil {
			return 0
		}
		return r.Rate.Completed + r.Rate.Failed
	}
	slices.SortStableFunc(rows, func(a, b topRow) int {
		var c int
		switch sortBy {
		case sortBusy:
			c = cmp.Or(cmp.Compare(b.Queued+b.Active, a.Queued+a.Active), cmp.Compare(rate(b), rate(a)))
		case sortRate:
			c = cmp.Or(cmp.Compare(rate(b), rate(a)), cmp.Compare(b.Queued+b.Active, a.Queued+a.Active))
		}
		return cmp.Or(c, strings.Compare(a.Name, b.Name))
	})
	return rows
}

// hostRow sums up the live workers of one host.
type hostRow struct {
	Host                string
	Workers, Busy, Idle int
	Services            []string
}

var hostHeader = []string{"HOST", "WORKERS", "BUSY", "IDLE", "SERVICES"}

func (h hostRow) cells() []string {
	return []string{h.Host, fmt.Sprint(h.Workers), fmt.Sprint(h.Busy), fmt.Sprint(h.Idle), strings.Join(h.Services, " ")}
}

// unknownHost names the host of workers that did not say (stock MDP).
const unknownHost = "?"

// hostRows groups workers by host, most workers first (ties by name).
func hostRows(ws []protocol.WorkerInfo) []hostRow {
	by := map[string]*hostRow{}
	for _, w := range ws {
		if w.State == protocol.WorkerGone {
			continue
		}
		host := unknownHost
		if w.Details != nil && w.Details.Host != "" {
			host = w.Details.Host
		}
		h := by[host]
		if h == nil {
			h = &hostRow{Host: host}
			by[host] = h
		}
		h.Workers++
		if w.State == protocol.WorkerBusy {
			h.Busy++
		} else {
			h.Idle++
		}
		if !slices.Contains(h.Services, w.Service) {
			h.Services = append(h.Services, w.Service)
		}
	}
	rows := make([]hostRow, 0, len(by))
	for _, h := range by {
		slices.Sort(h.Services)
		rows = append(rows, *h)
	}
	slices.SortFunc(rows, func(a, b hostRow) int {
		return cmp.Or(cmp.Compare(b.Workers, a.Workers), strings.Compare(a.Host, b.Host))
	})
	return rows
}

// workerSummary is one line on the workers: how many, busy and idle, on
// how many hosts.
func workerSummary(ws []protocol.WorkerInfo, hosts []hostRow) string {
	busy, idle := 0, 0
	for _, h := range hosts {
		busy += h.Busy
		idle += h.Idle
	}
	plural := "s"
	if len(hosts) == 1 {
		plural = ""
	}
	return fmt.Sprintf("workers %d: %d busy, %d idle, on %d host%s", busy+idle, busy, idle, len(hosts), plural)
}

// totals sums the rows: queued and active jobs and rates (nil when no
// row has one).
func totals(rows []topRow) (queued, active int, rate *serviceRate) {
	for _, r := range rows {
		queued += r.Queued
		active += r.Active
		if r.Rate != nil {
			if rate == nil {
				rate = &serviceRate{}
			}
			rate.Completed += r.Rate.Completed
			rate.Failed += r.Rate.Failed
		}
	}
	return queued, active, rate
}

// topJSON is the JSON of a snapshot (-o json): each service as
// SERVER-SERVICES has it plus its rates, and the workers by host.
func topJSON(prev, cur *topSnapshot, rows []topRow, hosts []hostRow) any {
	type service struct {
		protocol.ServiceInfo
		CompletedPerS *float64 `json:"completed_per_s,omitempty"`
		FailedPerS    *float64 `json:"failed_per_s,omitempty"`
	}
	type host struct {
		Host     string   `json:"host"`
		Workers  int      `json:"workers"`
		Busy     int      `json:"busy"`
		Idle     int      `json:"idle"`
		Services []string `json:"services"`
	}
	out := struct {
		Time      time.Time `json:"time"`
		IntervalS float64   `json:"interval_s,omitempty"`
		Services  []service `json:"services"`
		Hosts     []host    `json:"hosts"`
	}{Time: cur.At, Services: []service{}, Hosts: []host{}}
	if prev != nil {
		out.IntervalS = cur.At.Sub(prev.At).Seconds()
	}
	for _, r := range rows {
		s := service{ServiceInfo: r.ServiceInfo}
		if r.Rate != nil {
			s.CompletedPerS, s.FailedPerS = &r.Rate.Completed, &r.Rate.Failed
		}
		out.Services = append(out.Services, s)
	}
	for _, h := range hosts {
		out.Hosts = append(out.Hosts, host(h))
	}
	return out
}

// topView is what the live view draws from.
type topView struct {
	Endpoint  string
	Interval  time.Duration
	Sort      string
	Prev, Cur *topSnapshot // Cur nil before the first answer
	Err       error        // the last refresh's failure, if it failed
	ErrAt     time.Time
}

// renderTop lays the view out in width × height cells: a title, a line of
// totals, one on the workers, the services (as many as fit, busiest first by default), and the
// workers by host when there is room. No line is wider than width.
func renderTop(v topView, width, height int) []string {
	width, height = max(width, 20), max(height, 3)
	var lines []string
	add := func(s string) {
		if len(s) > width {
			s = s[:width]
		}
		lines = append(lines, s)
	}
	now := time.Now()
	if v.Cur != nil {
		now = v.Cur.At
	}
	add(fmt.Sprintf("zmws top  %s  %s  every %v, by %s  (q quits)", v.Endpoint, now.Local().Format("15:04:05"), v.Interval, v.Sort))
	if v.Err != nil {
		add(fmt.Sprintf("%s: %s (trying again every %v)", v.ErrAt.Local().Format("15:04:05"), oneLine(v.Err.Error()), v.Interval))
	}
	if v.Cur == nil {
		if v.Err == nil {
			add("asking the broker…")
		}
		return lines
	}
	rows := topRows(v.Prev, v.Cur, v.Sort)
	hosts := hostRows(v.Cur.Workers)
	queued, active, rate := totals(rows)
	rates := "completed - /s  failed - /s"
	if rate != nil {
		rates = fmt.Sprintf("completed %s/s  failed %s/s", fmtPerSecond(rate.Completed), fmtPerSecond(rate.Failed))
	}
	add(fmt.Sprintf("services %d  queued %d  active %d  %s", len(rows), queued, active, rates))
	add(workerSummary(v.Cur.Workers, hosts))
	add("")

	// The services get the room the hosts leave, but at least half.
	hostLines := 0
	if len(hosts) > 0 {
		hostLines = 2 + len(hosts) // a blank line, a header, the rows
	}
	room := height - len(lines) - 1 // the services' header
	if hostLines > room/2 {
		hostLines = room / 2
		if hostLines < 3 {
			hostLines = 0
		}
	}
	room -= hostLines
	svc := make([][]string, 0, len(rows)+1)
	svc = append(svc, serviceHeader)
	shown := min(len(rows), max(room, 0))
	if shown < len(rows) && shown > 0 {
		shown-- // room for the line that says how many more
	}
	for _, r := range rows[:shown] {
		svc = append(svc, r.cells())
	}
	for _, l := range columns(svc, func(i int) bool { return i == 0 }) {
		add(l)
	}
	if shown < len(rows) {
		add(fmt.Sprintf("… and %d more services", len(rows)-shown))
	}
	if hostLines > 0 {
		add("")
		hs := [][]string{hostHeader}
		n := min(len(hosts), hostLines-2)
		if n < len(hosts) {
			n--
		}
		for _, h := range hosts[:max(n, 0)] {
			hs = append(hs, h.cells())
		}
		for _, l := range columns(hs, func(i int) bool { return i == 0 || i == 4 }) {
			add(l)
		}
		if n < len(hosts) {
			add(fmt.Sprintf("… and %d more hosts", len(hosts)-max(n, 0)))
		}
	}
	return lines[:min(len(lines), height)]
}

// columns aligns rows of cells two spaces apart: the text columns
// (those text says) to the left, numbers to the right.
func columns(rows [][]string, text func(col int) bool) []string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[i]-len(c))
			if text(i) {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		out = append(out, strings.TrimRight(b.String(), " "))
	}
	return out
}

// screen is the terminal zmws top draws on.
type screen interface {
	// Size is the terminal's width and height in cells.
	Size() (width, height int)
	// Raw puts the terminal's input in raw mode, so keys arrive one by one
	// (Ctrl-C as byte 3), and returns it with the function that restores
	// the terminal; keys is nil when there is no terminal input.
	Raw() (keys io.Reader, restore func() error, err error)
	// Resized signals a change of the terminal's size until stop.
	Resized() (ch <-chan os.Signal, stop func())
}

// tty is the process's terminal as a screen.
type tty struct{ in, out *os.File }

func newTTY(in, out *os.File) *tty { return &tty{in: in, out: out} }

func (t *tty) Size() (int, int) {
	w, h, err := term.GetSize(int(t.out.Fd()))
	if err != nil {
		return 80, 24
	}
	return w, h
}

func (t *tty) Raw() (io.Reader, func() error, error) {
	fd := int(t.in.Fd())
	if !term.IsTerminal(fd) {
		return nil, nil, nil
	}
	st, err := term.MakeRaw(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("terminal: %w", err)
	}
	return t.in, func() error { return term.Restore(fd, st) }, nil
}

func (t *tty) Resized() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	return ch, func() { signal.Stop(ch) }
}

// Terminal control sequences of the live view (VT100/xterm).
const (
	enterScreen = "\x1b[?1049h\x1b[?25l" // the alternate screen, cursor hidden
	leaveScreen = "\x1b[?25h\x1b[?1049l" // cursor shown, the normal screen back
	home        = "\x1b[H"
	clearLine   = "\x1b[K" // to the end of the line
	clearBelow  = "\x1b[J" // to the end of the screen
)

// live runs the live view until q, Ctrl-C or ctx: it refreshes every
// --interval, redraws when the terminal is resized, keeps showing the last
// answer (and the error) while the broker does not answer, and leaves the
// terminal as it found it.
func (c *TopCmd) live(ctx context.Context, cl *client.Client, scr screen, out io.Writer, endpoint string) (err error) {
	keys, restore, err := scr.Raw()
	if err != nil {
		return err
	}
	io.WriteString(out, enterScreen)
	defer func() {
		io.WriteString(out, leaveScreen)
		if restore != nil {
			if rerr := restore(); rerr != nil && err == nil {
				err = fmt.Errorf("restore the terminal: %w", rerr)
			}
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	quit := make(chan struct{})
	if keys != nil {
		go readKeys(keys, quit)
	}
	resized, stop := scr.Resized()
	defer stop()

	v := topView{Endpoint: endpoint, Interval: c.Interval, Sort: c.Sort}
	draw := func() {
		w, h := scr.Size()
		var b strings.Builder
		b.WriteString(home)
		for i, l := range renderTop(v, w, h) {
			if i > 0 {
				b.WriteString("\r\n") // raw mode: no newline translation
			}
			b.WriteString(l + clearLine)
		}
		b.WriteString(clearBelow)
		io.WriteString(out, b.String())
	}
	draw()
	type answer struct {
		snap *topSnapshot
		err  error
	}
	answers := make(chan answer, 1)
	fetch := func() {
		go func() {
			s, err := fetchTop(ctx, cl)
			answers <- answer{s, err}
		}()
	}
	fetch()
	next := time.NewTimer(c.Interval)
	next.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-quit:
			return nil
		case <-resized:
			draw()
		case a := <-answers:
			if a.err != nil {
				if ctx.Err() != nil {
					return nil
				}
				v.Err, v.ErrAt = a.err, time.Now()
			} else {
				v.Err = nil
				v.Prev, v.Cur = v.Cur, a.snap
			}
			draw()
			next.Reset(c.Interval)
		case <-next.C:
			fetch()
		}
	}
}

// readKeys closes quit at q, Q, Ctrl-C or Ctrl-D, or when keys ends.
func readKeys(keys io.Reader, quit chan<- struct{}) {
	defer close(quit)
	buf := make([]byte, 64)
	for {
		n, err := keys.Read(buf)
		for _, k := range buf[:n] {
			switch k {
			case 'q', 'Q', 3, 4:
				return
			}
		}
		if err != nil {
			return
		}
	}
}
