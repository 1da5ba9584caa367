package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/store"
)

// childSchedule is the schedule of childScheduler.
var childSchedule = broker.Schedule{Name: "s", Spec: "@every 1s", Service: "S"}

// childScheduler runs a durable server with childSchedule on random
// ports, prints its client and worker endpoints on one line, and serves
// until killed.
func childScheduler(dir string) int {
	st, err := store.OpenBolt(filepath.Join(dir, "zmws.db"), store.BoltOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*", Store: st,
		Broker: broker.Config{Heartbeat: 100 * time.Millisecond, Schedules: []broker.Schedule{childSchedule}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(srv.ClientEndpoint(), srv.WorkerEndpoint())
	srv.Run(context.Background())
	return 0
}

// schedules asks SERVER-SCHEDULES.
func schedules(t *testing.T, c *zmq.Socket) []protocol.ScheduleInfo {
	t.Helper()
	zmqtest.Send(t, c, b("MDPC02"), []byte{0x01}, b(protocol.ServerSchedules), protocol.EncodeMeta(protocol.Meta{}))
	r := zmqtest.Recv(t, c, wait)
	var infos []protocol.ScheduleInfo
	if len(r) < 5 || json.Unmarshal(r[4], &infos) != nil {
		t.Fatalf("SERVER-SCHEDULES: %s", zmqtest.Join(r))
	}
	return infos
}

// A zmwsd killed with SIGKILL right after a tick fired (before, during or
// after the tick's commit) leaves a journal where the schedule's last tick
// and its job are both recorded or neither is, and no tick has two jobs;
// restarted on it, the broker makes none for a recorded tick.
func TestServer_KillMinus9AfterATickFiresItOnce(t *testing.T) {
	dir := t.TempDir()
	// Where the kill falls after the tick: before the commit (which
	// waits up to the 20 ms CommitDelay), about then, and after.
	for i, after := range []time.Duration{0, 15 * time.Millisecond, 60 * time.Millisecond} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ZMWS_TEST_SCHEDULE_CHILD="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("child broker: %v", err)
		}
		eps := strings.Fields(line)
		if i == 0 {
			w := v2Worker(t, eps[1], "S")
			waitService(t, eps[0], "S")
			zmqtest.Send(t, w, b("MDPW02"), []byte{0x06}) // known, with no worker: its jobs stay queued
		}
		c := zmqtest.Connect(t, zmq.DEALER, eps[0])
		first := schedules(t, c)[0].Fired
		zmqtest.Eventually(t, "a tick fired", 3*time.Second, func() bool { return schedules(t, c)[0].Fired > first })
		// Time passing is what is tested: where the kill falls.
		time.Sleep(after)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		checkScheduleJournal(t, dir, fmt.Sprintf("kill %d, %v after a tick", i+1, after))
	}

	// A restart at once makes no job for the last recorded tick.
	st, err := store.OpenBolt(filepath.Join(dir, "zmws.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.Load(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Schedules) != 1 {
		t.Fatalf("no tick recorded after 3 kills: %+v", snap.Schedules)
	}
	jobs := len(snap.Jobs)
	srv := start(t, server.Config{Store: st, Broker: broker.Config{Schedules: []broker.Schedule{childSchedule}}})
	c := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	s := schedules(t, c)[0]
	if s.LastTick.Before(snap.Schedules[0].LastTick) {
		t.Fatalf("after the restart: last tick %v, before the journal's %v", s.LastTick, snap.Schedules[0].LastTick)
	}
	if s.LastTick.Equal(snap.Schedules[0].LastTick) && s.Fired != 0 {
		t.Fatalf("after the restart: %d jobs fired for a last tick already recorded", s.Fired)
	}
	t.Logf("%d jobs in the journal after 3 kills; the restart fired %d (missed %d)", jobs, s.Fired, s.Missed)
}

// checkScheduleJournal opens the journal a killed broker left: the
// schedule's record names a job of its last tick, and no tick has two jobs.
func checkScheduleJournal(t *testing.T, dir, when string) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(dir, "zmws.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap, err := st.Load(0)
	if err != nil {
		t.Fatal(err)
	}
	var rec store.ScheduleRecord
	switch len(snap.Schedules) {
	case 0: // killed before the first tick's commit: no job either
	case 1:
		rec = snap.Schedules[0]
	default:
		t.Fatalf("%s: schedule records %+v, want one", when, snap.Schedules)
	}
	ticks := map[time.Time]string{}
	found := false
	for _, j := range snap.Jobs {
		if j.Owner != "schedule:s" {
			continue
		}
		// Each job is made within the second of its tick (or, a catch-up
		// job, at a start: never in the second of another job's tick).
		tick := j.Created.Truncate(time.Second)
		if other, dup := ticks[tick]; dup {
			t.Errorf("%s: jobs %s and %s for the tick %v", when, other, j.ID, tick)
		}
		ticks[tick] = j.ID
		if j.ID == rec.LastJob {
			found = true
			if made := ulid.Time(ulid.MustParse(j.ID).Time()); made.Before(rec.LastTick) {
				t.Errorf("%s: the last job %s was made at %v, before the last tick %v", when, j.ID, made, rec.LastTick)
			}
		}
	}
	if !found && (rec.LastJob != "" || len(ticks) > 0) {
		t.Errorf("%s: the schedule's record names job %s (tick %v), which the journal lacks", when, rec.LastJob, rec.LastTick)
	}
	t.Logf("%s: %d jobs, last tick %v", when, len(ticks), rec.LastTick.Format("15:04:05.000"))
}
