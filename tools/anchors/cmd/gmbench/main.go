// gmbench: Gearman job-server throughput and latency, measured from Go.
//
// It speaks the Gearman binary protocol itself (a few packet types: see
// http://gearman.org/protocol/), because no Go Gearman library is served
// by the module proxy here. Modes:
//
//	sync      C client connections each submit jobs one at a time
//	          (SUBMIT_JOB, wait for WORK_COMPLETE); reports jobs/s and the
//	          per-job round-trip latency p50/p99.
//	bg        C client connections submit SUBMIT_JOB_BG jobs (each waits
//	          for its JOB_CREATED), then wait until the function's queue is
//	          empty; reports submit rate and time until all jobs are done.
//	waitidle  poll the admin "status" command until FUNC has no queued or
//	          running job (used by the gearman CLI script).
//
// With -workers K>0, K in-process worker connections register FUNC and
// answer every job with the reversed payload (no process spawned: broker
// cost only). With -workers 0, an external worker must serve FUNC (e.g.
// `gearman -w -f rev -- rev`, the exec-wrapped case).
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmws/zmws/tools/anchors/internal/stats"
)

// Packet types used here (Gearman protocol).
const (
	canDo        = 1
	preSleep     = 4
	noop         = 6
	submitJob    = 7
	jobCreated   = 8
	grabJob      = 9
	noJob        = 10
	jobAssign    = 11
	workStatus   = 12
	workComplete = 13
	workFail     = 14
	submitJobBG  = 18
	gmError      = 19
	workExc      = 25
	workData     = 28
	workWarning  = 29
)

var (
	reqMagic = []byte("\x00REQ")
	resMagic = []byte("\x00RES")
)

type conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}, nil
}

// put buffers one request packet; args are joined by NUL.
func (c *conn) put(typ uint32, args ...[]byte) {
	size := 0
	for i, a := range args {
		if i > 0 {
			size++
		}
		size += len(a)
	}
	var h [12]byte
	copy(h[:4], reqMagic)
	binary.BigEndian.PutUint32(h[4:8], typ)
	binary.BigEndian.PutUint32(h[8:12], uint32(size))
	c.w.Write(h[:])
	for i, a := range args {
		if i > 0 {
			c.w.WriteByte(0)
		}
		c.w.Write(a)
	}
}

func (c *conn) flush() error { return c.w.Flush() }

// get reads one response packet.
func (c *conn) get() (uint32, []byte, error) {
	var h [12]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	if !bytes.Equal(h[:4], resMagic) {
		return 0, nil, fmt.Errorf("bad magic %q", h[:4])
	}
	typ := binary.BigEndian.Uint32(h[4:8])
	size := binary.BigEndian.Uint32(h[8:12])
	body := make([]byte, size)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return typ, body, nil
}

// reverse mimics `rev` on one line: the bytes before a trailing newline are
// reversed, the newline stays last.
func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		out[n] = '\n'
	}
	for i := 0; i < n; i++ {
		out[n-1-i] = b[i]
	}
	return out
}

// worker serves fn until stop is closed; counts completed jobs in done.
func worker(addr, fn string, stop <-chan struct{}, done *atomic.Int64, ready chan<- error) {
	c, err := dial(addr)
	if err != nil {
		ready <- err
		return
	}
	defer c.c.Close()
	go func() { <-stop; c.c.Close() }()
	c.put(canDo, []byte(fn))
	c.put(grabJob)
	if err := c.flush(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	for {
		typ, body, err := c.get()
		if err != nil {
			return // closed by stop, or server gone
		}
		switch typ {
		case noJob:
			c.put(preSleep)
		case noop:
			c.put(grabJob)
		case jobAssign:
			// handle \0 function \0 data
			parts := bytes.SplitN(body, []byte{0}, 3)
			if len(parts) != 3 {
				fmt.Fprintln(os.Stderr, "worker: bad JOB_ASSIGN")
				return
			}
			c.put(workComplete, parts[0], reverse(parts[2]))
			c.put(grabJob) // ask for the next job in the same write
			done.Add(1)
		case gmError:
			fmt.Fprintf(os.Stderr, "worker: ERROR %q\n", body)
			return
		}
		if err := c.flush(); err != nil {
			return
		}
	}
}

var errFail = errors.New("job failed")

// doSync submits one job and waits for its result.
func (c *conn) doSync(fn string, data []byte) ([]byte, error) {
	c.put(submitJob, []byte(fn), nil, data)
	if err := c.flush(); err != nil {
		return nil, err
	}
	var acc []byte
	for {
		typ, body, err := c.get()
		if err != nil {
			return nil, err
		}
		switch typ {
		case jobCreated, workStatus, workWarning:
		case workData:
			if i := bytes.IndexByte(body, 0); i >= 0 {
				acc = append(acc, body[i+1:]...)
			}
		case workComplete:
			i := bytes.IndexByte(body, 0)
			return append(acc, body[i+1:]...), nil
		case workFail, workExc:
			return nil, errFail
		case gmError:
			return nil, fmt.Errorf("server ERROR %q", body)
		}
	}
}

// submitBG submits one background job and waits for JOB_CREATED.
func (c *conn) submitBG(fn string, data []byte) error {
	c.put(submitJobBG, []byte(fn), nil, data)
	if err := c.flush(); err != nil {
		return err
	}
	typ, body, err := c.get()
	if err != nil {
		return err
	}
	if typ != jobCreated {
		return fmt.Errorf("want JOB_CREATED, got %d %q", typ, body)
	}
	return nil
}

// queued asks the text admin protocol for FUNC's total (queued+running) jobs.
func queued(ac *conn, fn string) (int, error) {
	if _, err := ac.c.Write([]byte("status\n")); err != nil {
		return 0, err
	}
	total := 0
	for {
		line, err := ac.r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "." {
			return total, nil
		}
		f := strings.Split(line, "\t")
		if len(f) >= 4 && f[0] == fn {
			total, _ = strconv.Atoi(f[1])
		}
	}
}

func waitIdle(addr, fn string, poll time.Duration, deadline time.Time) (time.Time, error) {
	ac, err := dial(addr)
	if err != nil {
		return time.Time{}, err
	}
	defer ac.c.Close()
	for {
		q, err := queued(ac, fn)
		if err != nil {
			return time.Time{}, err
		}
		if q == 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("timeout with %d jobs left", q)
		}
		time.Sleep(poll)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:4730", "gearmand host:port")
	mode := flag.String("mode", "sync", "sync | bg | waitidle")
	fn := flag.String("func", "", "function name (default: gmbench_rev_PID with in-process workers, rev without)")
	workers := flag.Int("workers", 1, "in-process echo/reverse workers (0: an external worker serves -func)")
	clients := flag.Int("clients", 1, "concurrent client connections")
	n := flag.Int("n", 2000, "jobs per run (all clients together)")
	runs := flag.Int("runs", 5, "measured runs (median reported)")
	warm := flag.Int("warmup", 200, "jobs in one unmeasured warm-up run")
	data := flag.String("data", "hello zmws 12345\n", "job payload")
	poll := flag.Duration("poll", 2*time.Millisecond, "admin status poll interval (bg, waitidle)")
	maxTime := flag.Duration("maxtime", 60*time.Second, "hard bound on the whole program")
	flag.Parse()
	deadline := time.Now().Add(*maxTime)
	// A watchdog: whatever blocks, the program ends by itself.
	time.AfterFunc(*maxTime+5*time.Second, func() {
		fmt.Fprintln(os.Stderr, "gmbench: maxtime exceeded, exiting")
		os.Exit(3)
	})

	if *fn == "" {
		if *workers > 0 {
			*fn = fmt.Sprintf("gmbench_rev_%d", os.Getpid())
		} else {
			*fn = "rev"
		}
	}

	if *mode == "waitidle" {
		t0 := time.Now()
		t, err := waitIdle(*addr, *fn, *poll, deadline)
		if err != nil {
			fmt.Fprintln(os.Stderr, "waitidle:", err)
			os.Exit(1)
		}
		fmt.Printf("IDLE func=%s waited_s=%.3f unix_ns=%d\n", *fn, t.Sub(t0).Seconds(), t.UnixNano())
		return
	}

	stop := make(chan struct{})
	var done atomic.Int64
	if *workers > 0 {
		ready := make(chan error, *workers)
		for i := 0; i < *workers; i++ {
			go worker(*addr, *fn, stop, &done, ready)
		}
		for i := 0; i < *workers; i++ {
			if err := <-ready; err != nil {
				fmt.Fprintln(os.Stderr, "worker:", err)
				os.Exit(1)
			}
		}
		time.Sleep(50 * time.Millisecond) // let CAN_DO land before the first submit
	}
	payload := []byte(*data)
	want := string(reverse(payload))
	checkResult := *workers > 0 || *fn == "rev"

	// conns are opened once and reused across runs (like a long-lived client).
	conns := make([]*conn, *clients)
	for i := range conns {
		c, err := dial(*addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(1)
		}
		conns[i] = c
	}

	runSync := func(jobs int) (stats.Run, error) {
		lat := make([]time.Duration, jobs)
		var next atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		t0 := time.Now()
		for _, c := range conns {
			wg.Add(1)
			go func(c *conn) {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= jobs || time.Now().After(deadline) {
						return
					}
					s := time.Now()
					out, err := c.doSync(*fn, payload)
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					lat[i] = time.Since(s)
					if checkResult && string(out) != want {
						firstErr.CompareAndSwap(nil, fmt.Errorf("bad result %q", out))
						return
					}
				}
			}(c)
		}
		wg.Wait()
		el := time.Since(t0)
		if e := firstErr.Load(); e != nil {
			return stats.Run{}, e.(error)
		}
		kept := lat[:0]
		for _, d := range lat {
			if d > 0 {
				kept = append(kept, d)
			}
		}
		return stats.Run{Jobs: len(kept), Elapsed: el, P50: stats.Pct(kept, 50), P99: stats.Pct(kept, 99), Max: stats.Pct(kept, 100)}, nil
	}

	// runBG returns the submit-phase run (latency = per-submit round trip)
	// and the time from the first submit until the queue was empty.
	runBG := func(jobs int) (stats.Run, time.Duration, error) {
		lat := make([]time.Duration, jobs)
		var next atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		t0 := time.Now()
		for _, c := range conns {
			wg.Add(1)
			go func(c *conn) {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= jobs || time.Now().After(deadline) {
						return
					}
					s := time.Now()
					if err := c.submitBG(*fn, payload); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					lat[i] = time.Since(s)
				}
			}(c)
		}
		wg.Wait()
		sub := time.Since(t0)
		if e := firstErr.Load(); e != nil {
			return stats.Run{}, 0, e.(error)
		}
		t, err := waitIdle(*addr, *fn, *poll, deadline)
		if err != nil {
			return stats.Run{}, 0, err
		}
		kept := lat[:0]
		for _, d := range lat {
			if d > 0 {
				kept = append(kept, d)
			}
		}
		return stats.Run{Jobs: len(kept), Elapsed: sub, P50: stats.Pct(kept, 50), P99: stats.Pct(kept, 99), Max: stats.Pct(kept, 100)}, t.Sub(t0), nil
	}

	params := fmt.Sprintf("func=%s workers=%d clients=%d n=%d", *fn, *workers, *clients, *n)
	label := fmt.Sprintf("gearman-%s %s", *mode, params)
	var rs []stats.Run
	var total []float64
	for i := -1; i < *runs && time.Now().Before(deadline); i++ {
		jobs := *n
		if i < 0 {
			jobs = *warm
			if jobs <= 0 {
				continue
			}
		}
		switch *mode {
		case "sync":
			r, err := runSync(jobs)
			if err != nil {
				fmt.Fprintln(os.Stderr, "sync:", err)
				os.Exit(1)
			}
			if i >= 0 {
				fmt.Println(r.Line(label, i))
				rs = append(rs, r)
			}
		case "bg":
			r, all, err := runBG(jobs)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bg:", err)
				os.Exit(1)
			}
			if i >= 0 {
				fmt.Printf("%s done_s=%.3f done_jobs_per_s=%.0f\n", r.Line(label, i), all.Seconds(), float64(r.Jobs)/all.Seconds())
				rs = append(rs, r)
				total = append(total, float64(r.Jobs)/all.Seconds())
			}
		default:
			fmt.Fprintln(os.Stderr, "unknown -mode", *mode)
			os.Exit(2)
		}
	}
	fmt.Println(stats.Summary(label, rs))
	if *mode == "bg" {
		m, lo, hi := stats.MedMinMax(total)
		fmt.Printf("SUMMARY gearman-bg-done %s runs=%d done_jobs_per_s=%.0f [%.0f..%.0f]\n", params, len(total), m, lo, hi)
	}
	if *workers > 0 {
		fmt.Printf("INFO in-process workers completed %d jobs in total\n", done.Load())
	}
	close(stop)
}
