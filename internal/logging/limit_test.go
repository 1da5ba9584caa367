package logging

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var l Limiter
	t0 := time.Unix(1000, 0)
	// One peer: the first line, then nothing for a period.
	allowed := 0
	for i := range 1000 {
		if ok, _ := l.Allow("malformed", "p1", t0.Add(time.Duration(i)*time.Millisecond)); ok {
			allowed++
		}
	}
	if allowed != 1 {
		t.Fatalf("one peer, 1000 complaints in a second: %d lines, want 1", allowed)
	}
	// After the period the next line carries the count held back.
	ok, n := l.Allow("malformed", "p1", t0.Add(time.Minute+time.Second))
	if !ok || n != 999 {
		t.Fatalf("after the period: ok %v, suppressed %d, want true, 999", ok, n)
	}
	// Many made-up peers: at most Burst lines per period.
	allowed = 0
	for i := range 200_000 {
		if ok, _ := l.Allow("flood", fmt.Sprint("peer", i), t0); ok {
			allowed++
		}
	}
	if allowed != 20 {
		t.Fatalf("200,000 peers: %d lines, want the burst of 20", allowed)
	}
	// Kinds are counted apart.
	if ok, _ := l.Allow("other", "p1", t0); !ok {
		t.Fatal("another kind held back")
	}
}
