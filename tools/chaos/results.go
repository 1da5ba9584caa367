package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zmws/zmws/protocol"
)

// run1 is one run of a job, as its command appended it.
type run1 struct {
	id      string
	attempt int
	worker  string  // zmws-run instance tag, w2.1
	at      float64 // /proc/uptime when it ended, in seconds
}

func (r run1) String() string {
	return fmt.Sprintf("attempt %d on %s ended at uptime %.2f", r.attempt, r.worker, r.at)
}

// kill is one kill -9.
type kill struct {
	broker bool
	name   string  // zmwsd#1, w2.1
	at     float64 // /proc/uptime just before the kill
	back   float64 // /proc/uptime when its replacement answered (broker)
}

// uptime reads /proc/uptime, the clock the jobs' command reads too.
func uptime() float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// resultsTail reads the results file as it grows.
type resultsTail struct {
	path string

	mu        sync.Mutex
	off       int64
	partial   []byte
	runs      map[string][]run1
	total     int
	malformed []string
}

// read takes in the lines appended since the last read.
func (t *resultsTail) read() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, err := os.Open(t.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	t.off += int64(len(b))
	b = append(t.partial, b...)
	end := bytes.LastIndexByte(b, '\n') + 1
	t.partial = append([]byte(nil), b[end:]...)
	for _, l := range strings.Split(string(b[:end]), "\n") {
		if l == "" {
			continue
		}
		f := strings.Fields(l)
		var (
			att  int
			at   float64
			err1 error
			err2 error
		)
		if len(f) == 4 {
			att, err1 = strconv.Atoi(f[1])
			at, err2 = strconv.ParseFloat(f[3], 64)
		}
		if len(f) != 4 || err1 != nil || err2 != nil || len(f[0]) != 26 {
			t.malformed = append(t.malformed, l)
			continue
		}
		t.runs[f[0]] = append(t.runs[f[0]], run1{id: f[0], attempt: att, worker: f[2], at: at})
		t.total++
	}
	return nil
}

func (t *resultsTail) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

func (t *resultsTail) runsOf(id string) []run1 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.runs[id]
}

// summarize counts what happened to each accepted job.
func (c *chaos) summarize(states map[string]protocol.JobInfo, tail *resultsTail, sum summary) summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	tail.mu.Lock()
	defer tail.mu.Unlock()
	sum.DupCauses = map[string]int{}
	sum.FailedWhy = map[string]int{}
	sum.Resends = int(c.resends.Load())
	sum.BrokerKills, sum.WorkerKills = c.brokerKills, c.workerKills
	accepted := map[string]bool{}
	inflight := c.inflight(tail)
	for i, id := range c.ids {
		if id == "" {
			continue
		}
		if accepted[id] {
			sum.Problems = append(sum.Problems, fmt.Sprintf("job ID %s handed out for two keys (job %d and another)", id, i))
			continue
		}
		accepted[id] = true
		sum.Accepted++
		st := states[id]
		runs := tail.runs[id]
		switch {
		case st.State == "failed":
			sum.Failed++
			sum.FailedWhy[st.Code+": "+st.Error]++
		case len(runs) == 0:
			sum.Lost++
			if len(sum.LostIDs) < 10 {
				sum.LostIDs = append(sum.LostIDs, fmt.Sprintf("%s (job %d, broker says %q)", id, i, st.State))
			}
		case st.State == "complete":
			sum.Completed++
		}
		if len(runs) > 1 {
			sum.Duplicated++
			extra := len(runs) - 1
			sum.ExtraRuns += extra
			// Each run cut short by a kill explains one run beyond the
			// first; worker kills first, as they are the surer guess.
			var byWorker, byBroker int
			for _, r := range runs {
				switch {
				case inflight[r]:
					byWorker++
				case c.brokerCut(r):
					byBroker++
				}
			}
			byWorker = min(byWorker, extra)
			byBroker = min(byBroker, extra-byWorker)
			sum.DupCauses["worker kill"] += byWorker
			sum.DupCauses["broker kill"] += byBroker
			if n := extra - byWorker - byBroker; n > 0 {
				sum.DupCauses["unexplained"] += n
				if len(sum.Unexplained) < 10 {
					sum.Unexplained = append(sum.Unexplained, unexplained{id, fmt.Sprintf("%s ran %d times: %v", id, len(runs), runs)})
				}
			}
		}
	}
	for id := range tail.runs {
		if !accepted[id] {
			sum.Unaccepted++
		}
	}
	if n := len(c.ids) - sum.Accepted; n > 0 {
		sum.Problems = append(sum.Problems, fmt.Sprintf("%d of %d submissions not accepted", n, len(c.ids)))
	}
	sum.Problems = append(sum.Problems, c.submitErrs[:min(len(c.submitErrs), 5)]...)
	if len(tail.malformed) > 0 {
		sum.Problems = append(sum.Problems, fmt.Sprintf("%d malformed lines in the results, first %q", len(tail.malformed), tail.malformed[0]))
	}
	sum.Problems = append(sum.Problems, c.ps.surprises()...)
	return sum
}

// inflight finds the runs that were in flight when their worker was kill
// -9'd: those that ended after the kill (orphans: a job's command has a
// process group of its own and lives on), and the last --concurrency ones
// that ended before it (done, but not yet reported to the broker; on a
// loaded machine that can take a while).
func (c *chaos) inflight(t *resultsTail) map[run1]bool {
	byWorker := map[string][]run1{}
	for _, runs := range t.runs {
		for _, r := range runs {
			byWorker[r.worker] = append(byWorker[r.worker], r)
		}
	}
	out := map[run1]bool{}
	for _, k := range c.kills {
		if k.broker {
			continue
		}
		runs := byWorker[k.name]
		slices.SortFunc(runs, func(a, b run1) int { return cmp.Compare(a.at, b.at) })
		before := 0
		for i := len(runs) - 1; i >= 0; i-- {
			// /proc/uptime has 10 ms steps: an orphan may seem to end
			// just before the kill.
			if runs[i].at >= k.at-0.01 {
				out[runs[i]] = true
			} else if before < c.cfg.Concurrency {
				out[runs[i]] = true
				before++
			} else {
				break
			}
		}
	}
	return out
}

// brokerCut says whether a run ended while a broker kill could cut it
// short: running when the broker died, or done so shortly before that its
// result may not have been committed, or ending before its worker found the
// new broker.
func (c *chaos) brokerCut(r run1) bool {
	const before, after = 2.0, 2.0 // seconds: a loaded machine is slow
	live := (c.cfg.Heartbeat * time.Duration(c.cfg.Liveness)).Seconds()
	for _, k := range c.kills {
		if k.broker && r.at >= k.at-before && r.at <= k.back+live+after {
			return true
		}
	}
	return false
}

// report prints the details and the summary line.
func (c *chaos) report(sum summary) {
	c.mu.Lock()
	refusals := fmt.Sprint(c.refusals)
	c.mu.Unlock()
	if refusals != "map[]" {
		c.logf("transient refusals, resent: %s", refusals)
	}
	if sum.Unaccepted > 0 {
		c.logf("%d job IDs ran that no client was given (dispatched before their record was committed, then the broker died; resent under the same key they became another job)", sum.Unaccepted)
	}
	whys := make([]string, 0, len(sum.FailedWhy))
	for why := range sum.FailedWhy {
		whys = append(whys, why)
	}
	slices.Sort(whys)
	for _, why := range whys {
		c.logf("FAILED x%d: %s", sum.FailedWhy[why], why)
	}
	if len(sum.Unexplained) > 0 {
		why := c.requeues()
		for _, u := range sum.Unexplained {
			c.logf("UNEXPLAINED duplicate: %s; broker log: %s", u.what, strings.Join(why[u.id], "; "))
		}
	}
	for _, l := range sum.LostIDs {
		c.logf("LOST %s", l)
	}
	for _, p := range sum.Problems {
		c.logf("PROBLEM: %s", p)
	}
	fmt.Fprintln(c.out, sum.line())
}

// unexplained is a duplicate no kill explains.
type unexplained struct{ id, what string }

// requeues reads the broker's log for the reasons it gave for requeueing
// jobs ("job requeued": a worker expired, unreachable, disconnected), by job.
func (c *chaos) requeues() map[string][]string {
	out := map[string][]string{}
	b, err := os.ReadFile(filepath.Join(c.logDir, "zmwsd.log"))
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, "job requeued") {
			continue
		}
		var e struct {
			Job     string `json:"job"`
			Attempt int    `json:"attempt"`
			Reason  string `json:"reason"`
			Time    string `json:"time"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Job != "" {
			out[e.Job] = append(out[e.Job], fmt.Sprintf("%s attempt %d requeued: %s", e.Time, e.Attempt, e.Reason))
		}
	}
	return out
}
