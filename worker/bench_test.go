package worker_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// BenchmarkWorker_Echo measures a worker slot serving short jobs from a
// bare ROUTER on loopback (no broker): one job at a time, one with a
// partial before its result, and with Prefetch 4 (five jobs in flight).
// cpu-ns/op is the process's user and system CPU per job (the ROUTER's
// share included, the same before and after a change to the worker), and
// csw/op the process's context switches per job, a measure of wake-ups:
//
//	go test -run '^$' -bench Worker_Echo -benchmem -count 5 ./worker
func BenchmarkWorker_Echo(b *testing.B) {
	ok := worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) { return []byte("ok"), nil })
	partial := worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
		j.Write([]byte("part"))
		return []byte("ok"), nil
	})
	for _, bc := range []struct {
		name     string
		h        worker.Handler
		prefetch int
	}{{"plain", ok, 0}, {"partial", partial, 0}, {"prefetch4", ok, 4}} {
		b.Run(bc.name, func(b *testing.B) { benchEcho(b, bc.h, bc.prefetch) })
	}
}

func benchEcho(b *testing.B, h worker.Handler, prefetch int) {
	router := zmqtest.Socket(b, zmq.ROUTER)
	if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
		b.Fatal(err)
	}
	ep, _ := router.GetLastEndpoint()
	w, err := worker.New(worker.Config{Brokers: []string{ep}, Service: "ECHO", Handler: h, Prefetch: prefetch,
		Heartbeat: time.Second, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	zmqtest.Go(b, "worker", w.Run)
	form := protocol.Form{Version: protocol.V2}
	recv := func() (string, protocol.Message) {
		for {
			frames, err := router.RecvMessageBytes(0)
			if err != nil {
				b.Fatal(err)
			}
			m, err := protocol.DecodeWorker(frames[1:])
			if err != nil {
				b.Fatal(err)
			}
			if m.Cmd == protocol.CmdHeartbeat {
				continue
			}
			return string(frames[0]), m
		}
	}
	id, m := recv()
	if m.Cmd != protocol.CmdReady {
		b.Fatalf("got %v, want READY", m.Cmd)
	}
	req := protocol.EncodeWorker(protocol.Message{Form: form, Cmd: protocol.CmdRequest, Address: []byte("J"),
		Body: [][]byte{protocol.EncodeMeta(protocol.Meta{Job: "J"})}})
	send := func() {
		if _, err := router.SendMessage(id, req); err != nil {
			b.Fatal(err)
		}
	}
	finals := func() {
		for {
			if _, m := recv(); m.Cmd == protocol.CmdReply {
				return
			}
		}
	}
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if n == 0 {
			for range 1 + prefetch {
				send()
			}
		} else {
			send()
		}
		finals()
		n++
	}
	b.StopTimer()
	for range prefetch {
		finals()
	}
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
	b.ReportMetric(float64(after.Nvcsw+after.Nivcsw-before.Nvcsw-before.Nivcsw)/float64(n), "csw/op")
}
