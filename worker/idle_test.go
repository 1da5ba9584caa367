package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
)

// TestIdler_SharedStopsForAJob: two Workers share an Idler. It calls its
// function once both have been quiet; a job starting on either ends the
// call in progress (cause ErrJobStarted) at once, without waiting for it;
// no call happens while the job runs, though the other Worker is quiet; and
// the next comes a quiet period after the job ended.
func TestIdler_SharedStopsForAJob(t *testing.T) {
	const quiet = 50 * time.Millisecond
	type call struct {
		at  time.Time
		end chan error // the cause its ctx ended with
	}
	calls := make(chan call, 16)
	idler := NewIdler(quiet, func(ctx context.Context) {
		c := call{at: time.Now(), end: make(chan error, 1)}
		calls <- c
		<-ctx.Done() // an idle command that runs until stopped
		c.end <- context.Cause(ctx)
	})
	ctx, cancel := context.WithCancel(context.Background())
	started := time.Now()
	idled := make(chan struct{})
	go func() { idler.Run(ctx); close(idled) }()
	defer func() { cancel(); <-idled }()

	b := newFakeBroker(t)
	ha, hb := newBlock(), newBlock()
	cfg := testConfig(t, ha, b.ep)
	cfg.Service, cfg.Idler = "A", idler
	stopA := start(t, cfg)
	cfg = testConfig(t, hb, b.ep)
	cfg.Service, cfg.Idler = "B", idler
	stopB := start(t, cfg)
	ready := map[string]string{}
	for range 2 {
		g := b.expect(t, protocol.CmdReady)
		ready[g.msg.Service] = g.id
	}

	first := recvCall(t, calls)
	if first.at.Sub(started) < quiet {
		t.Errorf("first call %v after Run, want at least %v", first.at.Sub(started), quiet)
	}
	b.request(ready["B"], "j1", protocol.Meta{})
	recvJob(t, hb.started) // the job did not wait for the call
	select {
	case err := <-first.end:
		if !errors.Is(err, ErrJobStarted) {
			t.Errorf("call ended with %v, want ErrJobStarted", err)
		}
	case <-time.After(wait):
		t.Fatal("the call in progress did not end when a job started")
	}
	b.quiet(t, 4*quiet)
	if n := len(calls); n > 0 {
		t.Errorf("%d calls while B runs a job (A is quiet)", n)
	}
	close(hb.release)
	end := b.expect(t, protocol.CmdReply).at
	second := recvCall(t, calls)
	if d := second.at.Sub(end); d < quiet/2 {
		t.Errorf("next call %v after the job ended, want about %v", d, quiet)
	}
	stopA()
	stopB()
	cancel()
	if err := <-second.end; !errors.Is(err, context.Canceled) {
		t.Errorf("call at stop ended with %v, want context.Canceled", err)
	}
	<-idled
}

func recvCall[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		t.Fatalf("no idle call within %v", wait)
		var zero T
		return zero
	}
}

func TestNew_IdlerAndOnIdle(t *testing.T) {
	cfg := testConfig(t, newBlock(), "tcp://127.0.0.1:1")
	cfg.Idler = NewIdler(time.Second, func(context.Context) {})
	cfg.OnIdle, cfg.Idle = func() {}, time.Second
	if _, err := New(cfg); err == nil {
		t.Error("New took both Idler and OnIdle")
	}
}
