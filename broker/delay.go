package broker

import (
	"fmt"
	"math"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Delayed jobs. A job submitted with a delay (meta delay_ms or at) is
// scheduled: it waits, journaled with its time as NotBefore, and is queued
// at the back of its priority when the time comes, never before. A failed
// job waiting for its retry (retryLater) waits the same way, in state
// queued. Both are in Broker.delayed, a min-heap of small entries: a
// scheduled job costs what a queued one does plus its 16-byte entry, and an
// insert is O(log n).

// due is one entry of the delayed heap: job j waits until at.
type due struct {
	at stamp
	j  *job
}

// before orders entries by time, then by job ID (submission order), so
// jobs due at the same instant are queued in the order they came.
func (d due) before(e due) bool {
	if d.at != e.at {
		return d.at < e.at
	}
	return d.j.id.less(e.j.id)
}

// less reports whether id sorts before o (the ULIDs' byte order: creation
// time first).
func (id jobID) less(o jobID) bool {
	for i := range id {
		if id[i] != o[i] {
			return id[i] < o[i]
		}
	}
	return false
}

// dueHeap is a binary min-heap of entries by before.
type dueHeap []due

func (h *dueHeap) push(d due) {
	*h = append(*h, d)
	h.up(len(*h) - 1)
}

// pop removes the earliest entry; the heap must not be empty.
func (h *dueHeap) pop() due {
	d := (*h)[0]
	h.removeAt(0)
	return d
}

// removeAt removes the entry at index i.
func (h *dueHeap) removeAt(i int) {
	s := *h
	n := len(s) - 1
	if i != n {
		s[i] = s[n]
	}
	s[n] = due{}
	*h = s[:n]
	if i < n {
		if !h.down(i) {
			h.up(i)
		}
	}
	if n == 0 && cap(s) > 1024 {
		*h = nil // release a large, now empty, array
	}
}

func (h dueHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].before(h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

// down sifts entry i down and reports whether it moved.
func (h dueHeap) down(i int) bool {
	start := i
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if r := c + 1; r < len(h) && h[r].before(h[c]) {
			c = r
		}
		if !h[c].before(h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	return i > start
}

// index returns the index of j's entry, or -1. O(n): for rare operations
// (a cancel, a refused commit, a lookup of one scheduled job).
func (h dueHeap) index(j *job) int {
	for i := range h {
		if h[i].j == j {
			return i
		}
	}
	return -1
}

// delay keeps j, a retry backing off, in the delayed heap until its
// run's notBefore.
func (b *Broker) delay(j *job) {
	b.delayed.push(due{at: stampOf(j.lastRun().notBefore), j: j})
}

// delayUntil makes j, a new job, wait until at (state scheduled; not to
// be confused with a recurring schedule, schedule.go).
func (b *Broker) delayUntil(now time.Time, j *job, at time.Time) {
	b.moveJob(now, j, stateScheduled)
	b.delayed.push(due{at: stampOf(at), j: j})
}

// undelay takes j out of the delayed heap and reports whether it was there.
func (b *Broker) undelay(j *job) bool {
	i := b.delayed.index(j)
	if i < 0 {
		return false
	}
	b.delayed.removeAt(i)
	return true
}

// nextRetry is when the earliest delayed job (scheduled, or a retry) is due,
// or zero: Deadline includes it, so the loop wakes for it.
func (b *Broker) nextRetry() time.Time {
	if len(b.delayed) == 0 {
		return time.Time{}
	}
	return b.delayed[0].at.Time()
}

// retryDue queues the delayed jobs whose time has come, in time order, at
// the back of their priority.
func (b *Broker) retryDue(now time.Time) {
	t := stampOf(now)
	for len(b.delayed) > 0 && b.delayed[0].at <= t {
		j := b.delayed.pop().j
		if j.state == stateScheduled {
			b.moveJob(now, j, stateQueued)
			b.event(now, protocol.EventQueued, j, nil)
		}
		j.svc.queue.PushBack(j)
		b.dispatch(now, j.svc)
	}
}

// scheduledAt is when j, a scheduled job, is due: found in newAt for a
// job just submitted (its record is written then, once), else in the heap.
func (b *Broker) scheduledAt(j *job) time.Time {
	if at, ok := b.newAt[j]; ok {
		return at.Time()
	}
	if i := b.delayed.index(j); i >= 0 {
		return b.delayed[i].at.Time()
	}
	return time.Time{}
}

// jobInfo is j.info with the time a scheduled job waits for.
func (b *Broker) jobInfo(j *job, withOutput bool) protocol.JobInfo {
	ji := j.info(withOutput)
	if j.state == stateScheduled {
		if t := b.scheduledAt(j); !t.IsZero() {
			ji.NotBefore = &t
		}
	}
	return ji
}

// jobOptions reads a submission's priority and time (meta priority,
// delay_ms, at): the time is zero for a job to queue now. An error names
// the meta field at fault.
func jobOptions(now time.Time, meta protocol.Meta, sync bool) (prio int32, at time.Time, err error) {
	if meta.Priority < math.MinInt32 || meta.Priority > math.MaxInt32 {
		return 0, time.Time{}, fmt.Errorf("meta priority %d: want an integer from %d to %d", meta.Priority, math.MinInt32, math.MaxInt32)
	}
	prio = int32(meta.Priority)
	switch {
	case meta.DelayMillis < 0:
		return 0, time.Time{}, fmt.Errorf("meta delay_ms %d: want a delay of 0 or more milliseconds", meta.DelayMillis)
	case meta.DelayMillis > 0 && meta.At != "":
		return 0, time.Time{}, fmt.Errorf("meta delay_ms and at: give one of them, not both")
	case meta.DelayMillis > protocol.MaxDelay.Milliseconds():
		return 0, time.Time{}, fmt.Errorf("meta delay_ms %d: more than the maximum of %d (%v)", meta.DelayMillis, protocol.MaxDelay.Milliseconds(), protocol.MaxDelay)
	case meta.DelayMillis > 0:
		at = now.Add(time.Duration(meta.DelayMillis) * time.Millisecond)
	case meta.At != "":
		t, perr := time.Parse(time.RFC3339Nano, meta.At)
		if perr != nil {
			return 0, time.Time{}, fmt.Errorf("meta at %q: want an RFC 3339 time such as 2026-12-02T03:00:00Z", meta.At)
		}
		if t.Sub(now) > protocol.MaxDelay {
			return 0, time.Time{}, fmt.Errorf("meta at %s: more than %v ahead", meta.At, protocol.MaxDelay)
		}
		at = t
	}
	if !at.IsZero() && sync {
		field := "delay_ms"
		if meta.At != "" {
			field = "at"
		}
		return 0, time.Time{}, fmt.Errorf("meta %s: a sync job cannot be delayed (submit it without SYNC- to get a job ID)", field)
	}
	if !at.After(now) {
		at = time.Time{} // due already: queued now
	}
	return prio, at, nil
}

// scheduledJobs lists up to maxQueueIDs scheduled jobs of each service, the
// earliest first. It walks the delayed heap best first (the entries come out
// in time order), which for the usual few services ends after about as many
// entries as it lists; when the walk goes on long (a service's jobs far
// behind another's), one pass over the whole heap finishes it.
func (b *Broker) scheduledJobs() map[*service][]protocol.ScheduledJob {
	want := 0 // entries still to find
	for _, s := range b.services {
		want += min(s.scheduled, maxQueueIDs)
	}
	if want == 0 {
		return nil
	}
	out := make(map[*service][]protocol.ScheduledJob)
	budget := 8 * want // pops before the walk gives up for the full pass
	front := frontier{h: b.delayed}
	front.push(0)
	for want > 0 && len(front.idx) > 0 {
		if budget--; budget < 0 {
			return b.scheduledJobsByPass()
		}
		i := front.pop()
		if d := b.delayed[i]; d.j.state == stateScheduled && len(out[d.j.svc]) < maxQueueIDs {
			out[d.j.svc] = append(out[d.j.svc], protocol.ScheduledJob{ID: d.j.id.String(), At: d.at.Time()})
			want--
		}
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(b.delayed) {
				front.push(c)
			}
		}
	}
	return out
}

// frontier is a min-heap of indices into a dueHeap, by their entries: the
// walk's next candidates (an entry is due no earlier than its parent).
type frontier struct {
	h   dueHeap
	idx []int
}

func (f *frontier) push(i int) {
	f.idx = append(f.idx, i)
	for k := len(f.idx) - 1; k > 0; {
		p := (k - 1) / 2
		if !f.h[f.idx[k]].before(f.h[f.idx[p]]) {
			break
		}
		f.idx[k], f.idx[p] = f.idx[p], f.idx[k]
		k = p
	}
}

func (f *frontier) pop() int {
	top := f.idx[0]
	n := len(f.idx) - 1
	f.idx[0] = f.idx[n]
	f.idx = f.idx[:n]
	for k := 0; ; {
		c := 2*k + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && f.h[f.idx[r]].before(f.h[f.idx[c]]) {
			c = r
		}
		if !f.h[f.idx[c]].before(f.h[f.idx[k]]) {
			break
		}
		f.idx[k], f.idx[c] = f.idx[c], f.idx[k]
		k = c
	}
	return top
}

// scheduledJobsByPass is scheduledJobs in one pass over the whole heap
// (O(n log maxQueueIDs)).
func (b *Broker) scheduledJobsByPass() map[*service][]protocol.ScheduledJob {
	// Per service, a max-heap of its earliest entries so far.
	best := make(map[*service]dueHeap)
	for _, d := range b.delayed {
		if d.j.state != stateScheduled {
			continue
		}
		h := best[d.j.svc]
		switch {
		case len(h) < maxQueueIDs:
			h = append(h, d)
			maxUp(h, len(h)-1)
		case d.before(h[0]):
			h[0] = d
			maxDown(h, 0)
		}
		best[d.j.svc] = h
	}
	out := make(map[*service][]protocol.ScheduledJob, len(best))
	for s, h := range best {
		list := make([]protocol.ScheduledJob, len(h))
		for i := len(h) - 1; i >= 0; i-- { // popping the latest first
			d := h[0]
			h[0] = h[i]
			h = h[:i]
			maxDown(h, 0)
			list[i] = protocol.ScheduledJob{ID: d.j.id.String(), At: d.at.Time()}
		}
		out[s] = list
	}
	return out
}

// maxUp and maxDown keep h a max-heap by before.
func maxUp(h dueHeap, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h[p].before(h[i]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func maxDown(h dueHeap, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if r := c + 1; r < len(h) && h[c].before(h[r]) {
			c = r
		}
		if !h[i].before(h[c]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
