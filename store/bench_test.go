package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zmws/zmws/protocol"
)

// benchID is a 26-byte ID like a ULID; IDs sort in i order.
func benchID(i int) string { return fmt.Sprintf("01J%023d", i) }

// smallJob is a freshly submitted job: 20 bytes of input, 2 parameters.
func smallJob(i int) *JobRecord {
	return &JobRecord{
		ID: benchID(i), Service: "STR-REV", State: protocol.JobQueued, Created: t0,
		Params: map[string]string{"str": "Hello, world", "lang": "en"},
		Input:  [][]byte{[]byte("twenty bytes input..")},
	}
}

// doneJob is smallJob finished, with output.
func doneJob(i, output int) *JobRecord {
	j := smallJob(i)
	code := 0
	j.State, j.Attempts, j.Started, j.Finished, j.Worker = protocol.JobComplete, 1, t0, t0.Add(time.Duration(i)), "00a1b2c3d4"
	j.ExitCode, j.Output = &code, make([]byte, output)
	return j
}

// BenchmarkCodec compares the binary layout with encoding/json on the same
// records.
func BenchmarkCodec(b *testing.B) {
	recs := map[string]*JobRecord{"small": smallJob(1), "done-4KiB": doneJob(1, 4<<10)}
	var buf []byte
	codecs := []struct {
		name   string
		encode func(*JobRecord) ([]byte, error)
		decode func([]byte) (JobRecord, error)
	}{
		// Reusing the buffer, as Commit does.
		{"binary", func(j *JobRecord) ([]byte, error) { buf = appendRecord(buf[:0], j); return buf, nil }, decodeRecord},
		{"json", func(j *JobRecord) ([]byte, error) { return json.Marshal(j) }, func(b []byte) (JobRecord, error) {
			var j JobRecord
			err := json.Unmarshal(b, &j)
			return j, err
		}},
	}
	for _, c := range codecs {
		for _, name := range []string{"small", "done-4KiB"} {
			rec := recs[name]
			enc, _ := c.encode(rec)
			enc = append([]byte(nil), enc...)
			b.Run(c.name+"/encode/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.encode(rec); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(enc)), "bytes/record")
			})
			b.Run(c.name+"/decode/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.decode(enc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func benchStore(b *testing.B, impl string) Store {
	switch impl {
	case "memory":
		return NewMemory()
	case "bolt":
		s, err := OpenBolt(filepath.Join(b.TempDir(), BoltFile), BoltOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	panic(impl)
}

// BenchmarkCommit measures Commit of batches of n new small jobs: one
// fsync per op for Bolt.
func BenchmarkCommit(b *testing.B) {
	for _, impl := range []string{"memory", "bolt"} {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", impl, n), func(b *testing.B) {
				s := benchStore(b, impl)
				defer s.Close()
				var batch Batch
				id := 0
				for b.Loop() {
					batch.Reset()
					for range n {
						batch.Jobs = append(batch.Jobs, smallJob(id))
						id++
					}
					if err := s.Commit(&batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(id)/b.Elapsed().Seconds(), "jobs/s")
			})
		}
	}
}

// BenchmarkCommit_Lifecycle is the broker's pattern: each Commit brings n
// jobs in (queued), starts the n before them (active) and finishes the n
// before those (complete, 100 bytes of output); jobs/s counts finished jobs.
func BenchmarkCommit_Lifecycle(b *testing.B) {
	for _, impl := range []string{"memory", "bolt"} {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", impl, n), func(b *testing.B) {
				s := benchStore(b, impl)
				defer s.Close()
				var batch Batch
				round := 0
				for b.Loop() {
					batch.Reset()
					for i := range n {
						batch.Jobs = append(batch.Jobs, smallJob(round*n+i))
						if round >= 1 {
							a := smallJob((round-1)*n + i)
							a.State, a.Attempts, a.Started, a.Worker = protocol.JobActive, 1, t0, "00a1b2c3d4"
							batch.Jobs = append(batch.Jobs, a)
						}
						if round >= 2 {
							batch.Jobs = append(batch.Jobs, doneJob((round-2)*n+i, 100))
						}
					}
					if err := s.Commit(&batch); err != nil {
						b.Fatal(err)
					}
					round++
				}
				b.ReportMetric(float64(max(0, round-2)*n)/b.Elapsed().Seconds(), "jobs/s")
			})
		}
	}
}

// benchJobs is the journal size of the Prune and Load benchmarks:
// ZMWS_BENCH_JOBS, default 100,000.
func benchJobs(b *testing.B) int {
	n := 100_000
	if v := os.Getenv("ZMWS_BENCH_JOBS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// fill commits n jobs made by mk in batches of 10,000.
func fill(b *testing.B, s Store, n int, mk func(i int) *JobRecord) {
	var batch Batch
	for i := range n {
		batch.Jobs = append(batch.Jobs, mk(i))
		if batch.Len() == 10_000 || i == n-1 {
			if err := s.Commit(&batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
}

// BenchmarkBolt_Prune prunes a journal of finished jobs (1 KiB of output
// each) to nothing while another goroutine commits single jobs, and reports
// the slowest of those commits: what Prune costs the broker's loop.
func BenchmarkBolt_Prune(b *testing.B) {
	n := benchJobs(b)
	var worst time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := benchStore(b, "bolt")
		fill(b, s, n, func(i int) *JobRecord { return doneJob(i, 1<<10) })
		var (
			wg       sync.WaitGroup
			stop     = make(chan struct{})
			commits  int
			slowest  time.Duration
			commitID = n
		)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if err := s.Commit(&Batch{Jobs: []*JobRecord{smallJob(commitID)}}); err != nil {
					b.Error(err)
					return
				}
				slowest = max(slowest, time.Since(start))
				commits++
				commitID++
			}
		})
		b.StartTimer()
		got, err := s.Prune(t0.Add(time.Hour), 0, 0)
		b.StopTimer()
		close(stop)
		wg.Wait()
		if err != nil || got != n {
			b.Fatalf("Prune = %d, %v; want %d", got, err, n)
		}
		worst = max(worst, slowest)
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "pruned/s")
	b.ReportMetric(float64(worst)/1e6, "max-commit-ms")
}

// BenchmarkBolt_Load loads a journal of queued jobs, as at start-up.
func BenchmarkBolt_Load(b *testing.B) {
	n := benchJobs(b)
	s := benchStore(b, "bolt")
	defer s.Close()
	fill(b, s, n, smallJob)
	for b.Loop() {
		snap, err := s.Load(100)
		if err != nil || len(snap.Jobs) != n {
			b.Fatalf("Load: %d jobs, %v", len(snap.Jobs), err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkBolt_Open opens a journal of ZMWS_BENCH_JOBS queued jobs: bare
// bbolt (whose open rebuilds the freelist by walking every page), OpenBolt
// (the header check, bbolt, Tx.Check) and Check (every record too).
func BenchmarkBolt_Open(b *testing.B) {
	n := benchJobs(b)
	path := filepath.Join(b.TempDir(), BoltFile)
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	fill(b, s, n, smallJob)
	s.Close()
	b.Run("bbolt", func(b *testing.B) {
		for b.Loop() {
			db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
			if err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
	b.Run("OpenBolt", func(b *testing.B) {
		for b.Loop() {
			s, err := OpenBolt(path, BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	b.Run("Check", func(b *testing.B) {
		for b.Loop() {
			if _, err := Check(path, BoltOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
