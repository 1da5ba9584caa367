package worker

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/protocol"
)

// With Prefetch, READY says so; jobs sent ahead wait, in order, and each
// starts as soon as the result of the one before it is sent. One more than
// the slot can hold is ignored (the broker would not send it).
func TestWorker_PrefetchRunsWaitingJobsInOrder(t *testing.T) {
	b := newFakeBroker(t)
	started := make(chan *Job, 8)
	release := make(chan struct{}, 8)
	cfg := testConfig(t, HandlerFunc(func(ctx context.Context, j *Job) ([]byte, error) {
		started <- j
		select {
		case <-release:
			return []byte(j.ID), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}), b.ep)
	cfg.Prefetch = 2
	start(t, cfg)
	ready := b.expect(t, protocol.CmdReady)
	if md, _, _, _ := protocol.SplitMeta(ready.msg.Body); md.Prefetch != 2 {
		t.Fatalf("READY meta %+v, want prefetch 2", md)
	}
	for _, job := range []string{"J1", "J2", "J3", "J4"} {
		b.request(ready.id, job, protocol.Meta{})
	}
	if j := recvJob(t, started); j.ID != "J1" {
		t.Fatalf("first job %s, want J1", j.ID)
	}
	select {
	case j := <-started:
		t.Fatalf("%s started while J1 runs", j.ID)
	case <-time.After(100 * time.Millisecond):
	}
	for _, want := range []string{"J1", "J2", "J3"} {
		release <- struct{}{}
		if _, body := final(t, b.expect(t, protocol.CmdReply), want); len(body) != 1 || body[0] != want {
			t.Fatalf("FINAL for %s: %q", want, body)
		}
		if want != "J3" {
			recvJob(t, started)
		}
	}
	// J4 was one too many: it was dropped, not run.
	b.quiet(t, 200*time.Millisecond)
	select {
	case j := <-started:
		t.Fatalf("%s ran beyond the prefetch", j.ID)
	default:
	}
}

// Jobs waiting at a slot that loses its broker are dropped with the
// connection: the broker has queued them again.
func TestWorker_PrefetchDroppedWithConnection(t *testing.T) {
	b := newFakeBroker(t)
	h := newBlock()
	cfg := testConfig(t, h, b.ep)
	cfg.Prefetch = 1
	start(t, cfg)
	ready := b.expect(t, protocol.CmdReady)
	b.request(ready.id, "J1", protocol.Meta{})
	b.request(ready.id, "J2", protocol.Meta{})
	recvJob(t, h.started)
	b.send(ready.id, protocol.Message{Cmd: protocol.CmdDisconnect})
	again := b.expect(t, protocol.CmdReady) // the slot reconnects
	if again.id == ready.id {
		t.Fatal("reconnected with the same identity")
	}
	b.quiet(t, 300*time.Millisecond)
	select {
	case j := <-h.started:
		t.Fatalf("%s started after its connection was gone", j.ID)
	default:
	}
}

// A slot that stops gives back the jobs it had not started, last first,
// at once; the running one finishes in its grace; a REQUEST that comes
// while it stops is given back too; then DISCONNECT.
func TestWorker_PrefetchGivesBackAtStop(t *testing.T) {
	b := newFakeBroker(t)
	h := newBlock()
	cfg := testConfig(t, h, b.ep)
	cfg.Prefetch = 2
	waiting := make(chan string, 2)
	cfg.Logger = cfg.Logger.Hook(zerolog.HookFunc(func(_ *zerolog.Event, _ zerolog.Level, msg string) {
		if msg == "job waiting" {
			select {
			case waiting <- msg:
			default:
			}
		}
	}))
	stop := start(t, cfg)
	ready := b.expect(t, protocol.CmdReady)
	for _, job := range []string{"J1", "J2", "J3"} {
		b.request(ready.id, job, protocol.Meta{})
	}
	recvJob(t, h.started)
	// The busy slot takes J2 and J3 to wait behind J1 before it is told
	// to stop, and then gives them back last first.
	for range 2 {
		select {
		case <-waiting:
		case <-time.After(wait):
			t.Fatal("J2 and J3 were not taken to wait")
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	back := map[string]bool{}
	for range 2 {
		g := b.expect(t, protocol.CmdReply)
		if meta, _ := final(t, g, string(g.msg.Address)); meta.Status != protocol.StatusReturned {
			t.Fatalf("%s: %+v, want returned", g.msg.Address, meta)
		}
		back[string(g.msg.Address)] = true
	}
	if !back["J2"] || !back["J3"] {
		t.Fatalf("given back %v, want J2 and J3", back)
	}
	b.request(ready.id, "J4", protocol.Meta{})
	if meta, _ := final(t, b.expect(t, protocol.CmdReply), "J4"); meta.Status != protocol.StatusReturned {
		t.Fatalf("J4: %+v, want returned", meta)
	}
	close(h.release)
	if meta, _ := final(t, b.expect(t, protocol.CmdReply), "J1"); meta.Status != protocol.StatusComplete {
		t.Fatalf("J1: %+v, want complete", meta)
	}
	b.expect(t, protocol.CmdDisconnect)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	select {
	case j := <-h.started:
		t.Fatalf("%s started while stopping", j.ID)
	default:
	}
}
