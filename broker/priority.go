package broker

import (
	"sort"

	"github.com/zmws/zmws/protocol"
)

// queue is a service's queued jobs: highest priority first, FIFO within a
// priority, with a job requeued at the head of its own priority (PushFront)
// keeping its place there. Each priority in use has its own deque; the
// common case, every job at priority 0, is one deque and costs what a
// plain FIFO does.
//
// Priorities are strict: while higher ones have jobs, lower ones wait, however
// long (docs/PROTOCOL.md, "Priorities").
type queue struct {
	levels []level // by priority, highest first; none is empty but the last left
	n      int
}

// level is the jobs of one priority, FIFO.
type level struct {
	prio int32
	q    deque
}

func (q *queue) Len() int { return q.n }

// level returns the deque of priority p, adding it if needed.
func (q *queue) level(p int32) *deque {
	if len(q.levels) == 1 && q.levels[0].prio == p { // the common case
		return &q.levels[0].q
	}
	i := sort.Search(len(q.levels), func(i int) bool { return q.levels[i].prio <= p })
	if i < len(q.levels) && q.levels[i].prio == p {
		return &q.levels[i].q
	}
	q.levels = append(q.levels, level{})
	copy(q.levels[i+1:], q.levels[i:])
	q.levels[i] = level{prio: p}
	return &q.levels[i].q
}

// PushBack puts j at the tail of its priority.
func (q *queue) PushBack(j *job) {
	q.level(j.priority()).PushBack(j)
	q.n++
}

// PushFront puts j at the head of its priority.
func (q *queue) PushFront(j *job) {
	q.level(j.priority()).PushFront(j)
	q.n++
}

// PopFront removes and returns the first job of the highest priority, or
// nil.
func (q *queue) PopFront() *job {
	for i := range q.levels {
		l := &q.levels[i]
		if l.q.Len() == 0 {
			continue
		}
		j := l.q.PopFront()
		q.n--
		if l.q.Len() == 0 {
			q.dropEmpty(i)
		}
		return j
	}
	return nil
}

// dropEmpty removes the empty level i, unless it is the only one (kept, with
// its buffer, for the next job).
func (q *queue) dropEmpty(i int) {
	if len(q.levels) == 1 {
		return
	}
	q.levels = append(q.levels[:i], q.levels[i+1:]...)
	q.levels[len(q.levels):cap(q.levels)][0] = level{} // let its buffer go
}

// At returns the i-th job in dispatch order.
func (q *queue) At(i int) *job {
	for k := range q.levels {
		if n := q.levels[k].q.Len(); i >= n {
			i -= n
			continue
		}
		return q.levels[k].q.At(i)
	}
	return nil
}

// Remove deletes j wherever it is and reports whether it was there. O(n).
func (q *queue) Remove(j *job) bool {
	for i := range q.levels {
		if q.levels[i].prio != j.priority() {
			continue
		}
		if !q.levels[i].q.Remove(j) {
			return false
		}
		q.n--
		if q.levels[i].q.Len() == 0 {
			q.dropEmpty(i)
		}
		return true
	}
	return false
}

// Priorities counts the queued jobs of each priority, highest first; nil
// when every queued job has priority 0 (or none is queued).
func (q *queue) Priorities() []protocol.PriorityCount {
	if q.n == 0 || len(q.levels) == 1 && q.levels[0].prio == 0 {
		return nil
	}
	out := make([]protocol.PriorityCount, 0, len(q.levels))
	for _, l := range q.levels {
		if l.q.Len() > 0 {
			out = append(out, protocol.PriorityCount{Priority: int(l.prio), Queued: l.q.Len()})
		}
	}
	return out
}

// priority returns j's priority (0 unless it was submitted with one).
func (j *job) priority() int32 {
	if j.x == nil {
		return 0
	}
	return j.x.priority
}
