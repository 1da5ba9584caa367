package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
)

// Tests of how the features meet: priorities and delays, pause and drain,
// schedules, Titanic, resends and the rate limits.

// titanic.close of a scheduled job deletes it: it must not run at its
// time, nor count as scheduled after.
func TestBroker_TitanicCloseOfScheduledJob(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Tick(t0)
	id := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 1000})
	wantTSP(t, b.HandleClient(t0, "c", "", ti(protocol.TitanicClose, id)), "c", protocol.TitanicClose, protocol.TSPOK)
	if s := serviceInfo(t, b, "S"); s.Scheduled != 0 || s.Failed != 1 {
		t.Fatalf("after the close: %+v, want nothing scheduled and the job failed (cancelled)", s)
	}
	none(t, b.Tick(at(2*time.Second)), protocol.ToWorker)
	if q := b.Queue()[0]; q.Queued != 0 || q.Scheduled != 0 {
		t.Fatalf("SERVER-QUEUE after the job's time: %+v", q)
	}
}

// A submission refused by the client's own limit takes nothing from the
// service's rate (--rate): a refusal takes nothing from the allowance.
func TestRate_ClientRefusalTakesNothingFromServiceRate(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, Rates: map[string]broker.Rate{"S": {PerSecond: 1, Burst: 2}},
		ClientRate: broker.Rate{PerSecond: 1, Burst: 1}})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if md := submitFrom(t, b, t0, "a1", "", "10.0.0.1", "S"); md.Status != protocol.StatusAccepted {
		t.Fatalf("first: %+v", md)
	}
	if md := submitFrom(t, b, t0, "a2", "", "10.0.0.1", "S"); md.Code != protocol.CodeRateLimited || !strings.Contains(md.Error, "--client-rate") {
		t.Fatalf("second from the same client: %+v, want refused by --client-rate", md)
	}
	if md := submitFrom(t, b, t0, "b1", "", "10.0.0.2", "S"); md.Status != protocol.StatusAccepted {
		t.Fatalf("another client, within the service's burst of 2: %+v", md)
	}
}

// A submission refused queue_full takes nothing from the service's rate.
func TestRate_QueueFullRefusalTakesNothingFromServiceRate(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, MaxQueue: 1, Rates: map[string]broker.Rate{"S": {PerSecond: 1, Burst: 2}}})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	id := submitMeta(t, b, t0, "S", protocol.Meta{})
	_, md, _ := clientReply(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToClient, "c"))
	if md.Code != protocol.CodeQueueFull {
		t.Fatalf("second: %+v, want queue_full", md)
	}
	admin(t, b, t0, protocol.ServerCancel, id)
	if id := submitMeta(t, b, t0, "S", protocol.Meta{}); id == "" {
		t.Fatal("no job")
	}
}

// Scheduled jobs count against --max-queue (docs/PROTOCOL.md), for a
// retry and a schedule's tick as for a submission.
func TestBroker_ScheduledJobsCountAgainstTheQueueBoundForRetryAndTick(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, MaxQueue: 2, History: 10,
		Schedules: []broker.Schedule{every1s("s", "S")}})
	b.HandleWorker(t0, "w", "", readyZ("S"))
	b.Tick(t0)
	failed := failJobs(t, b, "w", "S", 1, t0)
	b.HandleWorker(t0, "w", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 60_000})
	submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 60_000})
	refusedWith(t, b.HandleClient(t0, "c", "", zreq("S", nil)), "c", protocol.CodeQueueFull)
	refusedWith(t, b.HandleClient(t0, "c", "", zreq(protocol.ServerRetry, nil, failed[0])), "c", protocol.CodeQueueFull)
	b.Tick(at(1500 * time.Millisecond))
	if s := schedInfo(t, b, "s"); s.Fired != 0 || s.Skipped != 1 {
		t.Fatalf("a tick into a queue full of scheduled jobs: %+v, want it skipped", s)
	}
	if s := serviceInfo(t, b, "S"); s.Queued+s.Scheduled != 2 {
		t.Fatalf("service %+v: past the bound of 2", s)
	}
}

// A worker drained by its identity stays drained through a pause and
// resume of its service: SERVER-RESUME ends the service's pause or drain,
// not the worker's, which ends with its connection.
func TestDrain_WorkerDrainOutlivesServiceResume(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	job, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	admin(t, b, t0, protocol.ServerDrain, "w1")
	b.HandleClient(t0, "c", "", zreq("S", nil)) // waits
	admin(t, b, t0, protocol.ServerPause, "S")
	admin(t, b, t0, protocol.ServerResume, "S")
	out := b.HandleWorker(t0, "w1", "", final(job, protocol.Meta{Status: protocol.StatusComplete}))
	if !drainedBy(t, out, "w1") || len(requests(out)) != 0 {
		t.Fatalf("the drained worker's job done after a pause and resume of its service: %+v, want it told to stop and given nothing", out)
	}
	if s := serviceInfo(t, b, "S"); s.Queued != 1 {
		t.Fatalf("service %+v: want the job queued for another worker", s)
	}
}

// A resend attached to a sync job (--dedupe-window) takes no
// --client-concurrency permit and no --client-rate token, and the job's
// end gives its one permit back once.
func TestDedupe_ResendTakesNoClientPermit(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, DedupeWindow: 30 * time.Second, ClientConcurrency: 1,
		ClientRate: broker.Rate{PerSecond: 1, Burst: 2}})
	b.HandleWorker(t0, "w1", "", readyStock("S"))
	sync := func(now time.Time, from, body string) []protocol.Envelope {
		return b.HandleClientFrom(now, from, "", "10.0.0.1", request(v1, "SYNC-S", []byte(body)))
	}
	job, _, _ := dispatched(t, one(t, sync(t0, "c1", "x"), protocol.ToWorker, "w1"))
	for _, c := range []string{"c2", "c3", "c4"} { // past the burst of 2 and the concurrency of 1: attached all the same
		if out := sync(t0, c, "x"); len(out) != 0 {
			t.Fatalf("resend from %s: %+v, want it to wait for the job", c, out)
		}
	}
	out := b.HandleWorker(t0, "w1", "", workerMsg(v1, protocol.CmdReply, job, []byte("X")))
	for _, c := range []string{"c1", "c2", "c3", "c4"} {
		stockReply(t, out, c)
	}
	// One token left of the burst, the permit back: another job passes,
	// and holds the one permit.
	one(t, sync(t0, "c5", "y"), protocol.ToWorker, "w1")
	got := stockReply(t, b.HandleClientFrom(at(2*time.Second), "c6", "", "10.0.0.1", request(v1, "SYNC-S", []byte("z"))), "c6")
	if len(got) < 3 || got[0] != protocol.FailFrame || got[1] != protocol.CodeRateLimited || !strings.Contains(got[2], "--client-concurrency") {
		t.Fatalf("a second sync job in flight: %q, want refused by --client-concurrency", got)
	}
}

// A SERVER-RETRY of failed jobs, one or in bulk, queues them again: the
// service's failed count stays (the failure happened), its queue grows,
// and a cancel of the retried job counts one failure more.
func TestRetry_Counts(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour, History: 10})
	b.HandleWorker(t0, "w", "", readyZ("S"))
	failed := failJobs(t, b, "w", "S", 3, t0)
	b.HandleWorker(at(time.Minute), "w", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	admin(t, b, at(time.Minute), protocol.ServerRetry, failed[0])
	rep, _ := retryReport(t, one(t, b.HandleClient(at(time.Minute), "c", "",
		zquery(protocol.ServerRetry, protocol.Meta{Params: failedParams()})), protocol.ToClient, "c"))
	if rep.Requeued != 2 {
		t.Fatalf("bulk retry: %+v", rep)
	}
	if s := serviceInfo(t, b, "S"); s.Queued != 3 || s.Failed != 3 || s.Active != 0 {
		t.Fatalf("after the retries: %+v", s)
	}
	admin(t, b, at(time.Minute), protocol.ServerCancel, failed[1])
	if s := serviceInfo(t, b, "S"); s.Queued != 2 || s.Failed != 4 {
		t.Fatalf("after a cancel: %+v", s)
	}
}

// A scheduled job that comes due on a paused service queues and is not
// dispatched; resume dispatches by priority, then submission order.
func TestPause_ScheduledJobsComeDueQueuedResumeByPriority(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.Tick(t0)
	admin(t, b, t0, protocol.ServerPause, "S")
	lo := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 500})
	hi := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 1000, Priority: 5})
	now := submitMeta(t, b, t0, "S", protocol.Meta{})
	none(t, b.Tick(at(2*time.Second)), protocol.ToWorker)
	if s := serviceInfo(t, b, "S"); s.Queued != 3 || s.Scheduled != 0 || s.Active != 0 {
		t.Fatalf("paused service after its jobs' time: %+v, want 3 queued", s)
	}
	out, _ := admin(t, b, at(2*time.Second), protocol.ServerResume, "S")
	first, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	got := drain(t, b, at(2*time.Second), "w1", first)
	if want := []string{hi, now, lo}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("order after resume %v, want %v", got, want)
	}
}

// A scheduled job of a paused service cancelled: counted failed once, no
// longer scheduled, and the service can be forgotten once resumed.
func TestPause_CancelScheduledThenForget(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	admin(t, b, t0, protocol.ServerPause, "S")
	id := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 1000})
	_, body := admin(t, b, t0, protocol.ServerForget, "S")
	if !strings.HasPrefix(string(body[0]), protocol.FailFrame) || !strings.Contains(string(body[2]), "1 delayed") {
		t.Fatalf("forget of a service with a scheduled job: %q", body)
	}
	admin(t, b, t0, protocol.ServerCancel, id)
	if s := serviceInfo(t, b, "S"); s.Scheduled != 0 || s.Failed != 1 || s.Queued != 0 {
		t.Fatalf("after the cancel: %+v", s)
	}
	if _, body := admin(t, b, t0, protocol.ServerForget, "S"); !strings.Contains(string(body[len(body)-1]), "paused") {
		t.Fatalf("forget of the paused service after the cancel: %q, want refused: it is paused", body)
	}
	admin(t, b, t0, protocol.ServerResume, "S")
	if _, body := admin(t, b, t0, protocol.ServerForget, "S"); strings.HasPrefix(string(body[0]), protocol.FailFrame) {
		t.Fatalf("forget after the cancel and a resume: %q", body)
	}
	none(t, b.Tick(at(2*time.Second)), protocol.ToWorker)
}

// A drained worker runs the jobs it prefetched, then stops; none goes to it
// after the drain, and a scheduled job due meanwhile waits for another.
func TestDrain_WorkerWithPrefetchedJobs(t *testing.T) {
	b := newBroker(t, broker.Config{Heartbeat: time.Hour})
	b.HandleWorker(t0, "w1", "", readyPrefetch("S", 1))
	b.Tick(t0)
	j1, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	j2, _, _ := dispatched(t, one(t, b.HandleClient(t0, "c", "", zreq("S", nil)), protocol.ToWorker, "w1"))
	late := submitMeta(t, b, t0, "S", protocol.Meta{DelayMillis: 100})
	admin(t, b, t0, protocol.ServerDrain, "w1")
	none(t, b.Tick(at(time.Second)), protocol.ToWorker)
	out := b.HandleWorker(at(time.Second), "w1", "", final(j1, protocol.Meta{Status: protocol.StatusComplete}))
	none(t, out, protocol.ToWorker)
	out = b.HandleWorker(at(time.Second), "w1", "", final(j2, protocol.Meta{Status: protocol.StatusComplete}))
	if !drainedBy(t, out, "w1") || len(requests(out)) != 0 {
		t.Fatalf("drained worker's last job done: %+v, want it told to stop and given nothing", out)
	}
	if got, _, _ := dispatched(t, one(t, b.HandleWorker(at(time.Second), "w2", "", readyZ("S")), protocol.ToWorker, "w2")); got != late {
		t.Fatalf("the new worker got %s, want the scheduled job %s", got, late)
	}
}

// readyPrefetch is a zmws worker's READY asking for prefetch.
func readyPrefetch(service string, n int) [][]byte {
	return protocol.EncodeWorker(protocol.Message{Form: v2, Cmd: protocol.CmdReady, Service: service,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Prefetch: n})}})
}

// A schedule's tick on a paused or draining service queues its job, like
// any submission; resume dispatches it.
func TestPause_ScheduleTickQueues(t *testing.T) {
	b := scheduled(t, every1s("s", "S"))
	b.Tick(t0)
	admin(t, b, t0, protocol.ServerDrain, "S")
	b.HandleWorker(t0, "w1", "", readyZ("S")) // refused: draining
	b.Tick(at(1500 * time.Millisecond))
	if s := serviceInfo(t, b, "S"); s.Queued != 1 || schedInfo(t, b, "s").Fired != 1 {
		t.Fatalf("tick on a draining service: %+v %+v", s, schedInfo(t, b, "s"))
	}
	admin(t, b, at(1500*time.Millisecond), protocol.ServerResume, "S")
	one(t, b.HandleWorker(at(1500*time.Millisecond), "w2", "", readyZ("S")), protocol.ToWorker, "w2")
}

// SERVER-RESUME and SERVER-DRAIN visit a service's workers in routing-id
// order, not the map's: which worker gets the next job after a resume, and
// the order the drained are told to stop in, depend on the input alone
// (so a seed of the random-sequence test replays).
func TestDrain_ResumeAndDrainInRoutingIDOrder(t *testing.T) {
	next := map[string]int{}   // who got the job submitted after the resume
	orders := map[string]int{} // the order of the DISCONNECTs of a drain
	for range 40 {
		b := broker.New(broker.Config{Heartbeat: time.Hour})
		for i := range 6 {
			b.HandleWorker(t0, fmt.Sprintf("w%d", i), "", readyPrefetch("S", 1))
			b.HandleWorker(t0, fmt.Sprintf("v%d", i), "", readyZ("T"))
		}
		for range 6 {
			b.HandleClient(t0, "c", "", zreq("S", nil))
		}
		admin(t, b, t0, protocol.ServerDrain, "S")
		admin(t, b, t0, protocol.ServerResume, "S")
		for _, e := range requests(b.HandleClient(t0, "c", "", zreq("S", nil))) {
			next[e.To]++
		}
		out, _ := admin(t, b, t0, protocol.ServerDrain, "T")
		var order []string
		for _, e := range commands(out, protocol.CmdDisconnect) {
			order = append(order, e.To)
		}
		orders[strings.Join(order, " ")]++
	}
	if len(next) != 1 || len(orders) != 1 {
		t.Fatalf("after a drain and resume the next job went to %v; a drain's DISCONNECTs came in the orders %v: want one each", next, orders)
	}
}

// titanic.close of a job with an idempotency key, then a submission under
// the key before the delete is committed: the journal keeps the key for
// the closed job until then, so the batch must not hold a new job under
// it (the journal would refuse the whole batch, every submission in it,
// and keep the closed job, its delete lost with the batch).
func TestBroker_TitanicCloseOfKeyedJobThenTheKeyAgain(t *testing.T) {
	st := store.NewMemory()
	b := newBroker(t, broker.Config{Durable: true, Heartbeat: time.Hour})
	commit := func() []protocol.Envelope {
		t.Helper()
		if err := st.Commit(b.Flush()); err != nil {
			t.Fatalf("the journal refused the broker's batch: %v", err)
		}
		return b.Committed()
	}
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	b.HandleWorker(t0, "w1", "", workerMsg(v2, protocol.CmdDisconnect, ""))
	commit()
	keyed := request(v2, "S", protocol.EncodeMeta(protocol.Meta{Key: "k", DelayMillis: 60_000}))
	b.HandleClient(t0, "c", "", keyed)
	_, md, _ := clientReply(t, one(t, commit(), protocol.ToClient, "c"))
	first := md.Job
	b.HandleClient(t0, "t", "", ti(protocol.TitanicClose, first))
	b.HandleClient(t0, "c2", "", keyed)          // the key is free: a new job
	b.HandleClient(t0, "c3", "", zreq("S", nil)) // another client's job in the same batch
	out := commit()
	wantTSP(t, toClient(out, "t"), "t", protocol.TitanicClose, protocol.TSPOK)
	_, md, _ = clientReply(t, one(t, toClient(out, "c2"), protocol.ToClient, "c2"))
	if md.Status != protocol.StatusAccepted || md.Job == first {
		t.Fatalf("the key after the close: %+v, want a new job", md)
	}
	second := md.Job
	if _, md, _ := clientReply(t, one(t, toClient(out, "c3"), protocol.ToClient, "c3")); md.Status != protocol.StatusAccepted {
		t.Fatalf("another job of the batch: %+v", md)
	}
	if _, ok, _ := st.Job(first); ok {
		t.Fatalf("closed job %s still in the journal", first)
	}
	if rec, ok, _ := st.Job(second); !ok || rec.Key != "k" {
		t.Fatalf("the new job's record: %+v (%v)", rec, ok)
	}
	// The key names the new job now.
	got := toClient(b.HandleClient(t0, "c4", "", keyed), "c4")
	if len(got) == 0 {
		got = toClient(commit(), "c4") // held for the commit
	}
	if _, md, _ := clientReply(t, one(t, got, protocol.ToClient, "c4")); md.Job != second {
		t.Fatalf("the key again: %+v, want job %s", md, second)
	}
}

// toClient is the envelopes of out to c.
func toClient(out []protocol.Envelope, c string) []protocol.Envelope {
	var got []protocol.Envelope
	for _, e := range out {
		if e.To == c {
			got = append(got, e)
		}
	}
	return got
}
