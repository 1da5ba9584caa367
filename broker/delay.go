package broker

import (
	"container/heap"
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

// dueHeap is a min-heap of entries by before (container/heap). Its
// push, pop and removeAt keep the entries unboxed: no allocation.
type dueHeap []due

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, k int) bool { return h[i].before(h[k]) }
func (h dueHeap) Swap(i, k int)      { h[i], h[k] = h[k], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(due)) }

// Pop drops the last entry (heap.Pop and heap.Remove moved the one they
// take there); the callers read it before.
func (h *dueHeap) Pop() any {
	s := *h
	s[len(s)-1] = due{}
	*h = s[:len(s)-1]
	return nil
}

func (h *dueHeap) push(d due) {
	*h = append(*h, d)
	heap.Fix(h, len(*h)-1)
}

// pop removes the earliest entry; the heap must not be empty.
func (h *dueHeap) pop() due {
	d := (*h)[0]
	heap.Pop(h)
	h.release()
	return d
}

// removeAt removes the entry at index i.
func (h *dueHeap) removeAt(i int) {
	heap.Remove(h, i)
	h.release()
}

// release lets a large, now empty, array go.
func (h *dueHeap) release() {
	if len(*h) == 0 && cap(*h) > 1024 {
		*h = nil
	}
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

func (f *frontier) Len() int           { return len(f.idx) }
func (f *frontier) Less(i, k int) bool { return f.h[f.idx[i]].before(f.h[f.idx[k]]) }
func (f *frontier) Swap(i, k int)      { f.idx[i], f.idx[k] = f.idx[k], f.idx[i] }
func (f *frontier) Push(x any)         { f.idx = append(f.idx, x.(int)) }
func (f *frontier) Pop() any           { f.idx = f.idx[:len(f.idx)-1]; return nil }

func (f *frontier) push(i int) {
	f.idx = append(f.idx, i)
	heap.Fix(f, len(f.idx)-1)
}

func (f *frontier) pop() int {
	top := f.idx[0]
	heap.Pop(f)
	return top
}

// scheduledJobsByPass is scheduledJobs in one pass over the whole heap
// (O(n log maxQueueIDs)).
func (b *Broker) scheduledJobsByPass() map[*service][]protocol.ScheduledJob {
	// Per service, a max-heap of its earliest entries so far.
	best := make(map[*service]*latestFirst)
	for _, d := range b.delayed {
		if d.j.state != stateScheduled {
			continue
		}
		h := best[d.j.svc]
		if h == nil {
			h = &latestFirst{}
			best[d.j.svc] = h
		}
		switch {
		case len(h.dueHeap) < maxQueueIDs:
			h.dueHeap = append(h.dueHeap, d)
			heap.Fix(h, len(h.dueHeap)-1)
		case d.before(h.dueHeap[0]):
			h.dueHeap[0] = d
			heap.Fix(h, 0)
		}
	}
	out := make(map[*service][]protocol.ScheduledJob, len(best))
	for s, h := range best {
		list := make([]protocol.ScheduledJob, len(h.dueHeap))
		for i := len(h.dueHeap) - 1; i >= 0; i-- { // the latest first
			d := h.dueHeap[0]
			heap.Pop(h)
			list[i] = protocol.ScheduledJob{ID: d.j.id.String(), At: d.at.Time()}
		}
		out[s] = list
	}
	return out
}

// latestFirst is a max-heap of entries by before: dueHeap reversed.
type latestFirst struct{ dueHeap }

func (h latestFirst) Less(i, k int) bool { return h.dueHeap.Less(k, i) }
