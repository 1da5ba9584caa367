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
