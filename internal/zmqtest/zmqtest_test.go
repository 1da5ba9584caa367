package zmqtest

import (
	"fmt"
	"testing"
	"time"
)

func TestEventually_ReturnsOnceTrue(t *testing.T) {
	n := 0
	Eventually(t, "the third poll", time.Second, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

// fatalTB records Fatalf instead of stopping the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestEventually_FailsNamingWhat(t *testing.T) {
	f := &fatalTB{TB: t}
	start := time.Now()
	polls := 0
	// Fatalf does not stop this fake, so the condition ends the loop.
	Eventually(f, "the impossible", 20*time.Millisecond, func() bool { polls++; return f.msg != "" })
	if f.msg != "the impossible: not within 20ms" {
		t.Errorf("failure %q", f.msg)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("gave up after %v, before its timeout", d)
	}
	if polls < 2 {
		t.Errorf("%d polls", polls)
	}
}

// A cond that blocks for the interval is polled again without a sleep:
// twelve calls of 50 ms take about 600 ms, not 600 ms plus the growing
// intervals between them (313 ms more).
func TestEventually_BlockingCondIsItsOwnInterval(t *testing.T) {
	const polls, blocks = 12, 50 * time.Millisecond
	n := 0
	start := time.Now()
	Eventually(t, "the twelfth poll", 5*time.Second, func() bool {
		n++
		time.Sleep(blocks) // stands in for a receive that times out: the time it takes is what is tested
		return n == polls
	})
	if d, most := time.Since(start), polls*blocks+150*time.Millisecond; d > most {
		t.Errorf("%d polls of %v took %v, want at most %v: Eventually slept beside a blocking cond", polls, blocks, d, most)
	}
}
