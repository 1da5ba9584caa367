package store

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// failedJob is a failed job of service owned by owner, finished i seconds
// after t0.
func failedJob(i int, service, owner string) *JobRecord {
	j := job(fmt.Sprintf("F%04d", i), protocol.JobFailed, t0.Add(time.Duration(i)*time.Second))
	j.Service, j.Owner, j.Code, j.Error = service, owner, protocol.CodeJobFailed, "exit status 1"
	j.Output = []byte("output a page leaves out")
	return j
}

// failedIDs walks every page of q (pages of limit) and returns the IDs.
func failedIDs(t *testing.T, s Store, q FailedQuery, limit int) []string {
	t.Helper()
	fa := s.(interface {
		Failed(FailedQuery) (FailedPage, error)
	})
	var out []string
	q.Limit = limit
	for range 1000 {
		p, err := fa.Failed(q)
		if err != nil {
			t.Fatalf("Failed(%+v): %v", q, err)
		}
		if len(p.Jobs) > limit {
			t.Fatalf("Failed(%+v): %d jobs, limit %d", q, len(p.Jobs), limit)
		}
		for _, r := range p.Jobs {
			if r.State != protocol.JobFailed || r.Output != nil || r.Code != protocol.CodeJobFailed ||
				(strings.HasPrefix(r.ID, "F") && (len(r.Input) != 1 || string(r.Input[0]) != "in")) {
				t.Fatalf("Failed lists job %s: %+v (want failed, its input, no output)", r.ID, r)
			}
			out = append(out, r.ID)
		}
		if p.Next == "" {
			return out
		}
		q.After = p.Next
	}
	t.Fatal("Failed never gave an empty next cursor")
	return nil
}

func fids(is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, fmt.Sprintf("F%04d", i))
	}
	return out
}

// The failed jobs are listed newest first, paged, filtered by service,
// owner and finish time, by both stores alike; a retried job leaves the
// listing, and comes back when it fails again, newest; a deleted or
// pruned one leaves it.
func TestStore_FailedIndex(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			var b Batch
			for i := 1; i <= 9; i++ {
				svc, owner := "a", "alice"
				if i%3 == 0 {
					svc = "b"
				}
				if i%2 == 0 {
					owner = "bob"
				}
				b.Jobs = append(b.Jobs, failedJob(i, svc, owner))
			}
			done := job("C0001", protocol.JobComplete, t0.Add(5*time.Second))
			open := job("Q0001", protocol.JobQueued, time.Time{})
			b.Jobs = append(b.Jobs, done, open)
			commit(t, s, &b)

			for _, limit := range []int{1, 2, 4, 100} {
				if got, want := failedIDs(t, s, FailedQuery{}, limit), fids(9, 8, 7, 6, 5, 4, 3, 2, 1); !slices.Equal(got, want) {
					t.Errorf("limit %d: %v, want %v", limit, got, want)
				}
			}
			if got, want := failedIDs(t, s, FailedQuery{Service: "b"}, 2), fids(9, 6, 3); !slices.Equal(got, want) {
				t.Errorf("service b: %v, want %v", got, want)
			}
			if got, want := failedIDs(t, s, FailedQuery{Owner: "bob", Service: "a"}, 1), fids(8, 4, 2); !slices.Equal(got, want) {
				t.Errorf("bob's of a: %v, want %v", got, want)
			}
			if got, want := failedIDs(t, s, FailedQuery{Since: t0.Add(7 * time.Second)}, 2), fids(9, 8, 7); !slices.Equal(got, want) {
				t.Errorf("since 7s: %v, want %v", got, want)
			}

			// Retried: queued again, then failed again later.
			again := failedJob(2, "a", "bob")
			again.State, again.Finished = protocol.JobQueued, time.Time{}
			put(t, s, again)
			if got, want := failedIDs(t, s, FailedQuery{}, 3), fids(9, 8, 7, 6, 5, 4, 3, 1); !slices.Equal(got, want) {
				t.Errorf("after a retry: %v, want %v", got, want)
			}
			again.State, again.Finished = protocol.JobFailed, t0.Add(time.Hour)
			put(t, s, again)
			if got, want := failedIDs(t, s, FailedQuery{}, 3), fids(2, 9, 8, 7, 6, 5, 4, 3, 1); !slices.Equal(got, want) {
				t.Errorf("after it failed again: %v, want %v", got, want)
			}
			// Completed on a retry.
			ok := failedJob(4, "a", "bob")
			ok.State = protocol.JobComplete
			put(t, s, ok)

			// Retention: a delete, and Prune of everything finished
			// before 6s.
			commit(t, s, &Batch{Deletes: []string{"F0009"}})
			if _, err := s.Prune(t0.Add(6*time.Second), 0, 0); err != nil {
				t.Fatal(err)
			}
			if got, want := failedIDs(t, s, FailedQuery{}, 2), fids(2, 8, 7, 6); !slices.Equal(got, want) {
				t.Errorf("after delete and prune: %v, want %v", got, want)
			}
		})
	}
}

// A cursor that does not parse is refused, naming it.
func TestStore_FailedBadCursor(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			fa := im.open(t).(interface {
				Failed(FailedQuery) (FailedPage, error)
			})
			if _, err := fa.Failed(FailedQuery{After: "nope", Limit: 1}); err == nil {
				t.Fatal("a bad cursor was taken")
			}
		})
	}
}

// The index survives a reopen, and a compaction; Check checks it.
func TestBolt_FailedIndexAcrossReopenAndCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	s := openBolt(t, path, BoltOptions{})
	put(t, s, failedJob(1, "a", ""), failedJob(2, "a", ""), job("C1", protocol.JobComplete, t0))
	closeBolt(t, s)
	if rep, err := Check(path, BoltOptions{}); err != nil || rep.Failed != 2 {
		t.Fatalf("Check: %+v, %v; want 2 failed", rep, err)
	}
	if _, err := Compact(path, BoltOptions{}); err != nil {
		t.Fatal(err)
	}
	if rep, err := Check(path, BoltOptions{}); err != nil || rep.Failed != 2 {
		t.Fatalf("Check after Compact: %+v, %v; want 2 failed (the index current)", rep, err)
	}
	s = openBolt(t, path, BoltOptions{})
	if got, want := failedIDs(t, s, FailedQuery{}, 1), fids(2, 1); !slices.Equal(got, want) {
		t.Errorf("after compact and reopen: %v, want %v", got, want)
	}
	closeBolt(t, s)
}

// The old journal (from before the index) opens with its failed job
// listed: the index is built at open. Check, before that, says the index
// is missing rather than failing.
func TestBolt_FailedIndexBuiltInAnOldJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	copyFile(t, oldJournal, path)
	rep, err := Check(path, BoltOptions{})
	if err != nil || rep.Failed != -1 {
		t.Fatalf("Check of the old journal: %+v, %v; want Failed -1 (no index)", rep, err)
	}
	s := openBolt(t, path, BoltOptions{})
	if got := failedIDs(t, s, FailedQuery{}, 10); !slices.Equal(got, []string{"01JQ0000000000000000000003"}) {
		t.Errorf("the old journal's failed jobs: %v", got)
	}
	closeBolt(t, s)
	if rep, err := Check(path, BoltOptions{}); err != nil || rep.Failed != 1 {
		t.Fatalf("Check after open: %+v, %v; want 1 failed", rep, err)
	}
}

// A write by code that does not keep the index (an older zmws, opened
// after a downgrade) leaves it stale; the next open builds it again, so a
// job completed meanwhile is not listed as failed.
func TestBolt_FailedIndexRebuiltAfterAnOldWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	s := openBolt(t, path, BoltOptions{})
	f := failedJob(1, "a", "")
	put(t, s, f, failedJob(2, "a", ""))
	closeBolt(t, s)

	// What an older zmws's Commit did: the record and the indexes it knew.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.State = protocol.JobComplete
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).Put([]byte(f.ID), appendRecord(nil, f))
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := Check(path, BoltOptions{}); err != nil || rep.Failed != -1 {
		t.Fatalf("Check: %+v, %v; want Failed -1 (stale)", rep, err)
	}
	s = openBolt(t, path, BoltOptions{})
	if got, want := failedIDs(t, s, FailedQuery{}, 10), fids(2); !slices.Equal(got, want) {
		t.Errorf("after the old writer: %v, want %v", got, want)
	}
	closeBolt(t, s)
}

// BenchmarkBolt_BuildFailedIndex is what OpenBolt does once to a journal
// from before the index of failed jobs: ZMWS_BENCH_JOBS finished jobs
// (100,000; every other one failed, with 1 KiB of output) looked up from
// the finished index and the failed ones indexed, in one transaction.
func BenchmarkBolt_BuildFailedIndex(b *testing.B) {
	n := benchJobs(b)
	s := benchStore(b, "bolt").(*Bolt)
	defer s.Close()
	fill(b, s, n, func(i int) *JobRecord {
		j := doneJob(i, 1024)
		if i%2 == 0 {
			j.State, j.Code = protocol.JobFailed, protocol.CodeJobFailed
		}
		return j
	})
	for b.Loop() {
		if err := s.db.Update(s.rebuildFailed); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// A bulk retry of 2,500 failed jobs walks the journal in three batches, as
// the server runs them (each batch's lookup answered by the journal, its
// changes committed before the next): every job is queued again once, and
// none is left in the index of failed jobs.
func TestBolt_BulkRetryWalksTheJournal(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), BoltFile), BoltOptions{})
	defer closeBolt(t, s)
	var b Batch
	for i := range 2500 {
		j := failedJob(i, "S", "")
		j.ID = fmt.Sprintf("01J%023d", i) // a job ID the broker parses
		j.Retries = -1
		b.Jobs = append(b.Jobs, j)
	}
	commit(t, s, &b)

	form := protocol.Form{Version: protocol.V2}
	br := broker.New(broker.Config{Archived: true, Durable: true, Heartbeat: time.Second})
	br.HandleWorker(t0, "w", "", protocol.EncodeWorker(protocol.Message{Form: form, Cmd: protocol.CmdReady, Service: "S",
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{})}}))
	br.HandleWorker(t0, "w", "", protocol.EncodeWorker(protocol.Message{Form: form, Cmd: protocol.CmdDisconnect}))
	seen := map[string]bool{}
	after, batches := "", 0
	for {
		meta := protocol.Meta{Params: map[string]string{protocol.ParamState: protocol.JobFailed, protocol.ParamService: "S"}, After: after}
		br.HandleClient(t0, "c", "", protocol.EncodeClient(protocol.Message{Form: form, Cmd: protocol.CmdRequest, Service: protocol.ServerRetry,
			Body: [][]byte{protocol.EncodeMeta(meta)}}))
		ls := br.Lookups()
		if len(ls) != 1 {
			t.Fatalf("%d lookups", len(ls))
		}
		br.LookedUp(t0, ls[0].Ask(s))
		commit(t, s, br.Flush())
		out := br.Committed()
		if len(out) != 1 {
			t.Fatalf("%d replies after the commit", len(out))
		}
		m, err := protocol.DecodeReply(out[0].Frames)
		if err != nil {
			t.Fatal(err)
		}
		md, rest, _, err := protocol.SplitMeta(m.Body)
		var rep protocol.RetryReport
		if err == nil {
			err = json.Unmarshal(rest[0], &rep)
		}
		if err != nil || len(rep.Refused) != 0 || rep.Requeued != len(rep.Jobs) {
			t.Fatalf("batch %d: %+v, %v", batches, rep, err)
		}
		for _, id := range rep.Jobs {
			if seen[id] {
				t.Fatalf("job %s retried twice", id)
			}
			seen[id] = true
		}
		batches++
		if md.Next == "" {
			break
		}
		after = md.Next
		if batches > 10 {
			t.Fatal("the walk does not end")
		}
	}
	if len(seen) != 2500 || batches != 3 {
		t.Errorf("%d jobs retried in %d batches, want 2500 in 3", len(seen), batches)
	}
	if left := failedIDs(t, s, FailedQuery{}, 1000); len(left) != 0 {
		t.Errorf("%d jobs still failed", len(left))
	}
}
