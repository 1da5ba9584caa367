package broker_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// archive is an Archive in a map, for lookups answered by the test.
type archive struct {
	jobs map[string]broker.JobRecord
	keys map[string]string
	err  error
	asks int
}

func newArchive(recs ...broker.JobRecord) *archive {
	a := &archive{jobs: map[string]broker.JobRecord{}, keys: map[string]string{}}
	for _, r := range recs {
		a.jobs[r.ID] = r
		if r.Key != "" {
			a.keys[r.Key] = r.ID
		}
	}
	return a
}

func (a *archive) Job(id string) (broker.JobRecord, bool, error) {
	a.asks++
	r, ok := a.jobs[id]
	return r, ok, a.err
}

func (a *archive) JobByKey(key string) (string, bool, error) {
	a.asks++
	id, ok := a.keys[key]
	return id, ok, a.err
}

// answerLookups answers every Lookup b emitted from a, as the server's
// reader would, and returns what b sent in reply.
func answerLookups(t *testing.T, b *broker.Broker, a broker.Archive) []protocol.Envelope {
	t.Helper()
	var answers []broker.Answer
	for _, l := range b.Lookups() {
		answers = append(answers, l.Ask(a))
	}
	if len(answers) == 0 {
		t.Fatal("no lookup emitted")
	}
	var out []protocol.Envelope
	for _, ans := range answers {
		out = append(out, b.LookedUp(t0, ans)...)
	}
	return out
}

func jobInfo(t *testing.T, e protocol.Envelope) protocol.JobInfo {
	t.Helper()
	_, md, rest := clientReply(t, e)
	var info protocol.JobInfo
	if md.Status != protocol.StatusComplete || len(rest) != 1 {
		t.Fatalf("want a job's description, got %+v %q", md, rest)
	}
	if err := json.Unmarshal(rest[0], &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func refusal(t *testing.T, e protocol.Envelope) protocol.Meta {
	t.Helper()
	_, md, _ := clientReply(t, e)
	if md.Status != protocol.StatusRefused {
		t.Fatalf("want a refusal, got %+v", md)
	}
	return md
}

var oldJob = broker.JobRecord{ID: testID("01ABC"), Service: "S", State: protocol.JobFailed, Key: "k", Created: t0,
	Started: t0, Finished: t0.Add(time.Second), Attempts: 1, Code: protocol.CodeJobFailed, Error: "exit status 1",
	Output: []byte("out"), Retries: -1}

// A SERVER-JOB of a job the broker no longer holds is a Lookup, not a
// reply; while it waits the broker goes on (a job is submitted and
// dispatched); the Answer makes the reply.
func TestBroker_ServerJobOfAnArchivedJobWaitsForTheLookup(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Archived: true})
	a := newArchive(oldJob)
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	out := b.HandleClient(at(time.Second), "c", "", zreq(protocol.ServerJob, nil, oldJob.ID))
	none(t, out, protocol.ToClient)
	ls := b.Lookups()
	if len(ls) != 1 || ls[0].ID != oldJob.ID || ls[0].Key != "" {
		t.Fatalf("lookups %+v, want one of job %s", ls, oldJob.ID)
	}
	if a.asks != 0 {
		t.Fatal("the broker read the archive itself")
	}
	if again := b.Lookups(); len(again) != 0 {
		t.Fatalf("lookups given twice: %+v", again)
	}
	// The loop keeps serving while the lookup is out.
	out = b.HandleClient(at(2*time.Second), "c2", "", zreq("S", nil, "in"))
	one(t, out, protocol.ToWorker, "w1")
	ans := ls[0].Ask(a)
	if !ans.Found || a.asks != 1 {
		t.Fatalf("Ask = %+v after %d reads", ans, a.asks)
	}
	info := jobInfo(t, one(t, b.LookedUp(at(3*time.Second), ans), protocol.ToClient, "c"))
	if info.ID != oldJob.ID || info.State != protocol.JobFailed || string(info.Output) != "out" || info.Finished == nil {
		t.Fatalf("SERVER-JOB answered %+v", info)
	}
	// An answer given twice answers nothing.
	none(t, b.LookedUp(at(3*time.Second), ans), protocol.ToClient)

	// Not in the archive either: not found, after the lookup.
	none(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerJob, nil, testID("01DEF"))), protocol.ToClient)
	if md := refusal(t, one(t, answerLookups(t, b, a), protocol.ToClient, "c")); md.Code != protocol.CodeNotFound {
		t.Fatalf("refusal %+v, want not_found", md)
	}
	// A failing archive is not found too (and logged).
	a.err = errors.New("disk on fire")
	none(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerJob, nil, oldJob.ID)), protocol.ToClient)
	if md := refusal(t, one(t, answerLookups(t, b, a), protocol.ToClient, "c")); md.Code != protocol.CodeNotFound {
		t.Fatalf("refusal %+v, want not_found", md)
	}
}

// Without an archive nothing waits: an unknown job is not found at once.
func TestBroker_NoArchiveNoLookups(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	for _, q := range []string{protocol.ServerJob, protocol.ServerCancel, protocol.ServerRetry} {
		md := refusal(t, one(t, b.HandleClient(t0, "c", "", zreq(q, nil, oldJob.ID)), protocol.ToClient, "c"))
		if md.Code != protocol.CodeNotFound {
			t.Fatalf("%s: %+v, want not_found", q, md)
		}
	}
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleClient(t0, "c", "", zreqKey("S", "k"))
	one(t, committed(b), protocol.ToClient, "c")
	if ls := b.Lookups(); len(ls) != 0 {
		t.Fatalf("lookups without an archive: %+v", ls)
	}
}

// SERVER-RETRY of an archived failed job queues it again once the lookup
// comes back; SERVER-CANCEL of one says it has finished.
func TestBroker_RetryAndCancelOfArchivedJobs(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Archived: true})
	a := newArchive(oldJob)
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	none(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerCancel, nil, oldJob.ID)), protocol.ToClient)
	if md := refusal(t, one(t, answerLookups(t, b, a), protocol.ToClient, "c")); md.Code != protocol.CodeConflict {
		t.Fatalf("cancel of a finished archived job: %+v, want conflict", md)
	}
	none(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerCancel, nil, testID("01DEF"))), protocol.ToClient)
	if md := refusal(t, one(t, answerLookups(t, b, a), protocol.ToClient, "c")); md.Code != protocol.CodeNotFound {
		t.Fatalf("cancel of no job: %+v, want not_found", md)
	}

	out := b.HandleClient(t0, "c", "", zreq(protocol.ServerRetry, nil, oldJob.ID))
	none(t, out, protocol.ToClient)
	none(t, out, protocol.ToWorker)
	out = answerLookups(t, b, a)
	none(t, out, protocol.ToClient) // the retry's reply waits for its record's commit
	if id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1")); id != oldJob.ID {
		t.Fatalf("dispatched %s, want the retried %s", id, oldJob.ID)
	}
	if info := jobInfo(t, one(t, committed(b), protocol.ToClient, "c")); info.ID != oldJob.ID || info.State != protocol.JobQueued {
		t.Fatalf("retry answered %+v", info)
	}
}

// committed flushes b's records, as if committed, and returns the replies
// held for them.
func committed(b *broker.Broker) []protocol.Envelope {
	b.Flush()
	return b.Committed()
}

// A submission whose idempotency key is not in memory waits for the
// archive: a key it knows answers with its job (or conflict, for another
// service); one it does not makes the job. Two submissions of one new key
// that waited together make one job.
func TestBroker_IdempotencyKeyLookedUp(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Archived: true})
	a := newArchive(oldJob)
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("T"))

	out := b.HandleClient(t0, "c", "", zreqKey("S", "k"))
	none(t, out, protocol.ToClient)
	none(t, out, protocol.ToWorker)
	ls := b.Lookups()
	if len(ls) != 1 || ls[0].Key != "k" || ls[0].ID != "" {
		t.Fatalf("lookups %+v, want one of key k", ls)
	}
	out = b.LookedUp(t0, ls[0].Ask(a))
	if _, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c")); md.Job != oldJob.ID {
		t.Fatalf("archived key answered %+v, want job %s", md, oldJob.ID)
	}
	none(t, out, protocol.ToWorker)

	none(t, b.HandleClient(t0, "c", "", zreqKey("T", "k")), protocol.ToClient)
	if md := refusal(t, one(t, answerLookups(t, b, a), protocol.ToClient, "c")); md.Code != protocol.CodeConflict {
		t.Fatalf("key of another service's job: %+v, want conflict", md)
	}

	none(t, b.HandleClient(t0, "c1", "", zreqKey("S", "new")), protocol.ToClient)
	none(t, b.HandleClient(t0, "c2", "", zreqKey("S", "new")), protocol.ToClient)
	out = answerLookups(t, b, a)
	none(t, out, protocol.ToClient) // held for the commit of the new job
	c := committed(b)
	if len(c) != 2 || c[0].To != "c1" || c[1].To != "c2" {
		t.Fatalf("replies %+v, want one to c1, then one to c2", c)
	}
	_, first, _ := clientReply(t, c[0])
	_, second, _ := clientReply(t, c[1])
	if first.Status != protocol.StatusAccepted || first.Job == "" || second.Job != first.Job {
		t.Fatalf("one new key made %+v and %+v, want one job", first, second)
	}
	if n := len(requests(out)); n != 1 {
		t.Fatalf("%d dispatches, want 1", n)
	}
	// Now in memory, and committed: no lookup, no wait.
	one(t, b.HandleClient(t0, "c", "", zreqKey("S", "new")), protocol.ToClient, "c")
	if ls := b.Lookups(); len(ls) != 0 {
		t.Fatalf("lookup of a key in memory: %+v", ls)
	}
}

// A submission whose idempotency key could not be looked up (the archive
// failed) is refused with store_unavailable: answered as not found, it
// would make a second job under a key the journal holds for another, and
// the journal would refuse the whole batch with it (store.ErrKeyConflict),
// every other submission in it with it.
func TestBroker_IdempotencyKeyLookupFails(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Archived: true})
	a := newArchive(oldJob)
	a.err = errors.New("disk on fire")
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	none(t, b.HandleClient(t0, "c", "", zreqKey("S", "k")), protocol.ToClient)
	out := answerLookups(t, b, a)
	none(t, out, protocol.ToWorker)
	if b.Holding() {
		t.Fatal("a job made under a key the archive could not be asked about")
	}
	if md := refusal(t, one(t, out, protocol.ToClient, "c")); md.Code != protocol.CodeStoreUnavailable {
		t.Fatalf("failed key lookup: %+v, want store_unavailable", md)
	}
	if batch := b.Flush(); len(batch.Jobs) != 0 {
		t.Fatalf("batch %+v, want no job", batch.Jobs)
	}
	// The archive back: the key names its job again.
	a.err = nil
	none(t, b.HandleClient(t0, "c", "", zreqKey("S", "k")), protocol.ToClient)
	if _, md, _ := clientReply(t, one(t, answerLookups(t, b, a), protocol.ToClient, "c")); md.Job != oldJob.ID {
		t.Fatalf("archived key answered %+v, want job %s", md, oldJob.ID)
	}
}

// At most MaxLookups wait: past them a request is refused at once.
func TestBroker_LookupsBounded(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Archived: true})
	for range broker.MaxLookups {
		none(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerJob, nil, oldJob.ID)), protocol.ToClient)
	}
	md := refusal(t, one(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerJob, nil, oldJob.ID)), protocol.ToClient, "c"))
	if md.Code != protocol.CodeStoreUnavailable {
		t.Fatalf("past the bound: %+v, want store_unavailable", md)
	}
	ls := b.Lookups()
	if len(ls) != broker.MaxLookups {
		t.Fatalf("%d lookups, want %d", len(ls), broker.MaxLookups)
	}
	a := newArchive(oldJob)
	one(t, b.LookedUp(t0, ls[0].Ask(a)), protocol.ToClient, "c")
	none(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerJob, nil, oldJob.ID)), protocol.ToClient)
}
