package broker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// zquery is a SERVER-* request with meta m.
func zquery(service string, m protocol.Meta, body ...string) [][]byte {
	frames := [][]byte{protocol.EncodeMeta(m)}
	for _, b := range body {
		frames = append(frames, []byte(b))
	}
	return request(v2, service, frames...)
}

func failedParams(kv ...string) map[string]string {
	p := map[string]string{protocol.ParamState: protocol.JobFailed}
	for i := 0; i+1 < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	return p
}

// failJobs submits n jobs to service, which worker w (ready for it) fails
// one by one, a second apart from at; it returns their IDs, oldest first.
func failJobs(t *testing.T, b *broker.Broker, w, service string, n int, at time.Time) []string {
	t.Helper()
	var ids []string
	for i := range n {
		now := at.Add(time.Duration(i) * time.Second)
		id, _, _ := dispatched(t, one(t, b.HandleClient(now, "c", "", zreq(service, nil, "in")), protocol.ToWorker, w))
		b.HandleWorker(now, w, "", final(id, protocol.Meta{Status: protocol.StatusFailed, Code: protocol.CodeJobFailed, Error: "boom"}))
		ids = append(ids, id)
	}
	return ids
}

// failedPage decodes a SERVER-JOBS reply: the IDs and the next cursor.
func failedPage(t *testing.T, e protocol.Envelope) ([]string, string) {
	t.Helper()
	_, md, rest := clientReply(t, e)
	if md.Status != protocol.StatusComplete || len(rest) != 1 {
		t.Fatalf("want a page, got %+v %q", md, rest)
	}
	var jobs []protocol.JobInfo
	if err := json.Unmarshal(rest[0], &jobs); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range jobs {
		if j.State != protocol.JobFailed || j.Code != protocol.CodeJobFailed || j.Finished == nil {
			t.Errorf("listed %+v", j)
		}
		ids = append(ids, j.ID)
	}
	return ids, md.Next
}

func retryReport(t *testing.T, e protocol.Envelope) (protocol.RetryReport, string) {
	t.Helper()
	_, md, rest := clientReply(t, e)
	if md.Status != protocol.StatusComplete || len(rest) != 1 {
		t.Fatalf("want a retry report, got %+v %q", md, rest)
	}
	var rep protocol.RetryReport
	if err := json.Unmarshal(rest[0], &rep); err != nil {
		t.Fatal(err)
	}
	return rep, md.Next
}

func newest(ids ...[]string) []string {
	var all []string
	for _, s := range ids {
		all = append(all, s...)
	}
	slices.Reverse(all)
	return all
}

// Without a journal, the failed jobs of the history are listed, newest
// first and paged, and retried in bulk by service; a retried job leaves
// the listing.
func TestBroker_FailedFromHistory(t *testing.T) {
	b := newBroker(t, broker.Config{History: 10})
	b.HandleWorker(t0, "ws", "", readyZ("S"))
	b.HandleWorker(t0, "wt", "", readyZ("T"))
	s := failJobs(t, b, "ws", "S", 3, at(time.Second))
	tt := failJobs(t, b, "wt", "T", 2, at(10*time.Second))

	var got []string
	after := ""
	for range 10 {
		ids, next := failedPage(t, one(t, b.HandleClient(at(time.Minute), "c", "",
			zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams(), Limit: 2, After: after})), protocol.ToClient, "c"))
		got = append(got, ids...)
		if next == "" {
			break
		}
		after = next
	}
	if want := newest(s, tt); !slices.Equal(got, want) {
		t.Fatalf("pages of failed jobs: %v, want %v", got, want)
	}
	ids, _ := failedPage(t, one(t, b.HandleClient(at(time.Minute), "c", "",
		zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams(protocol.ParamService, "S")})), protocol.ToClient, "c"))
	if want := newest(s); !slices.Equal(ids, want) {
		t.Fatalf("failed jobs of S: %v, want %v", ids, want)
	}
	// since: the broker's clock, 55s before 1m: the jobs of T.
	ids, _ = failedPage(t, one(t, b.HandleClient(at(time.Minute), "c", "",
		zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams(protocol.ParamSince, "55s")})), protocol.ToClient, "c"))
	if want := newest(tt); !slices.Equal(ids, want) {
		t.Fatalf("failed jobs since 55s ago: %v, want %v", ids, want)
	}

	out := b.HandleClient(at(time.Minute), "c", "", zquery(protocol.ServerRetry, protocol.Meta{Params: failedParams(protocol.ParamService, "S")}))
	rep, next := retryReport(t, one(t, out, protocol.ToClient, "c"))
	if rep.Requeued != 3 || len(rep.Refused) != 0 || next != "" || !slices.Equal(rep.Jobs, newest(s)) {
		t.Fatalf("bulk retry of S: %+v next %q", rep, next)
	}
	// The worker of S, idle, takes the first one at once.
	if id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "ws")); !slices.Contains(s, id) {
		t.Fatalf("dispatched %s, not one of %v", id, s)
	}
	ids, _ = failedPage(t, one(t, b.HandleClient(at(time.Minute), "c", "",
		zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams()})), protocol.ToClient, "c"))
	if want := newest(tt); !slices.Equal(ids, want) {
		t.Fatalf("failed jobs after the retry of S: %v, want %v", ids, want)
	}
}

// Bad params are refused, naming the param.
func TestBroker_FailedBadParams(t *testing.T) {
	b := newBroker(t, broker.Config{})
	for _, tc := range []struct {
		msg  [][]byte
		name string
	}{
		{zquery(protocol.ServerJobs, protocol.Meta{Params: map[string]string{protocol.ParamState: "queued"}}), "state"},
		{zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams(protocol.ParamSince, "yesterday")}), "since"},
		{zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams(protocol.ParamSince, "-1h")}), "since"},
		{zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams(), After: "12.x"}), "after"},
		{zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams(), Limit: -1}), "limit"},
		{zquery(protocol.ServerRetry, protocol.Meta{Params: failedParams()}, testID("01A")), "job ID frame"},
	} {
		md := refusedWith(t, b.HandleClient(t0, "c", "", tc.msg), "c", protocol.CodeBadRequest)
		if !strings.Contains(md.Error, tc.name) {
			t.Errorf("refusal %q does not name %s", md.Error, tc.name)
		}
	}
}

// failedArchive is an archive that lists failed jobs: the records given,
// already newest first, in one page.
type failedArchive struct {
	*archive
	page broker.FailedPage
	q    []broker.FailedQuery
}

func (a *failedArchive) Failed(q broker.FailedQuery) (broker.FailedPage, error) {
	a.q = append(a.q, q)
	return a.page, a.err
}

// With a journal, a listing and a bulk retry are lookups; a key that may
// not administer asks for its own jobs whatever owner it names, and a job
// not its own (the journal's answer notwithstanding) is refused; sync
// jobs and jobs no longer failed are refused, each with its reason.
func TestBroker_FailedFromTheArchive(t *testing.T) {
	acc := newAccess()
	b := newBroker(t, broker.Config{Durable: true, Archived: true, Access: acc})
	b.HandleWorker(t0, "wall", "wall", readyZ("A1"))
	rec := func(id, owner string, sync bool) broker.JobRecord {
		return broker.JobRecord{ID: testID(id), Service: "A1", State: protocol.JobFailed, Owner: owner, Sync: sync, Created: t0,
			Started: t0, Finished: at(time.Second), Attempts: 1, Code: protocol.CodeJobFailed, Error: "boom", Retries: -1}
	}
	a := &failedArchive{archive: newArchive(), page: broker.FailedPage{
		Jobs: []broker.JobRecord{rec("01B", "bob", false), rec("01C", "bob", true), rec("01D", "alice", false)},
		Next: "more",
	}}

	none(t, b.HandleClient(t0, "c", "bob", zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams(protocol.ParamOwner, "alice")})), protocol.ToClient)
	ls := b.Lookups()
	if len(ls) != 1 || ls[0].Failed == nil || ls[0].Failed.Owner != "bob" || ls[0].Failed.Limit != protocol.DefaultJobsPage {
		t.Fatalf("bob's listing asks %+v", ls)
	}
	ids, next := failedPage(t, one(t, b.LookedUp(t0, ls[0].Ask(a)), protocol.ToClient, "c"))
	if len(ids) != 3 || next != "more" {
		t.Fatalf("listing %v next %q", ids, next)
	}

	none(t, b.HandleClient(t0, "c", "bob", zquery(protocol.ServerRetry, protocol.Meta{Params: failedParams(protocol.ParamService, "A1")})), protocol.ToClient)
	ls = b.Lookups()
	if len(ls) != 1 || ls[0].Failed == nil || ls[0].Failed.Owner != "bob" || ls[0].Failed.Service != "A1" || ls[0].Failed.Limit != protocol.MaxRetryBatch {
		t.Fatalf("bob's bulk retry asks %+v", ls)
	}
	out := b.LookedUp(t0, ls[0].Ask(a))
	// Durable: the report waits for the commit of the requeued job.
	none(t, out, protocol.ToClient)
	if id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "wall")); id != testID("01B") {
		t.Fatalf("dispatched %s", id)
	}
	b.Flush()
	rep, next := retryReport(t, one(t, b.Committed(), protocol.ToClient, "c"))
	if rep.Requeued != 1 || !slices.Equal(rep.Jobs, []string{testID("01B")}) || next != "more" || len(rep.Refused) != 2 ||
		rep.Refused[0].Code != protocol.CodeConflict || rep.Refused[1].Code != protocol.CodeForbidden {
		t.Fatalf("bob's bulk retry: %+v next %q", rep, next)
	}

	// The admin's retry of the same page: 01B is queued (in memory now),
	// so refused; 01D is alice's to retry.
	none(t, b.HandleClient(t0, "c", "alice", zquery(protocol.ServerRetry, protocol.Meta{Params: failedParams()})), protocol.ToClient)
	ls = b.Lookups()
	if len(ls) != 1 || ls[0].Failed.Owner != "" {
		t.Fatalf("the admin's bulk retry asks %+v", ls)
	}
	b.LookedUp(t0, ls[0].Ask(a))
	b.Flush()
	rep, _ = retryReport(t, one(t, b.Committed(), protocol.ToClient, "c"))
	if rep.Requeued != 1 || !slices.Equal(rep.Jobs, []string{testID("01D")}) || len(rep.Refused) != 2 {
		t.Fatalf("the admin's bulk retry: %+v", rep)
	}
	// A failing journal: the request is refused, and says so.
	a.err = errors.New("disk on fire")
	none(t, b.HandleClient(t0, "c", "alice", zquery(protocol.ServerJobs, protocol.Meta{Params: failedParams()})), protocol.ToClient)
	refusedWith(t, answerLookups(t, b, a), "c", protocol.CodeStoreUnavailable)
}

// A retry of an archived job whose service the broker does not know (never
// announced since the restart, or forgotten) is refused unknown_service,
// one by ID or in bulk, and makes no service of it.
func TestBroker_RetryOfAnArchivedJobOfAnUnknownService(t *testing.T) {
	b := newBroker(t, broker.Config{Archived: true})
	old := broker.JobRecord{ID: testID("01G"), Service: "GONE", State: protocol.JobFailed, Created: t0, Started: t0,
		Finished: at(time.Second), Attempts: 1, Code: protocol.CodeJobFailed, Retries: -1}
	a := &failedArchive{archive: newArchive(old), page: broker.FailedPage{Jobs: []broker.JobRecord{old}}}

	none(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerRetry, nil, old.ID)), protocol.ToClient)
	refusedWith(t, answerLookups(t, b, a), "c", protocol.CodeUnknownService)

	none(t, b.HandleClient(t0, "c", "", zquery(protocol.ServerRetry, protocol.Meta{Params: failedParams(protocol.ParamService, "GONE")})), protocol.ToClient)
	rep, _ := retryReport(t, one(t, answerLookups(t, b, a), protocol.ToClient, "c"))
	if rep.Requeued != 0 || len(rep.Refused) != 1 || rep.Refused[0].Code != protocol.CodeUnknownService {
		t.Fatalf("bulk retry of GONE: %+v", rep)
	}
	for _, s := range b.Services() {
		if s.Name == "GONE" {
			t.Fatalf("the retries made service GONE: %+v", s)
		}
	}
}

// BenchmarkBroker_BulkRetryBatch is one batch of a bulk retry from the
// journal: the broker's side (LookedUp) of 1,000 archived failed jobs
// queued again, with no worker to take them.
func BenchmarkBroker_BulkRetryBatch(b *testing.B) {
	var recs []broker.JobRecord
	for i := range protocol.MaxRetryBatch {
		recs = append(recs, broker.JobRecord{ID: testID(fmt.Sprintf("01H%05d", i)), Service: "S", State: protocol.JobFailed,
			Created: t0, Started: t0, Finished: at(time.Second), Attempts: 1, Code: protocol.CodeJobFailed, Retries: -1,
			Params: map[string]string{"p": "v"}, Input: [][]byte{[]byte("input")}})
	}
	a := &failedArchive{archive: newArchive(), page: broker.FailedPage{Jobs: recs}}
	q := zquery(protocol.ServerRetry, protocol.Meta{Params: failedParams(protocol.ParamService, "S")})
	for b.Loop() {
		b.StopTimer()
		br := broker.New(broker.Config{Archived: true, Heartbeat: time.Second})
		br.HandleWorker(t0, "w", "", readyZ("S"))
		br.HandleWorker(t0, "w", "", protocol.EncodeWorker(protocol.Message{Form: v2, Cmd: protocol.CmdDisconnect}))
		br.HandleClient(t0, "c", "", q)
		ans := br.Lookups()[0].Ask(a)
		b.StartTimer()
		if out := br.LookedUp(t0, ans); len(out) != 1 {
			b.Fatalf("%d envelopes", len(out))
		}
	}
}

// A retry does not pass the service's queue bound (MaxQueue): one by ID
// is refused queue_full, and a bulk retry stops at the bound, saying so,
// with no cursor to go on with.
func TestBroker_RetryKeepsTheQueueBound(t *testing.T) {
	b := newBroker(t, broker.Config{MaxQueue: 2, History: 10})
	b.HandleWorker(t0, "w", "", readyZ("S"))
	failed := failJobs(t, b, "w", "S", 4, t0)
	b.HandleWorker(at(time.Minute), "w", "", protocol.EncodeWorker(protocol.Message{Form: v2, Cmd: protocol.CmdDisconnect}))
	accepted := func(out []protocol.Envelope) {
		t.Helper()
		if _, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c")); md.Status == protocol.StatusRefused {
			t.Fatalf("want accepted, got %+v", md)
		}
	}
	accepted(b.HandleClient(at(time.Minute), "c", "", zreq("S", nil, "in")))
	accepted(b.HandleClient(at(time.Minute), "c", "", zreq(protocol.ServerRetry, nil, failed[0])))
	refusedWith(t, b.HandleClient(at(time.Minute), "c", "", zreq(protocol.ServerRetry, nil, failed[1])), "c", protocol.CodeQueueFull)

	rep, next := retryReport(t, one(t, b.HandleClient(at(time.Minute), "c", "",
		zquery(protocol.ServerRetry, protocol.Meta{Params: failedParams(), Limit: 1})), protocol.ToClient, "c"))
	if rep.Requeued != 0 || len(rep.Refused) != 1 || rep.Refused[0].Code != protocol.CodeQueueFull || rep.Stopped == "" || next != "" {
		t.Fatalf("bulk retry into a full queue: %+v next %q", rep, next)
	}
}
