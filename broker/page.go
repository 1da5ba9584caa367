package broker

import (
	"container/heap"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/zmws/zmws/protocol"
)

// The paged listings, SERVER-SERVICES and SERVER-JOBS, answer one page per
// request: at most Meta.Limit entries after the cursor Meta.After, and the
// cursor of the next page in the reply's Meta.Next. Cursors are stable as
// entries come and go: a page goes on from the entry its cursor names, not
// from an offset, so a walk of every page sees each entry that was there for
// the whole walk exactly once.
//
//	SERVER-SERVICES  by name; the cursor is the last name of the page
//	SERVER-JOBS      newest finished first; the cursor is "SEQ.ID": the
//	                 last job's sequence number in the history and its ID

// pageLimit reads a request's page size: def for 0, at most max. A negative
// limit is refused (ok false).
func (b *Broker) pageLimit(r request, limit, def, max int) (n int, ok bool) {
	switch {
	case limit < 0:
		b.refuse(r, protocol.CodeBadRequest, fmt.Sprintf("%s: limit %d: want a page size from 1 to %d (none or 0: %d)", r.service, limit, max, def))
		return 0, false
	case limit == 0:
		return def, true
	}
	return min(limit, max), true
}

// answerPage replies with a page's payload and, when there is one, the
// cursor of the next page. A stock client (no meta frame) gets the payload
// alone: the first page, since it cannot ask for another.
func (b *Broker) answerPage(r request, payload []byte, next string) {
	if !r.meta {
		b.replyClient(r, protocol.CmdReply, payload)
		return
	}
	b.replyClient(r, protocol.CmdReply, protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete, Next: next, Ref: r.ref}), payload)
}

// encodePage encodes items as a JSON array (the bytes json.Marshal writes
// for the slice), stopping after the item that takes it past
// protocol.MaxPageBytes. n is how many items it holds.
func encodePage[T any](items []T) (payload []byte, n int) {
	payload = append(make([]byte, 0, 256*len(items)+2), '[')
	for n < len(items) {
		if n > 0 {
			if len(payload) >= protocol.MaxPageBytes {
				break
			}
			payload = append(payload, ',')
		}
		payload = append(payload, mustJSON(items[n])...)
		n++
	}
	return append(payload, ']'), n
}

// servicesPage answers SERVER-SERVICES: the services named after
// meta.After, by name, that r's key may use. Filtering comes before paging,
// so a page is full and its cursor names a service the key may see.
func (b *Broker) servicesPage(r request, meta protocol.Meta) {
	limit, ok := b.pageLimit(r, meta.Limit, protocol.DefaultServicesPage, protocol.MaxServicesPage)
	if !ok {
		return
	}
	filter := b.cfg.Access != nil && r.user != "" && !b.cfg.Access.MayAdmin(r.user)
	// The limit+1 first names after the cursor, in a max-heap: one more
	// than the page says whether a next page exists. This costs a pass over
	// the services, but no sort of them all.
	h := make(serviceHeap, 0, min(limit+1, len(b.services)))
	for name, s := range b.services {
		if name <= meta.After || (len(h) > limit && name >= h[0].name) {
			continue
		}
		if filter && !b.mayUse(r.user, name) {
			continue
		}
		if len(h) <= limit {
			heap.Push(&h, s)
			continue
		}
		h[0] = s
		heap.Fix(&h, 0)
	}
	slices.SortFunc(h, func(a, c *service) int { return strings.Compare(a.name, c.name) })
	more := len(h) > limit
	page := make([]protocol.ServiceInfo, 0, min(len(h), limit))
	for _, s := range h[:min(len(h), limit)] {
		page = append(page, s.info())
	}
	payload, n := encodePage(page)
	next := ""
	if more || n < len(page) {
		next = page[n-1].Name
	}
	b.answerPage(r, payload, next)
}

// serviceHeap is a max-heap of services by name (container/heap).
type serviceHeap []*service

func (h serviceHeap) Len() int           { return len(h) }
func (h serviceHeap) Less(i, k int) bool { return h[i].name > h[k].name }
func (h serviceHeap) Swap(i, k int)      { h[i], h[k] = h[k], h[i] }
func (h *serviceHeap) Push(x any)        { *h = append(*h, x.(*service)) }
func (h *serviceHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// jobsPage answers SERVER-JOBS: the retained finished jobs, newest first,
// that finished before the job of the cursor meta.After.
func (b *Broker) jobsPage(r request, meta protocol.Meta) {
	limit, ok := b.pageLimit(r, meta.Limit, protocol.DefaultJobsPage, protocol.MaxJobsPage)
	if !ok {
		return
	}
	n := len(b.history)
	// rank k is the k-th newest job in the ring (1: the newest); its
	// sequence number is histSeq-k+1.
	first := 1
	if meta.After != "" {
		k, ok := b.jobCursorRank(meta.After)
		if !ok {
			b.refuse(r, protocol.CodeBadRequest, fmt.Sprintf("%s: after %q is not a cursor of this broker's (give the next of the page before; a cursor does not outlive a restart of the broker): start again from the first page",
				r.service, printable([]byte(meta.After))))
			return
		}
		first = k + 1
	}
	last := min(n, first+limit-1)
	page := make([]protocol.JobInfo, 0, max(0, last-first+1))
	for k := first; k <= last; k++ {
		page = append(page, b.history[(b.histNext-k+n)%n].info(false))
	}
	payload, got := encodePage(page)
	next := ""
	if last < n || got < len(page) {
		k := first + got - 1
		next = jobCursor(b.histSeq-uint64(k)+1, page[got-1].ID)
	}
	b.answerPage(r, payload, next)
}

// jobCursor is the SERVER-JOBS cursor of the job with sequence number seq.
func jobCursor(seq uint64, id string) string {
	return strconv.FormatUint(seq, 10) + "." + id
}

// jobCursorRank finds the rank of a SERVER-JOBS cursor's job. A job that
// has left the ring ranks past its end (an empty page follows: every job
// older than it has left too); ok is false for a cursor this broker did not
// give, such as one from before a restart, whose sequence numbers name other
// jobs.
func (b *Broker) jobCursorRank(cursor string) (k int, ok bool) {
	s, id, found := strings.Cut(cursor, ".")
	seq, err := strconv.ParseUint(s, 10, 64)
	if !found || err != nil || seq == 0 || seq > b.histSeq {
		return 0, false
	}
	n := len(b.history)
	rank := b.histSeq - seq + 1
	if rank > uint64(n) {
		return n, true
	}
	k = int(rank)
	return k, b.history[(b.histNext-k+n)%n].id.String() == id
}

// info describes s for SERVER-SERVICES.
func (s *service) info() protocol.ServiceInfo {
	return protocol.ServiceInfo{
		Name:        s.name,
		Queued:      s.queue.Len(),
		Scheduled:   s.scheduled,
		Active:      s.active,
		WorkersIdle: len(s.idle),
		WorkersBusy: s.workers - len(s.idle),
		Completed:   s.completed,
		Failed:      s.failed,
		FirstSeen:   s.firstSeen,
		LastSeen:    s.lastSeen,
		Paused:      s.paused,
		Draining:    s.draining,
	}
}
