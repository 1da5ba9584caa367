package broker_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// The broker's dispatch path without sockets: what the state machine costs
// per job, with the frames a zmws client and the Go worker library send
// (18/MDP, meta frames, a 17-byte input as in scripts/bench).

var (
	benchV2    = protocol.Form{Version: protocol.V2}
	benchInput = []byte("hello zmws 12345\n")
)

func benchNew(durable bool) *broker.Broker {
	return broker.New(broker.Config{Heartbeat: time.Hour, Durable: durable, MaxQueue: 100_000_000})
}

func benchRequest(service string) [][]byte {
	return protocol.EncodeClient(protocol.Message{Form: benchV2, Cmd: protocol.CmdRequest, Service: service,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{}), benchInput}})
}

func benchReady(b *testing.B, br *broker.Broker, now time.Time, worker, service string) {
	frames := protocol.EncodeWorker(protocol.Message{Form: benchV2, Cmd: protocol.CmdReady, Service: service,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Worker: &protocol.WorkerDetails{Host: "h", PID: 1, Name: "bench"}})}})
	br.HandleWorker(now, worker, "", frames)
}

// benchJobFor returns the job ID of the REQUEST sent to worker in envs.
func benchJobFor(envs []protocol.Envelope, worker string) string {
	for _, e := range envs {
		if e.Peer != protocol.ToWorker || e.To != worker {
			continue
		}
		if m, err := protocol.DecodeWorker(e.Frames); err == nil && m.Cmd == protocol.CmdRequest {
			return string(m.Address)
		}
	}
	return ""
}

var benchFinalMeta = protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete})

func benchFinal(job string) [][]byte {
	return protocol.EncodeWorker(protocol.Message{Form: benchV2, Cmd: protocol.CmdReply, Address: []byte(job),
		Body: [][]byte{benchFinalMeta, []byte("54321 swmz olleh\n")}})
}

func benchHasClient(envs []protocol.Envelope, client string) bool {
	for _, e := range envs {
		if e.Peer == protocol.ToClient && e.To == client {
			return true
		}
	}
	return false
}

// BenchmarkDispatch_Sync is one SYNC- job per op: client REQUEST, dispatch
// to the idle worker, worker FINAL, reply to the client.
func BenchmarkDispatch_Sync(b *testing.B) { benchSync(b, benchNew(false)) }

// benchSync runs sync jobs through br, one per op.
func benchSync(b *testing.B, br *broker.Broker) {
	now := time.Unix(1000, 0)
	benchReady(b, br, now, "w1", "echo")
	req := benchRequest("SYNC-echo")
	b.ReportAllocs()
	for b.Loop() {
		job := benchJobFor(br.HandleClient(now, "c1", "", req), "w1")
		if job == "" {
			b.Fatal("no REQUEST to the worker")
		}
		if !benchHasClient(br.HandleWorker(now, "w1", "", benchFinal(job)), "c1") {
			b.Fatal("no reply to the client")
		}
	}
}

// BenchmarkDispatch_SyncEvents is BenchmarkDispatch_Sync with lifecycle
// events on: every subscriber (a nil Config.Subscribed), one to completed
// only, and none (the broker encodes nothing).
func BenchmarkDispatch_SyncEvents(b *testing.B) {
	for _, c := range []struct {
		name string
		subs func(string) bool
	}{
		{"all", nil},
		{"completed", func(t string) bool { return t == protocol.EventCompleted }},
		{"none", func(string) bool { return false }},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchSync(b, broker.New(broker.Config{Heartbeat: time.Hour, MaxQueue: 100_000_000, Events: true, Subscribed: c.subs}))
		})
	}
}

// BenchmarkDispatch_Metrics is BenchmarkDispatch_Sync and an async job
// per op (as BenchmarkDispatch_Async/memory) without and with
// Config.Stats: what the counts behind /metrics cost per job on the
// dispatch path (docs/PERFORMANCE.md, "Metrics cost").
func BenchmarkDispatch_Metrics(b *testing.B) {
	for _, stats := range []bool{false, true} {
		name := "off"
		if stats {
			name = "on"
		}
		b.Run("sync/"+name, func(b *testing.B) {
			benchSync(b, broker.New(broker.Config{Heartbeat: time.Hour, MaxQueue: 100_000_000, Stats: stats}))
		})
		b.Run("async/"+name, func(b *testing.B) {
			br := broker.New(broker.Config{Heartbeat: time.Hour, MaxQueue: 100_000_000, Stats: stats})
			now := time.Unix(1000, 0)
			benchReady(b, br, now, "w1", "echo")
			req := benchRequest("echo")
			b.ReportAllocs()
			for b.Loop() {
				// The job waits 1 ms and runs 2 ms: both histograms observe.
				job := benchJobFor(br.HandleClient(now, "c1", "", req), "w1")
				if job == "" {
					b.Fatal("no REQUEST to the worker")
				}
				br.HandleWorker(now.Add(2*time.Millisecond), "w1", "", benchFinal(job))
			}
			if st := br.Stats(); stats && st.Services[0].Completed == 0 {
				b.Fatal("nothing counted")
			}
		})
	}
}

// BenchmarkDispatch_Async is one async job per op: submit (reply with the
// job ID), dispatch, FINAL. Durable: the broker keeps records for a store,
// flushed every batch ops as the server's group commit does.
func BenchmarkDispatch_Async(b *testing.B) {
	for _, c := range []struct {
		durable bool
		batch   int
	}{{false, 0}, {true, 1}, {true, 8}, {true, 64}} {
		name := "memory"
		if c.durable {
			name = fmt.Sprintf("durable/batch=%d", c.batch)
		}
		b.Run(name, func(b *testing.B) {
			br := benchNew(c.durable)
			now := time.Unix(1000, 0)
			benchReady(b, br, now, "w1", "echo")
			req := benchRequest("echo")
			records := 0
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				job := benchJobFor(br.HandleClient(now, "c1", "", req), "w1")
				if job == "" {
					b.Fatal("no REQUEST to the worker")
				}
				br.HandleWorker(now, "w1", "", benchFinal(job))
				if i++; c.durable && i%c.batch == 0 {
					records += len(br.Flush().Jobs)
					br.Committed()
				}
			}
			if c.durable {
				b.ReportMetric(float64(records)/float64(i), "records/job")
			}
		})
	}
}

// BenchmarkQueue_Memory queues b.N async jobs for a service whose only
// worker is busy, and reports the Go heap per queued job (after GC), less
// the 17-byte input: the broker's own cost per queued job.
// allowAll is a broker.Access that allows everything, for benchmarks of
// the broker with keys.
type allowAll struct{}

func (allowAll) MayOffer(string, string) bool  { return true }
func (allowAll) MaySubmit(string, string) bool { return true }
func (allowAll) MayAdmin(string) bool          { return true }
func (allowAll) Generation() uint64            { return 1 }
func (allowAll) Name(user string) string       { return user }

// benchUser stands for a client's public key (40 characters of Z85).
const benchUser = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"

// BenchmarkQueue_Memory is the broker's heap per queued job; keyed=true
// is with CURVE (every job records the key that submitted it).
func BenchmarkQueue_Memory(b *testing.B) {
	for _, tc := range []struct{ durable, keyed bool }{{false, false}, {true, false}, {true, true}} {
		b.Run(fmt.Sprintf("durable=%v/keyed=%v", tc.durable, tc.keyed), func(b *testing.B) {
			durable := tc.durable
			br, user := benchNew(durable), ""
			if tc.keyed {
				br = broker.New(broker.Config{Heartbeat: time.Hour, Durable: durable, MaxQueue: 100_000_000, Access: allowAll{}})
				user = benchUser
			}
			now := time.Unix(1000, 0)
			frames := protocol.EncodeWorker(protocol.Message{Form: benchV2, Cmd: protocol.CmdReady, Service: "echo",
				Body: [][]byte{protocol.EncodeMeta(protocol.Meta{})}})
			br.HandleWorker(now, "w1", user, frames)
			req := benchRequest("echo")
			br.HandleClient(now, "c1", user, req) // keeps w1 busy: the rest queue
			if durable {
				br.Flush()
				br.Committed()
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				br.HandleClient(now, "c1", user, req)
				if n++; durable && n%64 == 0 {
					br.Flush()
					br.Committed()
				}
			}
			b.StopTimer()
			if durable {
				br.Flush()
				br.Committed()
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			perJob := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
			b.ReportMetric(perJob, "heap-B/job")
			b.ReportMetric(perJob-float64(len(benchInput)), "beyond-payload-B/job")
			runtime.KeepAlive(br)
		})
	}
}

// BenchmarkServerServices_60k: one page of SERVER-SERVICES (the default
// 1000) from a broker that knows 60,000 services of 255-byte names sharing
// a 250-byte prefix (the slowest names to compare): the worst case for
// paging, which unpaged made one reply of 25 MB.
func BenchmarkServerServices_60k(b *testing.B) {
	br := broker.New(broker.Config{Heartbeat: time.Hour, MaxServices: 70_000})
	now := time.Unix(1000, 0)
	pad := strings.Repeat("x", 250)
	for i := range 60_000 {
		benchReady(b, br, now, fmt.Sprint("w", i), fmt.Sprintf("%s%05d", pad, i))
	}
	req := protocol.EncodeClient(protocol.Message{Form: benchV2, Cmd: protocol.CmdRequest, Service: protocol.ServerServices,
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{After: pad + "30000"})}})
	b.ResetTimer()
	size := 0
	for b.Loop() {
		size = 0
		for _, f := range br.HandleClient(now, "c", "", req)[0].Frames {
			size += len(f)
		}
	}
	b.ReportMetric(float64(size), "reply-bytes")
}
