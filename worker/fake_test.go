package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
)

// wait is the generous deadline for anything the tests expect to happen.
const wait = 5 * time.Second

// got is one message a fake broker received.
type got struct {
	id  string
	msg protocol.Message
	raw [][]byte // frames after the identity
	at  time.Time
}

// fakeBroker is a scripted broker: a ROUTER owned by one goroutine that
// reports every message it receives on in and sends what the test puts on
// out. Unless silent, it answers each HEARTBEAT with one, which keeps a
// worker's connection alive.
type fakeBroker struct {
	ep     string
	in     chan got
	out    chan [][]byte // identity, then frames
	silent atomic.Bool
	paused atomic.Bool // receive nothing (sending goes on)
}

// newFakeBroker starts a fake broker; opts set socket options before it runs.
func newFakeBroker(t *testing.T, opts ...func(*zmq.Socket)) *fakeBroker {
	t.Helper()
	sock := zmqtest.Socket(t, zmq.ROUTER)
	for _, o := range opts {
		o(sock) // before Bind: the listener copies the options
	}
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := sock.GetLastEndpoint()
	b := &fakeBroker{ep: ep, in: make(chan got, 4096), out: make(chan [][]byte, 64)}
	stop, done := make(chan struct{}), make(chan struct{})
	go b.loop(t, sock, stop, done)
	t.Cleanup(func() { close(stop); <-done }) // runs before zmqtest closes sock
	return b
}

func (b *fakeBroker) loop(t *testing.T, sock *zmq.Socket, stop, done chan struct{}) {
	defer close(done)
	p := zmq.NewPoller()
	p.Add(sock, zmq.POLLIN)
	for {
		select {
		case <-stop:
			return
		default:
		}
	send:
		for {
			select {
			case f := <-b.out:
				if _, err := sock.SendMessage(f); err != nil {
					t.Errorf("fake broker send: %v", err)
				}
			default:
				break send
			}
		}
		if b.paused.Load() {
			time.Sleep(2 * time.Millisecond) // the poll interval while paused
			continue
		}
		polled, err := p.Poll(2 * time.Millisecond)
		if err != nil || len(polled) == 0 {
			continue
		}
		frames, err := sock.RecvMessageBytes(0)
		if err != nil || len(frames) < 1 {
			continue
		}
		id, raw := frames[0], frames[1:]
		m, err := protocol.DecodeWorker(raw)
		if err != nil {
			t.Errorf("fake broker: worker sent malformed %q: %v", zmqtest.Join(raw), err)
			continue
		}
		if m.Cmd == protocol.CmdHeartbeat && !b.silent.Load() {
			sock.SendMessage(id, protocol.EncodeWorker(protocol.Message{Form: wireForm, Cmd: protocol.CmdHeartbeat}))
		}
		b.in <- got{id: string(id), msg: m, raw: raw, at: time.Now()}
	}
}

// next returns the next message that is not a HEARTBEAT.
func (b *fakeBroker) next(t *testing.T) got {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case g := <-b.in:
			if g.msg.Cmd != protocol.CmdHeartbeat {
				return g
			}
		case <-deadline:
			t.Fatalf("fake broker %s: no message within %v", b.ep, wait)
		}
	}
}

// expect returns the next message that is not a HEARTBEAT and checks its command.
func (b *fakeBroker) expect(t *testing.T, cmd protocol.Command) got {
	t.Helper()
	g := b.next(t)
	if g.msg.Cmd != cmd {
		t.Fatalf("got %v from %s (%s), want %v", g.msg.Cmd, g.id, zmqtest.Join(g.raw), cmd)
	}
	return g
}

// quiet checks that nothing but heartbeats arrives for d.
func (b *fakeBroker) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case g := <-b.in:
			if g.msg.Cmd != protocol.CmdHeartbeat {
				t.Fatalf("got %v from %s (%s), want silence", g.msg.Cmd, g.id, zmqtest.Join(g.raw))
			}
		case <-deadline:
			return
		}
	}
}

func (b *fakeBroker) sendRaw(id string, frames ...[]byte) {
	b.out <- append([][]byte{[]byte(id)}, frames...)
}

func (b *fakeBroker) send(id string, m protocol.Message) {
	m.Form = wireForm
	b.sendRaw(id, protocol.EncodeWorker(m)...)
}

// request sends a zmws REQUEST for job with meta and input frames.
func (b *fakeBroker) request(id, job string, meta protocol.Meta, input ...[]byte) {
	meta.Job = job
	b.send(id, protocol.Message{Cmd: protocol.CmdRequest, Address: []byte(job),
		Body: append([][]byte{protocol.EncodeMeta(meta)}, input...)})
}

// final checks that g is a FINAL for job and returns its meta and output.
func final(t *testing.T, g got, job string) (protocol.Meta, []string) {
	t.Helper()
	if g.msg.Cmd != protocol.CmdReply || string(g.msg.Address) != job {
		t.Fatalf("got %v for %q (%s), want FINAL for %q", g.msg.Cmd, g.msg.Address, zmqtest.Join(g.raw), job)
	}
	meta, rest, ok, err := protocol.SplitMeta(g.msg.Body)
	if !ok || err != nil {
		t.Fatalf("FINAL body %q: meta ok=%v err=%v", zmqtest.Join(g.msg.Body), ok, err)
	}
	return meta, zmqtest.Strings(rest)
}

// testConfig is a Config with fast heartbeats. Its liveness window (500ms)
// is wide enough that a slow turn of a loaded test machine is not taken for
// a dead broker; tests about silence narrow it.
func testConfig(t *testing.T, h Handler, brokers ...string) Config {
	return Config{
		Brokers:      brokers,
		Service:      "ECHO",
		Handler:      h,
		Heartbeat:    50 * time.Millisecond,
		Liveness:     10,
		ReconnectMin: 10 * time.Millisecond,
		ReconnectMax: 50 * time.Millisecond,
		Grace:        wait,
		Protocol:     protocol.DialectZMWS, // auto has tests of its own (plain_test.go)
		Logger:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel),
	}
}

// start runs a Worker for cfg until the test ends. stop cancels it and
// returns Run's error; calling it again returns the same error.
func start(t *testing.T, cfg Config) (stop func() error) {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return run(t, w)
}

// run runs w until the test ends, like start.
func run(t *testing.T, w *Worker) (stop func() error) {
	t.Helper()
	cfg := w.cfg
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var (
		stopped bool
		runErr  error
	)
	stop = func() error {
		t.Helper()
		if stopped {
			return runErr
		}
		cancel()
		select {
		case runErr = <-errc:
		case <-time.After(wait + cfg.Grace):
			t.Fatalf("Run did not return after cancel")
		}
		stopped = true
		return runErr
	}
	t.Cleanup(func() { stop() })
	return stop
}

// block is a handler that reports each job on started and returns when
// release is closed or its ctx is done.
type block struct {
	started chan *Job
	release chan struct{}
}

func newBlock() *block { return &block{started: make(chan *Job, 16), release: make(chan struct{})} }

func (b *block) ServeJob(ctx context.Context, j *Job) ([]byte, error) {
	b.started <- j
	select {
	case <-b.release:
		return []byte("released " + j.ID), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func recvJob(t *testing.T, c <-chan *Job) *Job {
	t.Helper()
	select {
	case j := <-c:
		return j
	case <-time.After(wait):
		t.Fatalf("no job started within %v", wait)
		return nil
	}
}

// wireForm is how a zmws worker speaks to a zmws broker: 18/MDP without
// the empty delimiter.
var wireForm = protocol.Form{Version: protocol.V2}
