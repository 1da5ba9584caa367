package server

import (
	"testing"
	"time"
)

func TestPollTimeout_RoundsUpToMilliseconds(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{0, 0},
		{time.Microsecond, time.Millisecond},
		{999 * time.Microsecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{100 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := pollTimeout(c.in); got != c.want {
			t.Errorf("pollTimeout(%v) = %v, want %v (zmq_poll would get %d ms)", c.in, got, c.want, got/time.Millisecond)
		}
	}
}
