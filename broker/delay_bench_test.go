package broker_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
)

// BenchmarkDelayed_Memory is the broker's heap per job held, queued (as
// BenchmarkQueue_Memory) or delayed (meta delay_ms, a thousand different
// delays, submitted in a shuffled order), and the time per submission. Run
// it with -benchtime 1000000x for the figures at a million jobs
// (docs/PERFORMANCE.md).
func BenchmarkDelayed_Memory(b *testing.B) {
	for _, durable := range []bool{false, true} {
		for _, delayed := range []bool{false, true} {
			name := fmt.Sprintf("durable=%v/queued", durable)
			if delayed {
				name = fmt.Sprintf("durable=%v/delayed", durable)
			}
			b.Run(name, func(b *testing.B) {
				br := benchNew(durable)
				now := time.Unix(1000, 0)
				br.HandleWorker(now, "w1", "", protocol.EncodeWorker(protocol.Message{Form: benchV2, Cmd: protocol.CmdReady, Service: "echo",
					Body: [][]byte{protocol.EncodeMeta(protocol.Meta{})}}))
				br.HandleClient(now, "c1", "", benchRequest("echo")) // keeps w1 busy
				reqs := make([][][]byte, 1000)
				for i := range reqs {
					m := protocol.Meta{}
					if delayed {
						m.DelayMillis = int64(1+(i*7919)%1000) * 1000 // 1 s to 1000 s
					}
					reqs[i] = protocol.EncodeClient(protocol.Message{Form: benchV2, Cmd: protocol.CmdRequest, Service: "echo",
						Body: [][]byte{protocol.EncodeMeta(m), benchInput}})
				}
				flush := func() {
					if durable {
						br.Flush()
						br.Committed()
					}
				}
				flush()
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.ReportAllocs()
				n := 0
				for b.Loop() {
					br.HandleClient(now, "c1", "", reqs[n%len(reqs)])
					if n++; n%64 == 0 {
						flush()
					}
				}
				b.StopTimer()
				flush()
				runtime.GC()
				runtime.ReadMemStats(&after)
				perJob := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
				b.ReportMetric(perJob, "heap-B/job")
				b.ReportMetric(perJob-float64(len(benchInput)), "beyond-payload-B/job")
				q := br.Queue()[0]
				if delayed && q.Scheduled != n || !delayed && q.Queued != n {
					b.Fatalf("%d jobs submitted, queue %d, scheduled %d", n, q.Queued, q.Scheduled)
				}
				runtime.KeepAlive(br)
			})
		}
	}
}
