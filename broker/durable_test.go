package broker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
)

func zreqKey(service, key string) [][]byte {
	return request(v2, service, protocol.EncodeMeta(protocol.Meta{Key: key}))
}

func TestBroker_DurableAcceptWaitsForCommit(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if !b.Pending() {
		t.Fatal("a new service is a record to keep")
	}
	out := b.HandleClient(t0, "c", "", zreq("S", map[string]string{"a": "1"}, "in"))
	none(t, out, protocol.ToClient)      // the reply handing out a job ID waits for the commit
	one(t, out, protocol.ToWorker, "w1") // a dispatch need not
	if !b.Holding() {
		t.Fatal("no reply held for the commit")
	}
	batch := b.Flush()
	if b.Holding() {
		t.Fatal("the held reply did not go with the batch")
	}
	if len(batch.Services) != 1 || len(batch.Jobs) != 1 {
		t.Fatalf("batch %+v", batch)
	}
	rec := batch.Jobs[0]
	if rec.State != protocol.JobActive || rec.Params["a"] != "1" || string(rec.Input[0]) != "in" || rec.Attempts != 1 {
		t.Fatalf("record %+v: want the latest state, once", rec)
	}
	if _, md, _ := clientReply(t, one(t, b.Committed(), protocol.ToClient, "c")); md.Job != rec.ID {
		t.Fatalf("after the commit: %+v, want job %s", md, rec.ID)
	}
	if b.Pending() {
		t.Fatal("pending after flush")
	}
	// Finishing is a record too, with the output.
	b.HandleWorker(t0, "w1", "", final(rec.ID, protocol.Meta{Status: protocol.StatusComplete}, "done"))
	batch = b.Flush()
	if len(batch.Jobs) != 1 || batch.Jobs[0].State != protocol.JobComplete || string(batch.Jobs[0].Output) != "done" {
		t.Fatalf("finish record %+v", batch.Jobs)
	}
	b.Committed()
}

func TestBroker_SyncJobsRecordedOnlyWhenFinished(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Flush()
	b.Committed()
	out := b.HandleClient(t0, "c", "", zreq("SYNC-S", nil))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	if b.Pending() {
		t.Fatal("a running sync job was recorded")
	}
	out = b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "x"))
	one(t, out, protocol.ToClient, "c") // a sync result need not wait for the store
	if batch := b.Flush(); len(batch.Jobs) != 1 || !batch.Jobs[0].Sync {
		t.Fatalf("finished sync job not recorded: %+v", batch.Jobs)
	}
}

func TestBroker_RejectedCommitRefusesSubmissions(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	b.HandleClient(t0, "c", "", zreq("S", nil))
	b.Flush()
	out := b.Rejected(t0, errors.New("no space left on device"))
	_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c"))
	if md.Status != protocol.StatusRefused || md.Code != protocol.CodeStoreUnavailable {
		t.Fatalf("refusal %+v", md)
	}
	if q := b.Queue(); q[0].Queued != 0 {
		t.Fatalf("a refused job stayed queued: %+v", q)
	}
}

func TestBroker_IdempotencyKey(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, History: 1})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	none(t, b.HandleClient(t0, "c", "", zreqKey("S", "k1")), protocol.ToClient)
	out := b.HandleClient(t0, "c", "", zreqKey("S", "k1"))
	none(t, out, protocol.ToClient)
	c := committed(b)
	if len(c) != 2 {
		t.Fatalf("want the two acceptances after the commit, got %+v", c)
	}
	_, first, _ := clientReply(t, c[0])
	_, again, _ := clientReply(t, c[1])
	if again.Job != first.Job || len(requests(out)) != 0 {
		t.Fatalf("resubmission made a second job: %s vs %s", again.Job, first.Job)
	}
	// The job finishes and is pushed out of memory by another; the archive
	// still knows its key.
	b.HandleWorker(t0, "w1", "", final(first.Job, protocol.Meta{Status: protocol.StatusComplete}))
	b.HandleClient(t0, "c", "", zreqKey("S", "k2"))
	_, other, _ := clientReply(t, one(t, committed(b), protocol.ToClient, "c"))
	b.HandleWorker(t0, "w1", "", final(other.Job, protocol.Meta{Status: protocol.StatusComplete}))
	committed(b)
	if _, ok := b.Job(first.Job); ok {
		t.Fatal("job still in memory: the test needs it forgotten")
	}
	arch := store.NewMemory()
	b2 := newBroker(t, broker.Config{Durable: true, Archived: true})
	if err := arch.Commit(&broker.Batch{Jobs: []*broker.JobRecord{{ID: first.Job, Service: "S", State: protocol.JobComplete,
		Key: "k1", Created: t0, Finished: t0}}}); err != nil {
		t.Fatal(err)
	}
	b2.HandleWorker(t0, "w1", "", readyZ("S"))
	none(t, b2.HandleClient(t0, "c", "", zreqKey("S", "k1")), protocol.ToClient)
	_, md, _ := clientReply(t, one(t, answerLookups(t, b2, arch), protocol.ToClient, "c"))
	if md.Job != first.Job {
		t.Fatalf("archived key gave %s, want %s", md.Job, first.Job)
	}
	none(t, b2.HandleClient(t0, "c", "", zreq(protocol.ServerJob, nil, first.Job)), protocol.ToClient)
	_, _, rest := clientReply(t, one(t, answerLookups(t, b2, arch), protocol.ToClient, "c"))
	var info protocol.JobInfo
	if err := json.Unmarshal(rest[0], &info); err != nil || info.State != protocol.JobComplete {
		t.Fatalf("archived job lookup: %+v %v", info, err)
	}
}

// testID pads prefix into a job ID (a ULID) that sorts by prefix.
func testID(prefix string) string { return prefix + strings.Repeat("0", 26-len(prefix)) }

func TestBroker_RestoreRequeuesUnfinishedJobs(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, MaxAttempts: 2})
	snap := store.Snapshot{
		Services: []store.ServiceRecord{{Name: "S", FirstSeen: t0}, {Name: "IDLE", FirstSeen: t0}},
		Jobs: []store.JobRecord{
			{ID: testID("01B"), Service: "S", State: protocol.JobActive, Attempts: 1, Created: t0, Key: "kb"},
			{ID: testID("01A"), Service: "S", State: protocol.JobQueued, Created: t0},
			{ID: testID("01C"), Service: "S", State: protocol.JobActive, Attempts: 2, Created: t0},
		},
		Finished: []store.JobRecord{{ID: testID("01Z"), Service: "S", State: protocol.JobFailed, Created: t0, Finished: t0, Code: "job_failed"}},
	}
	b.Restore(at(time.Second), snap)
	if q := b.Queue(); len(q) != 2 || q[1].Service != "S" || q[1].Queued != 2 || q[1].Jobs[0] != testID("01A") || q[1].Jobs[1] != testID("01B") {
		t.Fatalf("queue after restore: %+v", q)
	}
	if info, _ := b.Job(testID("01C")); info.State != protocol.JobFailed || info.Code != protocol.CodeWorkerLost {
		t.Fatalf("job with attempts spent: %+v", info)
	}
	if jobs := b.Jobs(); len(jobs) != 2 || jobs[0].ID != testID("01C") || jobs[1].ID != testID("01Z") {
		t.Fatalf("history: %+v", jobs)
	}
	// The running job's next dispatch is attempt 2; its key still works.
	out := b.HandleWorker(at(time.Second), "w1", "", readyZ("S"))
	if id, m, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1")); id != testID("01A") || m.Attempt != 1 {
		t.Fatalf("first dispatch %s attempt %d", id, m.Attempt)
	}
	out = b.HandleWorker(at(time.Second), "w2", "", readyZ("S"))
	if id, m, _ := dispatched(t, one(t, out, protocol.ToWorker, "w2")); id != testID("01B") || m.Attempt != 2 {
		t.Fatalf("second dispatch %s attempt %d", id, m.Attempt)
	}
	// Its record is committed: the reply needs no commit.
	_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreqKey("S", "kb")), protocol.ToClient, "c"))
	if md.Job != testID("01B") {
		t.Fatalf("restored key gave %s", md.Job)
	}
	// A known service with no job is still known: it queues.
	b.HandleClient(t0, "c", "", zreq("IDLE", nil))
	_, md, _ = clientReply(t, one(t, committed(b), protocol.ToClient, "c"))
	if md.Status != protocol.StatusAccepted {
		t.Fatalf("restored service refused: %+v", md)
	}
}

// A submission's Ref comes back in its reply whichever way it ends: accepted
// (held for the commit), refused at once, refused by a failed commit, and in
// a sync job's final reply.
func TestBroker_RefEchoed(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, MaxQueue: 1})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	ref := func(service, r string) [][]byte {
		return request(v2, service, protocol.EncodeMeta(protocol.Meta{Ref: r}))
	}
	replyRef := func(envs []protocol.Envelope) string {
		t.Helper()
		_, md, _ := clientReply(t, one(t, envs, protocol.ToClient, "c"))
		return md.Ref
	}
	// r1 is dispatched to w1 at once, and accepted only after the commit;
	// r2 is queued: the queue is full now.
	none(t, b.HandleClient(t0, "c", "", ref("S", "r1")), protocol.ToClient)
	b.HandleClient(t0, "c", "", ref("S", "r2"))
	if got := replyRef(b.HandleClient(t0, "c", "", ref("S", "r3"))); got != "r3" {
		t.Errorf("queue full: ref %q, want r3", got)
	}
	if got := replyRef(b.HandleClient(t0, "c", "", ref("NOPE", "r4"))); got != "r4" {
		t.Errorf("unknown service: ref %q, want r4", got)
	}
	b.Flush()
	var refs []string
	for _, e := range b.Rejected(t0, errors.New("disk full")) {
		_, md, _ := clientReply(t, e)
		refs = append(refs, md.Ref+":"+string(md.Status))
	}
	if got := strings.Join(refs, " "); got != "r1:refused r2:refused" {
		t.Errorf("rejected commit: %s, want r1:refused r2:refused", got)
	}
	b.HandleClient(t0, "c", "", ref("S", "r6"))
	if got := replyRef(committed(b)); got != "r6" {
		t.Errorf("accepted: ref %q, want r6", got)
	}

	s := newBroker(t, broker.Config{})
	s.HandleWorker(t0, "w1", "", readyZ("S"))
	job := requests(s.HandleClient(t0, "c", "", ref("SYNC-S", "r5")))
	if len(job) != 1 {
		t.Fatalf("sync job not dispatched: %d requests", len(job))
	}
	m, err := protocol.DecodeWorker(job[0].Frames)
	if err != nil {
		t.Fatal(err)
	}
	out := s.HandleWorker(t0, "w1", "", final(string(m.Address), protocol.Meta{Status: protocol.StatusComplete}, "ok"))
	if got := replyRef(out); got != "r5" {
		t.Errorf("sync final: ref %q, want r5", got)
	}
}

// A job's input frames reach its worker as sent, none, empty or several,
// and so they do after a trip through the job store.
func TestBroker_InputFramesKeptAsSent(t *testing.T) {
	show := func(frames [][]byte) string { return fmt.Sprintf("%q", framesStr(frames)) }
	for _, input := range [][]string{nil, {""}, {"a"}, {"a", "", "c"}} {
		frames := make([][]byte, len(input))
		for i, in := range input {
			frames[i] = []byte(in)
		}
		want := show(frames)
		b := newBroker(t, broker.Config{Durable: true})
		b.HandleWorker(t0, "w1", "", readyZ("S"))
		out := b.HandleClient(t0, "c", "", zreq("S", nil, input...))
		if _, _, body := dispatched(t, one(t, out, protocol.ToWorker, "w1")); show(body) != want {
			t.Errorf("input %s dispatched as %s", want, show(body))
		}
		rec := b.Flush().Jobs[0]
		if show(rec.Input) != want {
			t.Errorf("input %s recorded as %s", want, show(rec.Input))
		}
		b.Committed()

		r := newBroker(t, broker.Config{Durable: true})
		r.Restore(t0, store.Snapshot{Services: []store.ServiceRecord{{Name: "S", FirstSeen: t0}}, Jobs: []store.JobRecord{*rec}})
		out = r.HandleWorker(t0, "w1", "", readyZ("S"))
		if _, _, body := dispatched(t, one(t, out, protocol.ToWorker, "w1")); show(body) != want {
			t.Errorf("input %s dispatched after a restore as %s", want, show(body))
		}
	}
}

// TestBroker_HealthReportsFailingStore: SERVER-HEALTH says the store is
// failing from a rejected commit until a commit with records succeeds; an
// empty batch (never written) proves nothing.
func TestBroker_HealthReportsFailingStore(t *testing.T) {
	health := func(t *testing.T, b *broker.Broker) protocol.HealthInfo {
		t.Helper()
		_, md, rest := clientReply(t, one(t, b.HandleClient(t0, "q", "", zreq(protocol.ServerHealth, nil)), protocol.ToClient, "q"))
		if md.Status != protocol.StatusComplete || len(rest) != 1 {
			t.Fatalf("SERVER-HEALTH: %+v %q", md, rest)
		}
		var h protocol.HealthInfo
		if err := json.Unmarshal(rest[0], &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := health(t, newBroker(t, broker.Config{})); h.Store != protocol.StoreNone {
		t.Fatalf("without a store: %+v", h)
	}
	b := newBroker(t, broker.Config{Durable: true})
	if h := health(t, b); h.Store != protocol.StoreOK {
		t.Fatalf("before any commit: %+v", h)
	}
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Flush() // the service's record: a rejected batch's would be sent again
	b.Committed()
	b.HandleClient(t0, "c", "", zreq("S", nil))
	b.Flush()
	b.Rejected(at(time.Second), errors.New("no space left on device"))
	h := health(t, b)
	if h.Store != protocol.StoreFailing || h.StoreError != "no space left on device" ||
		h.StoreFailedSince == nil || !h.StoreFailedSince.Equal(at(time.Second)) {
		t.Fatalf("after a rejected commit: %+v", h)
	}
	b.Flush() // nothing in it
	b.Committed()
	if h := health(t, b); h.Store != protocol.StoreFailing {
		t.Fatalf("an empty batch cleared the failure: %+v", h)
	}
	b.HandleClient(t0, "c", "", zreq("S", nil))
	b.Flush()
	b.Committed()
	if h := health(t, b); h.Store != protocol.StoreOK || h.StoreError != "" || h.StoreFailedSince != nil {
		t.Fatalf("after a good commit: %+v", h)
	}
}

// endJobs runs n jobs of service s on worker w, the first failed ones
// failing, and returns the batch that records them.
func endJobs(t *testing.T, b *broker.Broker, s, w string, n, failed int) *store.Batch {
	t.Helper()
	for i := range n {
		out := b.HandleClient(t0, "c", "", zreq(s, nil))
		id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, w))
		status := protocol.StatusComplete
		if i < failed {
			status = protocol.StatusFailed
		}
		b.HandleWorker(t0, w, "", final(id, protocol.Meta{Status: status}))
	}
	return b.Flush()
}

// The services' counters ride with the job records of a batch, one entry
// per service whose jobs ended in it, and come back at the next start.
func TestBroker_ServiceCountersSurviveARestart(t *testing.T) {
	st := store.NewMemory()
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("T"))
	commit := func(batch *store.Batch) {
		t.Helper()
		if err := st.Commit(batch); err != nil {
			t.Fatal(err)
		}
		b.Committed()
	}
	commit(b.Flush())
	batch := endJobs(t, b, "S", "w1", 5, 2)
	if want := []store.ServiceCounts{{Name: "S", Completed: 3, Failed: 2}}; !slicesEqual(batch.Counts, want) {
		t.Fatalf("batch counters %+v, want %+v (once, however many jobs ended)", batch.Counts, want)
	}
	commit(batch)
	// A batch in which no job ended has no counters.
	b.HandleClient(t0, "c", "", zreq("S", nil))
	if batch := b.Flush(); len(batch.Counts) != 0 {
		t.Fatalf("counters without a job ending: %+v", batch.Counts)
	} else {
		commit(batch)
	}
	commit(endJobs(t, b, "T", "w2", 1, 1))

	snap, err := st.Load(100)
	if err != nil {
		t.Fatal(err)
	}
	b2 := newBroker(t, broker.Config{Durable: true})
	b2.Restore(at(time.Hour), snap)
	counts := func(b *broker.Broker) map[string][2]uint64 {
		m := map[string][2]uint64{}
		for _, s := range b.Services() {
			m[s.Name] = [2]uint64{s.Completed, s.Failed}
		}
		return m
	}
	want := map[string][2]uint64{"S": {3, 2}, "T": {0, 1}}
	if got := counts(b2); fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(counts(b)) != fmt.Sprint(want) {
		t.Fatalf("after a restart: %v, want %v (before: %v)", got, want, counts(b))
	}
	// They go on from there; the finished jobs restored into the history
	// are not counted again.
	out := b2.HandleWorker(at(time.Hour), "w3", "", readyZ("S"))
	queued, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w3")) // the job left queued
	if batch := b2.Flush(); len(batch.Counts) != 0 {
		t.Fatalf("restore marked counters: %+v", batch.Counts)
	}
	b2.Committed()
	b2.HandleWorker(at(time.Hour), "w3", "", final(queued, protocol.Meta{Status: protocol.StatusComplete}))
	batch = endJobs(t, b2, "S", "w3", 1, 0)
	if want := []store.ServiceCounts{{Name: "S", Completed: 5, Failed: 2}}; !slicesEqual(batch.Counts, want) {
		t.Fatalf("counters after the restart %+v, want %+v", batch.Counts, want)
	}
}

func slicesEqual(a, b []store.ServiceCounts) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// A batch the store refused loses no service record, counters or forget:
// they go in the next batch.
func TestBroker_RejectedBatchKeepsServicesAndCounters(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w2", "", readyZ("GONE"))
	b.Flush()
	b.Committed()
	b.HandleWorker(t0, "w2", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	b.HandleClient(t0, "q", "", request(v2, protocol.ServerForget, meta, []byte("GONE")))
	b.HandleWorker(t0, "w3", "", readyZ("NEW"))
	batch := endJobs(t, b, "S", "w1", 2, 1)
	if len(batch.Services) != 1 || len(batch.Counts) != 1 || len(batch.Forgets) != 1 {
		t.Fatalf("first batch %+v", batch)
	}
	b.Rejected(t0, errors.New("disk full"))
	if !b.Pending() {
		t.Fatal("nothing pending after a rejected batch with a service and counters")
	}
	batch = b.Flush()
	if len(batch.Services) != 1 || batch.Services[0].Name != "NEW" || !batch.Services[0].FirstSeen.Equal(t0) ||
		!slicesEqual(batch.Counts, []store.ServiceCounts{{Name: "S", Completed: 1, Failed: 1}}) ||
		len(batch.Forgets) != 1 || batch.Forgets[0] != "GONE" {
		t.Fatalf("the batch after the rejected one: %+v", batch)
	}
	b.Committed()
	if b.Pending() {
		t.Fatal("still pending")
	}
}

// A service forgotten and announced again before the batch goes is kept,
// with no counters: the forget would otherwise follow its record.
func TestBroker_ServiceForgottenAndBackInOneBatch(t *testing.T) {
	st := store.NewMemory()
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if err := st.Commit(endJobs(t, b, "S", "w1", 3, 1)); err != nil {
		t.Fatal(err)
	}
	b.Committed()
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	b.HandleClient(t0, "q", "", request(v2, protocol.ServerForget, meta, []byte("S")))
	b.HandleWorker(at(time.Second), "w2", "", readyZ("S"))
	batch := b.Flush()
	if len(batch.Forgets) != 0 || len(batch.Services) != 1 {
		t.Fatalf("batch %+v: want the service's new record and no forget", batch)
	}
	if err := st.Commit(batch); err != nil {
		t.Fatal(err)
	}
	snap, err := st.Load(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Services) != 1 || !snap.Services[0].FirstSeen.Equal(at(time.Second)) || len(snap.Counts) != 0 {
		t.Fatalf("journal after forget and READY: %+v", snap)
	}
}

// TestBroker_FailingStoreIsProbed: after a failed commit the broker asks
// for a probe commit every 5 s, so its health comes back when the store
// does, with no job to try it.
func TestBroker_FailingStoreIsProbed(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour})
	b.Tick(t0)
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Flush()
	b.Committed()
	b.HandleClient(t0, "c", "", zreq("S", nil))
	b.Flush()
	b.Rejected(at(time.Second), errors.New("no space left on device"))
	b.Flush() // what the rejection handed to the next batch
	b.Committed()
	if b.Health().Store != protocol.StoreFailing {
		t.Fatal("the store is not failing after the rejection")
	}
	if b.Pending() {
		t.Fatal("a probe is pending at once after the failure")
	}
	if d := b.Deadline(); d.After(at(6 * time.Second)) {
		t.Fatalf("deadline %v, want the probe due at +6s", d.Sub(t0))
	}
	b.Tick(at(5 * time.Second))
	if b.Pending() {
		t.Fatal("a probe is pending before 5 s have passed")
	}
	b.Tick(at(6 * time.Second))
	if !b.Pending() {
		t.Fatal("no probe pending 5 s after the failure")
	}
	// The probe fails too: the next is 5 s later.
	if bt := b.Flush(); !bt.Probe || bt.Len() != 1 {
		t.Fatalf("probe batch %+v, want a probe alone", bt)
	}
	b.Rejected(at(6*time.Second), errors.New("no space left on device"))
	b.Tick(at(11 * time.Second))
	if bt := b.Flush(); !bt.Probe {
		t.Fatal("no second probe")
	}
	b.Committed()
	if h := b.Health(); h.Store != protocol.StoreOK {
		t.Fatalf("after a probe that committed: %+v, want ok", h)
	}
	b.Tick(at(20 * time.Second))
	if b.Pending() {
		t.Fatal("probes go on once the store works")
	}
}
