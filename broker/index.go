package broker

import (
	"encoding/binary"
	"iter"
)

// jobIndex finds the jobs in memory by ID. It holds every queued job, so it
// is kept small: a map keyed by the last 8 bytes of the ID (random bits in
// a ULID) takes 16 bytes an entry where a map[jobID]*job takes 24. A job
// whose last 8 bytes another job already has (rare, or a poor Entropy
// source) goes to a second map keyed by its whole ID. An ID is in one of the
// two maps at most.
type jobIndex struct {
	byTail map[uint64]*job
	clash  map[jobID]*job
}

func newJobIndex() jobIndex {
	return jobIndex{byTail: make(map[uint64]*job), clash: make(map[jobID]*job)}
}

func tail(id jobID) uint64 { return binary.BigEndian.Uint64(id[8:]) }

// get returns the job with id, or nil.
func (x *jobIndex) get(id jobID) *job {
	if j := x.byTail[tail(id)]; j != nil && j.id == id {
		return j
	}
	return x.clash[id]
}

// put adds j, or puts it in place of the job with its ID.
func (x *jobIndex) put(j *job) {
	t := tail(j.id)
	if other := x.byTail[t]; other != nil && other.id != j.id {
		x.clash[j.id] = j
		return
	}
	x.byTail[t] = j
	delete(x.clash, j.id) // if it clashed with a job now gone
}

// delete removes the job with id, if any.
func (x *jobIndex) delete(id jobID) {
	t := tail(id)
	if j := x.byTail[t]; j != nil && j.id == id {
		delete(x.byTail, t)
		return
	}
	delete(x.clash, id)
}

// len is the number of jobs held.
func (x *jobIndex) len() int { return len(x.byTail) + len(x.clash) }

// all yields every job, in no particular order.
func (x *jobIndex) all() iter.Seq[*job] {
	return func(yield func(*job) bool) {
		for _, j := range x.byTail {
			if !yield(j) {
				return
			}
		}
		for _, j := range x.clash {
			if !yield(j) {
				return
			}
		}
	}
}
