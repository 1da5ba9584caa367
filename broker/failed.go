package broker

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/zmws/zmws/protocol"
)

// Failed jobs, listed and retried in bulk. SERVER-JOBS and SERVER-RETRY
// with the param state=failed (protocol.ParamState) work on the failed
// jobs, newest first by finish time, filtered by service, owner and finish
// time. With Config.Archived the journal answers (a Lookup carrying a
// FailedQuery, answered off the loop like any other: see Lookup), so the
// listing reaches past the history; without one, the history answers.
//
// A bulk retry queues again at most protocol.MaxRetryBatch jobs a request,
// each as SERVER-RETRY would (a fresh budget of attempts; sync jobs and
// jobs of forgotten services refused), and answers a protocol.RetryReport
// with the cursor of the next batch: retrying a million jobs is a thousand
// requests, none holding the loop for more than one batch. A retried job
// leaves the failed jobs, and one that fails again meanwhile finishes
// after the cursor, so no job is retried twice in one walk.
//
// Rights: a key that may administer (or none: a trusted peer) sees and
// retries every failed job; any other key only the jobs it submitted.

// FailedQuery selects failed jobs in an Archive, newest first by finish
// time, then ID.
type FailedQuery struct {
	Service string    // only this service's jobs; "" for any
	Owner   string    // only the jobs of this owner; "" for any
	Since   time.Time // only jobs that finished at or after it; zero for any
	// After is a cursor (FailedCursor): only the jobs after it, which
	// finished before the job it names. "" starts with the newest.
	After string
	Limit int // the most jobs a page holds; at least 1
}

// FailedPage is an Archive's page of failed jobs.
type FailedPage struct {
	Jobs []JobRecord // newest first, without their output (Output nil)
	// Next is the cursor after the last of Jobs when more may follow; ""
	// when none does.
	Next string
}

// FailedArchive is an Archive that can list its failed jobs; package
// store's journals are. Against an Archive that is not, a listing of
// failed jobs fails with protocol.CodeStoreUnavailable.
type FailedArchive interface {
	Archive
	// Failed returns a page of the failed jobs q selects. It may block
	// on I/O, as the Archive's other methods.
	Failed(q FailedQuery) (FailedPage, error)
}

// FinishStamp is a finish time as the failed jobs are ordered:
// nanoseconds since the Unix epoch, clamped to [1970, 2262].
func FinishStamp(t time.Time) uint64 {
	switch s := t.Unix(); {
	case s < 0:
		return 0
	case s >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// FailedCursor is the cursor of a failed job: its finish stamp
// (FinishStamp) in 16 hex digits, a dot, and its ID.
func FailedCursor(stamp uint64, id string) string {
	return fmt.Sprintf("%016x.%s", stamp, id)
}

// ParseFailedCursor splits a cursor made by FailedCursor.
func ParseFailedCursor(c string) (stamp uint64, id string, ok bool) {
	if len(c) < 18 || c[16] != '.' {
		return 0, "", false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(c[:16])); err != nil {
		return 0, "", false
	}
	for _, x := range b {
		stamp = stamp<<8 | uint64(x)
	}
	return stamp, c[17:], true
}

// failedOp is a request for failed jobs being answered.
type failedOp struct {
	q     FailedQuery
	retry bool // SERVER-RETRY: queue them again
}

// failedQuery answers SERVER-JOBS and SERVER-RETRY when they carry the
// param state, and reports whether it did; the caller answers the rest.
// It comes before the rights of the other SERVER-* services: any key may
// ask for its own failed jobs.
func (b *Broker) failedQuery(now time.Time, r request, meta protocol.Meta, body [][]byte) bool {
	if r.service != protocol.ServerJobs && r.service != protocol.ServerRetry {
		return false
	}
	st, ok := meta.Params[protocol.ParamState]
	if !ok {
		return false
	}
	if r.service == protocol.ServerRetry && len(body) > 0 && len(body[0]) > 0 {
		b.refuse(r, protocol.CodeBadRequest, "SERVER-RETRY takes a job ID frame or the param state=failed, not both")
		return true
	}
	if st != protocol.JobFailed {
		b.refuse(r, protocol.CodeBadRequest, fmt.Sprintf("%s: param state=%q: only %q is listed here", r.service, printable([]byte(st)), protocol.JobFailed))
		return true
	}
	op := failedOp{retry: r.service == protocol.ServerRetry}
	q := &op.q
	q.Service = meta.Params[protocol.ParamService]
	q.After = meta.After
	if s, ok := meta.Params[protocol.ParamSince]; ok {
		t, err := parseSince(now, s)
		if err != nil {
			b.refuse(r, protocol.CodeBadRequest, fmt.Sprintf("%s: param since=%q: %v", r.service, printable([]byte(s)), err))
			return true
		}
		q.Since = t
	}
	if q.After != "" {
		if _, _, ok := ParseFailedCursor(q.After); !ok {
			b.refuse(r, protocol.CodeBadRequest, fmt.Sprintf("%s: after %q is not a cursor of failed jobs (give the next of the page before)", r.service, printable([]byte(q.After))))
			return true
		}
	}
	// A key sees its own jobs; an admin (or a trusted peer) any, or
	// those of the owner it names.
	q.Owner = meta.Params[protocol.ParamOwner]
	if b.cfg.Access != nil && r.user != "" && !b.cfg.Access.MayAdmin(r.user) {
		q.Owner = r.user
	}
	def, mx := protocol.DefaultJobsPage, protocol.MaxJobsPage
	if op.retry {
		def, mx = protocol.DefaultRetryBatch, protocol.MaxRetryBatch
	}
	if q.Limit, ok = b.pageLimit(r, meta.Limit, def, mx); !ok {
		return true
	}
	if !b.cfg.Archived {
		b.answerFailed(now, r, op, b.historyFailed(op.q))
		return true
	}
	b.ask("", "", waiting{op: opFailed, r: r, failed: &op})
	return true
}

// parseSince reads the param since: an RFC 3339 time, or a duration before now.
func parseSince(now time.Time, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time (2026-01-02T15:04:05Z) or a positive duration such as 1h")
	}
	return now.Add(-d), nil
}

// historyFailed answers q from the history ring: the failed jobs it holds
// that are still failed (a retried job's failed run stays in the ring).
func (b *Broker) historyFailed(q FailedQuery) FailedPage {
	type entry struct {
		stamp uint64
		j     *job
	}
	var all []entry
	since := FinishStamp(q.Since)
	for _, j := range b.history {
		if j.state != stateFailed || b.lookup(j.id.String()) != j || !j.selected(q) {
			continue
		}
		if s := FinishStamp(j.lastRun().finished); q.Since.IsZero() || s >= since {
			all = append(all, entry{s, j})
		}
	}
	slices.SortFunc(all, func(x, y entry) int {
		if c := cmp.Compare(y.stamp, x.stamp); c != 0 {
			return c
		}
		return strings.Compare(y.j.id.String(), x.j.id.String())
	})
	if q.After != "" {
		stamp, id, _ := ParseFailedCursor(q.After)
		i := 0
		for i < len(all) && (all[i].stamp > stamp || all[i].stamp == stamp && all[i].j.id.String() >= id) {
			i++
		}
		all = all[i:]
	}
	var p FailedPage
	for _, e := range all[:min(len(all), q.Limit)] {
		p.Jobs = append(p.Jobs, *e.j.record())
	}
	if len(all) > q.Limit {
		p.Next = FailedCursor(all[q.Limit-1].stamp, all[q.Limit-1].j.id.String())
	}
	return p
}

// selected reports whether j passes q's service and owner.
func (j *job) selected(q FailedQuery) bool {
	return (q.Service == "" || j.svc.name == q.Service) && (q.Owner == "" || j.owner() == q.Owner)
}

// answerFailed answers a request for failed jobs with page, looking in
// memory again first: a job the broker holds is as it is now, and left out
// (or refused, for a retry) when it is no longer failed.
func (b *Broker) answerFailed(now time.Time, r request, op failedOp, page FailedPage) {
	if !op.retry {
		list := make([]protocol.JobInfo, 0, len(page.Jobs))
		var last []int // index in page.Jobs of each entry of list
		for i := range page.Jobs {
			rec := &page.Jobs[i]
			if j := b.lookup(rec.ID); j != nil {
				if j.state != stateFailed || !j.selected(op.q) {
					continue
				}
				list = append(list, j.info(false))
			} else {
				info := recordInfo(rec)
				info.Output, info.OutputTruncated = nil, false
				list = append(list, info)
			}
			last = append(last, i)
		}
		payload, n := encodePage(list)
		next := page.Next
		if n < len(list) {
			rec := &page.Jobs[last[n-1]]
			next = FailedCursor(FinishStamp(rec.Finished), rec.ID)
		}
		b.answerPage(r, payload, next)
		return
	}
	rep := protocol.RetryReport{Jobs: []string{}, Refused: []protocol.RetryRefusal{}}
	var touched []*service
	for i := range page.Jobs {
		rec := &page.Jobs[i]
		j := b.lookup(rec.ID)
		if j == nil {
			j = b.archivedJob(now, rec)
		}
		if j != nil && op.q.Owner != "" && j.owner() != op.q.Owner {
			rep.Refused = append(rep.Refused, protocol.RetryRefusal{ID: rec.ID, Code: protocol.CodeForbidden, Error: "not a job of this key's"})
			continue
		}
		n, code, text := b.requeue(now, rec.ID, j)
		if n == nil {
			rep.Refused = append(rep.Refused, protocol.RetryRefusal{ID: rec.ID, Code: code, Error: text})
			if code == protocol.CodeQueueFull {
				// The rest would be refused too: stop, with no next.
				rep.Stopped, page.Next = text+": retry again once it drains", ""
				break
			}
			continue
		}
		rep.Requeued++
		rep.Jobs = append(rep.Jobs, rec.ID)
		if !slices.Contains(touched, n.svc) {
			touched = append(touched, n.svc)
		}
	}
	for _, s := range touched {
		b.dispatch(now, s)
	}
	b.log.Info().Str(keyService, op.q.Service).Int("requeued", rep.Requeued).Int("refused", len(rep.Refused)).
		Str(keyKey, b.keyName(r.user)).Msg("failed jobs queued again by request")
	payload := mustJSON(rep)
	if r.meta {
		b.replyClient(r, protocol.CmdReply, protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete, Next: page.Next, Ref: r.ref}), payload)
	} else {
		b.replyClient(r, protocol.CmdReply, payload)
	}
	if b.cfg.Durable && rep.Requeued > 0 {
		b.hold(&r)
	}
}
