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
	b := newBroker(t, broker.Config{Durable: true, Archive: st})
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

	out = b.HandleClient(at(time.Second), "c2", "", zreqKey("S", "k"))
	acc := one(t, out, protocol.ToClient, "c2")
	_, md, _ = clientReply(t, acc)
	if md.Job == first {
		if _, ok, _ := st.Job(first); !ok && !acc.Durable {
			t.Fatalf("key k gave job %s, refused and never stored, at once", first)
		}
	}
	if md.Status != protocol.StatusAccepted {
		t.Fatalf("resubmission: %+v", md)
	}
	batch := b.Flush()
	if err := st.Commit(batch); err != nil {
		t.Fatal(err)
	}
	b.Committed()
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
	b := newBroker(t, broker.Config{Durable: true, Archive: st})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if err := st.Commit(b.Flush()); err != nil {
		t.Fatal(err)
	}
	b.Committed()
	out := b.HandleClient(t0, "c1", "", zreqKey("S", "k"))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	if md, _ := ask(t, b, protocol.ServerCancel, id); md.Status != protocol.StatusComplete {
		t.Fatalf("cancel: %+v", md)
	}
	if md, _ := ask(t, b, protocol.ServerRetry, id); md.Status != protocol.StatusComplete {
		t.Fatalf("retry: %+v", md)
	}
	acc := one(t, b.HandleClient(t0, "c2", "", zreqKey("S", "k")), protocol.ToClient, "c2")
	if _, md, _ := clientReply(t, acc); md.Job != id || !acc.Durable {
		t.Fatalf("resubmission got %s (Durable %v), want %s held for the commit: the store has no record of it yet", md.Job, acc.Durable, id)
	}
}
