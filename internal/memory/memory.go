package memory

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/logging"
)

// MmapThreshold is the frame size from which Setup makes glibc allocate
// with mmap, so such a frame goes back to the system as soon as it is
// freed: glibc's initial threshold, kept from rising.
const MmapThreshold = 128 << 10

// Setup fixes glibc's mmap threshold at MmapThreshold, unless the
// environment sets one (MALLOC_MMAP_THRESHOLD_, or glibc.malloc.mmap_threshold
// in GLIBC_TUNABLES). glibc starts at that value but raises it to the size
// of each mmap'd block freed (up to 32 MiB), so after the first burst of
// 1 MiB frames every later one is allocated in its heap and kept there. It
// reports whether it set the threshold (false: set by the environment, or
// not glibc).
func Setup() bool {
	if _, ok := os.LookupEnv("MALLOC_MMAP_THRESHOLD_"); ok || strings.Contains(os.Getenv("GLIBC_TUNABLES"), "mmap_threshold") {
		return false
	}
	return mmapThreshold(MmapThreshold)
}

// DefaultSlack is Trimmer.Slack's default.
const DefaultSlack = 32 << 20

// Trimmer returns freed memory to the system after a burst. Every Every it
// looks at both allocators, cheaply (runtime/metrics, glibc's mallinfo2):
//
//   - when no garbage collection ran since the last look, and the program
//     allocated more than max(Slack, half the live heap) since the last
//     trim, what it allocated may be garbage that the runtime will not
//     collect soon (it collects when allocation asks for it, else every two
//     minutes): it collects and gives the freed pages back
//     (debug.FreeOSMemory). A heap in steady use collects by itself and is
//     left alone, and a big one is not collected more than about twice as
//     often as the runtime would;
//   - when C code (libzmq) holds Slack fewer bytes from malloc than at its
//     peak since the last trim (a peer's frames were freed), or the
//     process's resident size beyond the Go runtime's grew by Slack since
//     the last trim (frames came and went between two looks), it gives
//     glibc's free pages back (malloc_trim), which leaves memory in use
//     alone. Without mallinfo2 (not glibc, or older than 2.33) only the
//     second counts.
//
// So a burst's memory goes back within two Every of its end, and an idle
// process is not trimmed.
type Trimmer struct {
	Every  time.Duration
	Slack  int64 // bytes; default DefaultSlack
	Logger zerolog.Logger

	// What the last look saw; owned by Run's goroutine.
	g            goMemory
	allocsAtTrim int64 // Go heap bytes allocated before the last collection
	cPeak        int64 // malloc'd bytes in use at most since the last trim
	cFloor       int64 // resident bytes beyond Go's after the last trim, or since
}

// Run trims until ctx ends. Run one per process (the allocators are the
// process's).
func (t *Trimmer) Run(ctx context.Context) {
	tick := time.NewTicker(t.Every)
	defer tick.Stop()
	t.start()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.look()
		}
	}
}

func (t *Trimmer) start() {
	if t.Slack <= 0 {
		t.Slack = DefaultSlack
	}
	t.g = readGo()
	t.allocsAtTrim = t.g.allocs
	t.cPeak, _ = mallocInUse()
	rss, _ := RSS(0)
	t.cFloor = rss - t.g.held // resident beyond Go's: C's, mostly
}

// look trims when the rules of Trimmer say so, and reports what it did.
func (t *Trimmer) look() (trimGo, trimC bool) {
	last := t.g
	t.g = readGo()
	trimGo = t.g.gcs == last.gcs && t.g.allocs-t.allocsAtTrim > max(t.Slack, t.g.live/2)
	cInUse, cKnown := mallocInUse()
	t.cPeak = max(t.cPeak, cInUse)
	rss, err := RSS(0)
	if err != nil {
		return false, false
	}
	t.cFloor = min(t.cFloor, rss-t.g.held)
	trimC = cKnown && t.cPeak-cInUse > t.Slack || rss-t.g.held-t.cFloor > t.Slack
	if !trimGo && !trimC {
		return false, false
	}
	start := time.Now()
	if trimC {
		mallocTrim()
		t.cPeak = cInUse
	}
	if trimGo {
		debug.FreeOSMemory()
	}
	after, _ := RSS(0)
	t.g = readGo()
	if trimGo {
		t.allocsAtTrim = t.g.allocs
	}
	if trimC {
		t.cFloor = after - t.g.held
	}
	// A burst's end is worth a line; a trim of a size that moves with its
	// load is not.
	ev := t.Logger.Debug()
	if rss-after >= 4*t.Slack {
		ev = t.Logger.Info()
	}
	ev.Int64("rss_before_mib", rss>>20).Int64("rss_after_mib", after>>20).Bool("go", trimGo).Bool("c", trimC).
		Dur(logging.KeyElapsed, time.Since(start)).Msg("memory returned to the system")
	return trimGo, trimC
}

// goMemory is what the Go runtime says of its memory.
type goMemory struct {
	held   int64  // bytes mapped from the system and not given back
	live   int64  // heap bytes live at the last collection
	allocs int64  // heap bytes allocated since the program started
	gcs    uint64 // collections run
}

func readGo() goMemory {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(s)
	return goMemory{
		held:   int64(s[0].Value.Uint64()) - int64(s[1].Value.Uint64()),
		live:   int64(s[2].Value.Uint64()),
		allocs: int64(s[3].Value.Uint64()),
		gcs:    s[4].Value.Uint64(),
	}
}

// RSS is the resident set size (VmRSS) of process pid in bytes; pid 0 is
// this process.
func RSS(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: VmRSS: %w", path, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New(path + ": no VmRSS")
}
