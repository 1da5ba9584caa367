package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// ran is one job a schedule made, as its worker saw it start.
type ran struct {
	id      string
	service string
	at      time.Time
}

// TestRun_SchedulesOverRestart runs zmwsd with schedules firing every
// second (one from --schedule, the others from [[broker.schedule]], with
// the seconds field or @every, catch_up one or all) and a real worker per
// service, stops it for a few seconds and starts it again on the same
// journal. Each on-schedule job starts at its worker within 100 ms of its
// tick, never before; no tick runs twice; the ticks of the outage make one
// job (catch_up one) or one each (catch_up all); no other tick is lost.
//
// ZMWSD_SCHEDULE_JOBS=1000 runs about that many cron-fired jobs (50
// schedules, longer phases) and reports the same numbers.
func TestRun_SchedulesOverRestart(t *testing.T) {
	total := 20
	if v := os.Getenv("ZMWSD_SCHEDULE_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("ZMWSD_SCHEDULE_JOBS=%q: want a positive number of jobs", v)
		}
		total = n
	}
	nsched := max(3, total/20)
	phase := time.Duration(max(3, (total/nsched+1)/2)) * time.Second
	const outage = 2300 * time.Millisecond

	dir := t.TempDir()
	var file strings.Builder
	file.WriteString("[broker]\n")
	rules := map[string]string{}
	services := make([]string, nsched)
	for i := range nsched {
		name, svc := fmt.Sprintf("s%02d", i), fmt.Sprintf("TICK-%02d", i)
		services[i] = svc
		rule := protocol.CatchUpOne
		if i%3 == 2 {
			rule = protocol.CatchUpAll
		}
		rules[svc] = rule
		if i == 0 {
			continue // from --schedule
		}
		spec := "@every 1s"
		if i%2 == 1 {
			spec = "* * * * * *" // the seconds field
		}
		fmt.Fprintf(&file, "[[broker.schedule]]\nname = %q\ncron = %q\nservice = %q\ncatch_up = %q\nparams = { n = \"%d\" }\n\n", name, spec, svc, rule, i)
	}
	conf := filepath.Join(dir, "zmws.toml")
	if err := os.WriteFile(conf, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	workerEP := zmqtest.FreeEndpoint(t)
	cli := parse(t, "--config="+conf, "--client-bind=tcp://127.0.0.1:*", "--worker-bind="+workerEP, "--events-bind=",
		"--http-bind=", "--heartbeat=250ms", "--data-dir="+filepath.Join(dir, "data"), "--schedule=s00=@every 1s="+services[0])
	if len(cli.file.Schedules()) != nsched-1 {
		t.Fatalf("%d schedules read from the file, want %d", len(cli.file.Schedules()), nsched-1)
	}

	var mu sync.Mutex
	var seen []ran
	for _, svc := range services {
		w, err := worker.New(worker.Config{Brokers: []string{workerEP}, Service: svc, Heartbeat: 250 * time.Millisecond,
			ReconnectMin: 20 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
			Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			Handler: worker.HandlerFunc(func(_ context.Context, j *worker.Job) ([]byte, error) {
				at := time.Now()
				mu.Lock()
				seen = append(seen, ran{id: j.ID, service: j.Service, at: at})
				mu.Unlock()
				return nil, nil
			})})
		if err != nil {
			t.Fatal(err)
		}
		zmqtest.Go(t, "worker "+svc, w.Run)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	// Start at .300 into a second, so the workers are READY before the
	// first tick (a sleep for the clock's phase, not to wait for an event).
	atPhase := func() time.Time {
		now := time.Now()
		next := now.Truncate(time.Second).Add(300 * time.Millisecond)
		if next.Before(now) {
			next = next.Add(time.Second)
		}
		time.Sleep(time.Until(next))
		return time.Now()
	}
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zmwsd's log:\n%s", logs.String())
		}
	})
	serve := func() (context.CancelFunc, chan error, *client.Client) {
		ctx, cancel := context.WithCancel(context.Background())
		srv, _, done := start(t, ctx, cli, logs)
		c, err := client.New(client.Config{Broker: srv.ClientEndpoint()})
		if err != nil {
			t.Fatal(err)
		}
		return cancel, done, c
	}
	// quiesce waits until every job made is finished, so a stop loses no
	// job in flight (which would run again after the restart: at least
	// once, not a tick fired twice), then stops zmwsd.
	stop := func(cancel context.CancelFunc, done chan error, c *client.Client) []protocol.ScheduleInfo {
		zmqtest.Eventually(t, "no job queued or running", 5*time.Second, func() bool {
			a, err1 := c.Active(context.Background())
			q, err2 := c.Queue(context.Background())
			queued := 0
			for _, x := range q {
				queued += x.Queued
			}
			return err1 == nil && err2 == nil && len(a) == 0 && queued == 0
		})
		infos, err := c.Schedules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("zmwsd did not stop")
		}
		return infos
	}

	start1 := atPhase()
	cancel, done, c := serve()
	// Wait for the jobs of the ticks of phase, then stop mid-second.
	zmqtest.Eventually(t, "the jobs of the first phase", phase+5*time.Second, func() bool {
		return time.Since(start1) >= phase && count() >= nsched*int(phase/time.Second)
	})
	atPhase() // mid-second: the last tick's jobs are done, the next is far
	before := stop(cancel, done, c)
	stopped := time.Now()
	n1 := count()

	// The outage: time passing is what is tested.
	time.Sleep(time.Until(stopped.Add(outage)))
	restart := atPhase()
	cancel, done, c = serve()
	restarted := time.Now()
	zmqtest.Eventually(t, "the jobs of the second phase", phase+5*time.Second, func() bool {
		return time.Since(restart) >= phase && count() >= n1+nsched*int(phase/time.Second)
	})
	atPhase()
	after := stop(cancel, done, c)

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d schedules, %d jobs before the restart, %d after; down from %s to %s",
		nsched, n1, len(seen)-n1, stopped.Format("15:04:05.000"), restart.Format("15:04:05.000"))
	byService := map[string][]ran{}
	ids := map[string]bool{}
	for _, r := range seen {
		if ids[r.id] {
			t.Errorf("job %s ran twice", r.id)
		}
		ids[r.id] = true
		byService[r.service] = append(byService[r.service], r)
		// Never made before its tick: the ULID's millisecond is at or
		// after the whole second the job's start falls in.
		if made := ulid.Time(ulid.MustParse(r.id).Time()); made.Before(r.at.Truncate(time.Second)) {
			t.Errorf("job %s made at %v, before its tick %v", r.id, made, r.at.Truncate(time.Second))
		}
	}
	var late, made []time.Duration // from each on-schedule tick to its job's start, and to its ID's time
	lastBefore := stopped.Truncate(time.Second)
	catchUp := restart.Truncate(time.Second) // the newest tick of the outage
	catchUpAlt := restarted.Truncate(time.Second)
	for _, svc := range services {
		runs := byService[svc]
		ticks := map[time.Time]bool{}
		first := time.Time{}
		var afterJobs int
		for _, r := range runs {
			if r.at.After(restart) && !r.at.Truncate(time.Second).After(catchUpAlt) {
				afterJobs++ // a catch-up job, made at the restart
				continue
			}
			tick := r.at.Truncate(time.Second)
			if ticks[tick] {
				t.Errorf("%s: tick %s ran twice", svc, tick.Format("15:04:05"))
			}
			ticks[tick] = true
			if first.IsZero() || tick.Before(first) {
				first = tick
			}
			late = append(late, r.at.Sub(tick))
			made = append(made, ulid.Time(ulid.MustParse(r.id).Time()).Sub(tick))
		}
		// Every tick from the first to the last stop, and after the
		// restart, has its job; the outage's ticks theirs by the rule.
		for tk := first; !tk.After(lastBefore); tk = tk.Add(time.Second) {
			if !ticks[tk] && tk.After(start1) {
				t.Errorf("%s: tick %s before the stop has no job", svc, tk.Format("15:04:05"))
			}
		}
		end := runs[len(runs)-1].at.Truncate(time.Second)
		for tk := catchUp.Add(time.Second); !tk.After(end); tk = tk.Add(time.Second) {
			if !ticks[tk] && tk.After(catchUpAlt) {
				t.Errorf("%s: tick %s after the restart has no job", svc, tk.Format("15:04:05"))
			}
		}
		outageTicks := int(catchUp.Sub(lastBefore) / time.Second)
		want := 1
		if rules[svc] == protocol.CatchUpAll {
			want = outageTicks
		}
		if afterJobs != want && !(catchUpAlt != catchUp && afterJobs == want+1) {
			t.Errorf("%s (catch_up %s): %d jobs for the %d ticks of the outage, want %d", svc, rules[svc], afterJobs, outageTicks, want)
		}
	}
	for _, infos := range [][]protocol.ScheduleInfo{before, after} {
		for _, s := range infos {
			if s.Skipped != 0 {
				t.Errorf("schedule %s skipped %d ticks", s.Name, s.Skipped)
			}
		}
	}
	if len(after) == nsched {
		t.Logf("after the restart: %s fired %d, missed %d; %s fired %d, missed %d",
			after[0].Name, after[0].Fired, after[0].Missed, after[nsched-1].Name, after[nsched-1].Fired, after[nsched-1].Missed)
	}
	slices.Sort(late)
	if len(late) == 0 {
		t.Fatal("no on-schedule job")
	}
	slices.Sort(made)
	lo, mid, p99, hi := late[0], late[len(late)/2], late[len(late)*99/100], late[len(late)-1]
	t.Logf("lateness of %d on-schedule jobs at their workers: min %v, p50 %v, p99 %v, max %v; of their IDs (made, ms): p50 %v, max %v",
		len(late), lo, mid, p99, hi, made[len(made)/2], made[len(made)-1])
	// The target is 100 ms. On a shared machine running other tests a
	// scheduling hiccup alone can pass it, so the run in the test suite
	// checks a loose bound (a stalled loop), the distribution is logged,
	// and ZMWS_TIMING=1 checks the target itself. That the broker wakes at
	// the tick, not at its next heartbeat, is a broker test with a chosen
	// clock (TestBroker_ScheduleFiresAtItsTickNotBefore).
	bound := time.Second
	if os.Getenv("ZMWS_TIMING") != "" {
		bound = 100 * time.Millisecond
	}
	if over := len(late) - sort.Search(len(late), func(i int) bool { return late[i] > bound }); over > 0 {
		t.Errorf("%d jobs started more than %v after their tick (the latest %v after), want none", over, bound, hi)
	}
}

// A bad schedule stops zmwsd at start (and --check) with an error naming
// the schedule and its spec.
func TestRun_ScheduleErrors(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "zmws.toml")
	if err := os.WriteFile(conf, []byte("[[broker.schedule]]\nname = \"a\"\ncron = \"@hourly\"\nservice = \"S\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--schedule=nightly=0 3 * *=backup"}, `--schedule: schedule "nightly": cron spec "0 3 * *": expected 5 to 6 fields, found 4`},
		{[]string{"--check", "--schedule=n=@every 1s=SYNC-S"}, `schedule "n": service SYNC-S`},
		{[]string{"--schedule=nightly"}, `--schedule: "nightly": want NAME=CRONSPEC=SERVICE`},
		{[]string{"--schedule=a=@daily=S;a=@hourly=T"}, `schedule "a" is declared twice`},
		{[]string{"--config=" + conf, "--schedule=a=@daily=S"}, `schedule "a" is declared twice`},
	} {
		cli := parse(t, tc.args...)
		err := run(context.Background(), cli, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
	t.Setenv("ZMWSD_SCHEDULE", "a=*/5 * * * 1,3,5=S;b=@every 10s=T")
	if cli := parse(t); len(cli.Schedule) != 2 || cli.Schedule[0] != "a=*/5 * * * 1,3,5=S" {
		t.Errorf("ZMWSD_SCHEDULE: %q, want two schedules, the commas of the first kept", cli.Schedule)
	}
}

// [broker] schedule sets --schedule, each item whole (commas and all).
func TestConfig_ScheduleKey(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "zmws.toml")
	text := "[broker]\nschedule = [\"a=*/5 * * * 1,3,5=S\", \"b=@every 10s=T\"]\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := parse(t, "--config="+conf)
	if len(cli.Schedule) != 2 || cli.Schedule[0] != "a=*/5 * * * 1,3,5=S" || cli.Schedule[1] != "b=@every 10s=T" {
		t.Fatalf("--schedule from the file: %q", cli.Schedule)
	}
	ss, err := schedules(cli)
	if err != nil || len(ss) != 2 || ss[0].Spec != "*/5 * * * 1,3,5" {
		t.Fatalf("schedules: %+v %v", ss, err)
	}
}
