package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
)

// Found by TestBroker_RandomSequences: a submission refused because its
// commit failed does not keep its idempotency key when its job runs on (it
// was dispatched at once): the key would hand out, with no commit, the ID
// of a job the store never had.
func TestBroker_RefusedJobLeavesItsKey(t *testing.T) {
	st := store.NewMemory()
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if err := st.Commit(b.Flush()); err != nil {
		t.Fatal(err)
	}
	b.Committed()
	out := b.HandleClient(t0, "c1", "", zreqKey("S", "k"))
	first, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	b.Flush()
	_, md, _ := clientReply(t, one(t, b.Rejected(t0, errors.New("disk full")), protocol.ToClient, "c1"))
	if md.Code != protocol.CodeStoreUnavailable {
		t.Fatalf("refusal %+v", md)
	}
	b.HandleWorker(at(time.Second), "w1", "", final(first, protocol.Meta{Status: protocol.StatusComplete}))

	// The resubmission's acceptance waits for its commit: none at once.
	for _, e := range only(b.HandleClient(at(time.Second), "c2", "", zreqKey("S", "k")), protocol.ToClient) {
		_, md, _ := clientReply(t, e)
		t.Fatalf("resubmission answered at once, before any commit: %+v (the refused job was %s)", md, first)
	}
	if err := st.Commit(b.Flush()); err != nil {
		t.Fatal(err)
	}
	_, md, _ = clientReply(t, one(t, b.Committed(), protocol.ToClient, "c2"))
	if md.Status != protocol.StatusAccepted || md.Job == first {
		t.Fatalf("resubmission: %+v, want accepted as a new job (not %s, refused and never stored)", md, first)
	}
	if id, ok, _ := st.JobByKey("k"); !ok || id != md.Job {
		t.Fatalf("store maps key k to %q (%v), want the job handed out, %s", id, ok, md.Job)
	}
}

// Found by TestBroker_RandomSequences: a job retried (SERVER-RETRY) before
// its first commit is a new job value that waits for no commit of its
// own; its idempotency key must still not hand its ID out before the job
// store has the job.
func TestBroker_KeyOfAJobRetriedBeforeItsCommit(t *testing.T) {
	st := store.NewMemory()
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if err := st.Commit(b.Flush()); err != nil {
		t.Fatal(err)
	}
	b.Committed()
	out := b.HandleClient(t0, "c1", "", zreqKey("S", "k"))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	// The answers of the cancel and the retry wait for the commit too.
	b.HandleClient(t0, "q", "", request(v2, protocol.ServerCancel, meta, []byte(id)))
	b.HandleClient(t0, "q", "", request(v2, protocol.ServerRetry, meta, []byte(id)))
	for _, e := range only(b.HandleClient(t0, "c2", "", zreqKey("S", "k")), protocol.ToClient) {
		_, md, _ := clientReply(t, e)
		t.Fatalf("resubmission answered at once with %s: the store has no record of it yet", md.Job)
	}
	if err := st.Commit(b.Flush()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range only(b.Committed(), protocol.ToClient) {
		if e.To == "c2" {
			_, md, _ := clientReply(t, e)
			got = append(got, md.Job)
		}
	}
	if len(got) != 1 || got[0] != id {
		t.Fatalf("resubmission after the commit got %q, want one acceptance of %s", got, id)
	}
}

// Found by TestBroker_RandomSequences: when a commit fails, every request
// whose reply waited for it is answered: the submission of a new job (its
// refusal came before), and now also a resubmission under the same
// idempotency key and the answers of SERVER-CANCEL and SERVER-RETRY, which
// used to be dropped with no answer at all.
func TestBroker_RejectedCommitAnswersEveryHeldRequest(t *testing.T) {
	b := newBroker(t, broker.Config{Durable: true})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Flush()
	b.Committed()
	// A committed job to cancel and retry.
	b.HandleClient(t0, "c0", "", zreqKey("S", "old"))
	b.Flush()
	b.Committed()
	old := ""
	for _, j := range b.Active() {
		old = j.ID
	}
	if old == "" {
		t.Fatal("no active job")
	}
	b.HandleClient(t0, "cancel", "", request(v2, protocol.ServerCancel, meta, []byte(old)))
	b.HandleClient(t0, "retry", "", request(v2, protocol.ServerRetry, meta, []byte(old)))
	// A new job, and its resubmission before the commit.
	b.HandleClient(t0, "c1", "", zreqKey("S", "k"))
	b.HandleClient(t0, "c2", "", zreqKey("S", "k"))
	b.Flush()
	got := map[string]string{}
	for _, e := range only(b.Rejected(t0, errors.New("disk full")), protocol.ToClient) {
		_, md, _ := clientReply(t, e)
		got[e.To] = string(md.Status) + " " + md.Code
	}
	for _, c := range []string{"cancel", "retry", "c1", "c2"} {
		if got[c] != "refused "+protocol.CodeStoreUnavailable {
			t.Errorf("%s after the failed commit: %q, want refused %s (answers: %v)", c, got[c], protocol.CodeStoreUnavailable, got)
		}
	}
}
