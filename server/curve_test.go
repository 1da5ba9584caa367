package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/curvetest"
	"github.com/zmws/zmws/internal/syncbuf"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/server"
	"github.com/zmws/zmws/worker"
)

// secureEntries: an admin client, a client that may submit to A* only, a
// worker that may offer anything and one that may offer A* only.
var secureEntries = []curvetest.Entry{
	{Name: "alice", Role: auth.RoleClient, Rights: auth.Rights{Admin: true, Watch: true}},
	{Name: "bob", Role: auth.RoleClient, Rights: auth.Rights{Services: []string{"A*"}}},
	{Name: "wall", Role: auth.RoleWorker},
	{Name: "wa", Role: auth.RoleWorker, Rights: auth.Rights{Services: []string{"A*"}}},
}

// startSecure runs a CURVE server with secureEntries and an unlisted key
// "mallory".
func startSecure(t *testing.T) (*server.Server, *curvetest.Fixture, *auth.Keys) {
	t.Helper()
	f := curvetest.New(t, secureEntries, "mallory", "carol")
	keys := f.Keys(t)
	srv := start(t, server.Config{Curve: &server.Curve{Key: f.Broker, Keys: keys}})
	return srv, f, keys
}

// countingWorker runs a zmws worker of service with keys until the test
// ends and returns the count of jobs it ran.
func countingWorker(t *testing.T, ep, service string, keys *curve.Client) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	w, err := worker.New(worker.Config{
		Brokers: []string{ep}, Service: service, Curve: keys,
		Heartbeat: 100 * time.Millisecond, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *worker.Job) ([]byte, error) {
			n.Add(1)
			return []byte("done"), nil
		}),
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "worker").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "worker "+service, w.Run)
	return &n
}

func newClient(t *testing.T, ep string, keys *curve.Client) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Broker: ep, Curve: keys, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCurve_OnlyAuthorizedWorkersGetJobs(t *testing.T) {
	srv, f, _ := startSecure(t)
	ep := srv.WorkerEndpoint()
	other, _, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	// The rogues start first and keep trying while the jobs run.
	rogues := map[string]*atomic.Int64{
		"no CURVE":            countingWorker(t, ep, "A1", nil),
		"wrong broker key":    countingWorker(t, ep, "A1", &curve.Client{Broker: curve.Public{Key: other}, Own: f.Pair(t, "wall")}),
		"unauthorized key":    countingWorker(t, ep, "A1", f.Client(t, "mallory")),
		"client key (worker)": countingWorker(t, ep, "A1", f.Client(t, "alice")),
	}
	good := countingWorker(t, ep, "A1", f.Client(t, "wall"))
	c := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	ctx := context.Background()
	zmqtest.Eventually(t, "the authorized worker", wait, func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) > 0
	})
	const jobs = 20
	for i := range jobs {
		res, err := c.Call(ctx, "A1", client.Request{Params: map[string]string{"i": fmt.Sprint(i)}}, nil)
		if err != nil || res.Status != protocol.StatusComplete {
			t.Fatalf("job %d: %v %+v", i, err, res)
		}
	}
	if got := good.Load(); got != jobs {
		t.Errorf("authorized worker ran %d jobs, want %d", got, jobs)
	}
	for name, n := range rogues {
		if got := n.Load(); got != 0 {
			t.Errorf("worker with %s ran %d jobs, want 0", name, got)
		}
	}
	ws, err := c.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 {
		t.Errorf("SERVER-WORKERS lists %d workers, want only the authorized one: %+v", len(ws), ws)
	}
}

// curveDealer connects a raw DEALER with keys.
func curveDealer(t *testing.T, ep string, keys *curve.Client) *zmq.Socket {
	t.Helper()
	s := zmqtest.Socket(t, zmq.DEALER)
	if err := keys.Apply(s); err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(ep); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCurve_WorkerOutsideItsPatternsIsForbidden(t *testing.T) {
	srv, f, _ := startSecure(t)
	w := curveDealer(t, srv.WorkerEndpoint(), f.Client(t, "wa"))
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x01}, b("B"), protocol.EncodeMeta(protocol.Meta{}))
	got := zmqtest.Recv(t, w, wait)
	if len(got) != 3 || string(got[0]) != "MDPW02" || got[1][0] != 0x06 {
		t.Fatalf("READY for B under a key for A*: got %s, want DISCONNECT with a reason", zmqtest.Join(got))
	}
	meta, err := protocol.DecodeMeta(got[2])
	if err != nil || meta.Code != protocol.CodeForbidden || !strings.Contains(meta.Error, `"wa"`) {
		t.Fatalf("DISCONNECT reason = %+v (%v), want code forbidden naming the key", meta, err)
	}
	// The same key may offer A2.
	ok := curveDealer(t, srv.WorkerEndpoint(), f.Client(t, "wa"))
	zmqtest.Send(t, ok, b("MDPW02"), []byte{0x01}, b("A2"))
	c := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	zmqtest.Eventually(t, "worker of A2", wait, func() bool {
		ws, err := c.Workers(context.Background())
		return err == nil && len(ws) == 1 && ws[0].Service == "A2"
	})
}

func TestCurve_ClientRights(t *testing.T) {
	srv, f, _ := startSecure(t)
	countingWorker(t, srv.WorkerEndpoint(), "A1", f.Client(t, "wall"))
	countingWorker(t, srv.WorkerEndpoint(), "C1", f.Client(t, "wall"))
	ctx := context.Background()
	admin := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	zmqtest.Eventually(t, "two workers", wait, func() bool {
		ws, err := admin.Workers(ctx)
		return err == nil && len(ws) == 2
	})
	bob := newClient(t, srv.ClientEndpoint(), f.Client(t, "bob"))
	id, err := bob.Submit(ctx, "A1", client.Request{})
	if err != nil {
		t.Fatalf("bob submits to A1: %v", err)
	}
	if _, err := bob.Submit(ctx, "C1", client.Request{}); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("bob submits to C1: %v, want forbidden", err)
	}
	if _, err := bob.Call(ctx, "SYNC-C1", client.Request{}, nil); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("bob calls SYNC-C1: %v, want forbidden", err)
	}
	if _, err := bob.Jobs(ctx); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("bob asks SERVER-JOBS: %v, want forbidden", err)
	}
	if _, err := bob.Cancel(ctx, id); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("bob cancels: %v, want forbidden", err)
	}
	if _, err := bob.Job(ctx, id); err != nil {
		t.Errorf("bob looks up his own A1 job: %v", err)
	}
	cid, err := admin.Submit(ctx, "C1", client.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Job(ctx, cid); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("bob looks up a C1 job: %v, want forbidden", err)
	}
	if _, err := admin.Jobs(ctx); err != nil {
		t.Errorf("admin SERVER-JOBS: %v", err)
	}
	if _, err := bob.Services(ctx); err != nil {
		t.Errorf("bob SERVER-SERVICES: %v", err)
	}
}

func TestCurve_RefusedKeysFailFast(t *testing.T) {
	srv, f, _ := startSecure(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ep   string
		keys *curve.Client
		want error
	}{
		{"unlisted client key", srv.ClientEndpoint(), f.Client(t, "mallory"), curve.ErrRefused},
		{"worker key on the client socket", srv.ClientEndpoint(), f.Client(t, "wall"), curve.ErrRefused},
		{"wrong broker key", srv.ClientEndpoint(), &curve.Client{Broker: curve.Public{Key: f.Pair(t, "carol").Public}, Own: f.Pair(t, "alice")}, curve.ErrHandshake},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New(client.Config{Broker: tc.ep, Curve: tc.keys, Timeout: 30 * time.Second, Retries: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_, err = c.Services(ctx)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("refusal took %v, want a few seconds at most", d)
			}
			t.Logf("%v", err)
		})
	}
	// A stock peer without CURVE gets nothing at all.
	null := zmqtest.Connect(t, zmq.DEALER, srv.ClientEndpoint())
	zmqtest.Send(t, null, b("MDPC02"), []byte{0x01}, b("SERVER-SERVICES"))
	if got, ok := zmqtest.TryRecv(null, 300*time.Millisecond); ok {
		t.Errorf("a NULL client got an answer: %s", zmqtest.Join(got))
	}
}

func TestCurve_EventsNeedTheWatchRight(t *testing.T) {
	srv, f, _ := startSecureEvents(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := client.WatchCurve(ctx, srv.EventsEndpoint(), f.Client(t, "bob"), nil, func(protocol.Event) error { return nil })
	if !errors.Is(err, curve.ErrRefused) {
		t.Errorf("bob (no watch right) watches events: %v, want refused", err)
	}
	countingWorker(t, srv.WorkerEndpoint(), "A1", f.Client(t, "wall"))
	alice := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	zmqtest.Eventually(t, "worker", wait, func() bool { ws, err := alice.Workers(ctx); return err == nil && len(ws) == 1 })
	got := make(chan protocol.Event, 1)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go client.WatchCurve(wctx, srv.EventsEndpoint(), f.Client(t, "alice"), nil, func(e protocol.Event) error {
		select {
		case got <- e:
		default:
		}
		return nil
	})
	// Events published before the subscription is up are lost: submit until one arrives.
	zmqtest.Eventually(t, "an event for alice", wait, func() bool {
		if _, err := alice.Submit(ctx, "A1", client.Request{}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
}

func startSecureEvents(t *testing.T) (*server.Server, *curvetest.Fixture, *auth.Keys) {
	t.Helper()
	f := curvetest.New(t, secureEntries, "mallory", "carol")
	keys := f.Keys(t)
	srv := start(t, server.Config{EventsBind: "tcp://127.0.0.1:*", Curve: &server.Curve{Key: f.Broker, Keys: keys}})
	return srv, f, keys
}

// TestCurve_ReloadUnderLoad adds and removes a key while 8 clients submit:
// no panic, no race, no refused submission of a key that stays, and a
// removed key's new connections are refused.
func TestCurve_ReloadUnderLoad(t *testing.T) {
	srv, f, keys := startSecure(t)
	countingWorker(t, srv.WorkerEndpoint(), "A1", f.Client(t, "wall"))
	ctx := context.Background()
	admin := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	zmqtest.Eventually(t, "worker", wait, func() bool { ws, err := admin.Workers(ctx); return err == nil && len(ws) == 1 })

	with := append(append([]curvetest.Entry{}, secureEntries...), curvetest.Entry{Name: "carol", Role: auth.RoleClient})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var submitted atomic.Int64
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"alice", "bob"}[i%2]
			c, err := client.New(client.Config{Broker: srv.ClientEndpoint(), Curve: f.Client(t, name)})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Submit(ctx, "A1", client.Request{}); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
					return
				}
				submitted.Add(1)
			}
		}()
	}
	for i := range 20 {
		if i%2 == 0 {
			f.WriteKeys(t, with)
		} else {
			f.WriteKeys(t, secureEntries)
		}
		if i%4 == 1 {
			if _, err := admin.Query(ctx, protocol.ServerReload); err != nil { // on the loop
				t.Fatal(err)
			}
		} else if err := keys.Reload(); err != nil { // as SIGHUP does
			t.Fatal(err)
		}
		n := submitted.Load()
		zmqtest.Eventually(t, "a submission between reloads", wait, func() bool { return submitted.Load() > n || len(errs) > 0 })
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if submitted.Load() == 0 {
		t.Error("no submission went through during the reloads")
	}
	// The last write left carol out: her new connection is refused.
	if keys.Current().Named("carol") != nil {
		t.Fatal("carol still authorized")
	}
	c, err := client.New(client.Config{Broker: srv.ClientEndpoint(), Curve: f.Client(t, "carol"), Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Services(ctx); !errors.Is(err, curve.ErrRefused) {
		t.Errorf("carol after her key was removed: %v, want refused", err)
	}
	// Adding her back lets a new connection in.
	f.WriteKeys(t, with)
	if err := keys.Reload(); err != nil {
		t.Fatal(err)
	}
	c2 := newClient(t, srv.ClientEndpoint(), f.Client(t, "carol"))
	if _, err := c2.Submit(ctx, "A1", client.Request{}); err != nil {
		t.Errorf("carol after her key was added back: %v", err)
	}
	t.Logf("%d submissions during 20 reloads", submitted.Load())
}

// TestCurve_WorkerDroppedWhenItsKeyIsRemoved: a reload that takes a
// worker's right away drops it at its next message.
func TestCurve_WorkerDroppedWhenItsKeyIsRemoved(t *testing.T) {
	srv, f, keys := startSecure(t)
	countingWorker(t, srv.WorkerEndpoint(), "A1", f.Client(t, "wa"))
	ctx := context.Background()
	admin := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	zmqtest.Eventually(t, "worker", wait, func() bool { ws, err := admin.Workers(ctx); return err == nil && len(ws) == 1 })
	var without []curvetest.Entry
	for _, e := range secureEntries {
		if e.Name != "wa" {
			without = append(without, e)
		}
	}
	f.WriteKeys(t, without)
	if err := keys.Reload(); err != nil {
		t.Fatal(err)
	}
	zmqtest.Eventually(t, "the worker to be dropped", wait, func() bool { ws, err := admin.Workers(ctx); return err == nil && len(ws) == 0 })
}

// TestCurve_RoutingIDTakeoverRefused: a worker dies without a word, and a
// peer with another worker key connects under its routing id (libzmq lets
// a peer choose one, and routes by it alone). The broker must have
// forgotten the dead worker by then, long before any heartbeat, so the job
// sent for it (with its parameters) never reaches the newcomer.
func TestCurve_RoutingIDTakeoverRefused(t *testing.T) {
	f := curvetest.New(t, secureEntries)
	srv := start(t, server.Config{Broker: broker.Config{Heartbeat: time.Minute}, // no heartbeat will notice
		Curve: &server.Curve{Key: f.Broker, Keys: f.Keys(t)}})
	const victimID = "victim-routing-id"
	victim := zmqtest.Socket(t, zmq.DEALER)
	victim.SetIdentity(victimID)
	if err := f.Client(t, "wall").Apply(victim); err != nil {
		t.Fatal(err)
	}
	if err := victim.Connect(srv.WorkerEndpoint()); err != nil {
		t.Fatal(err)
	}
	zmqtest.Send(t, victim, b("MDPW02"), []byte{0x01}, b("C1"))
	admin := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	ctx := context.Background()
	zmqtest.Eventually(t, "the victim", wait, func() bool { ws, err := admin.Workers(ctx); return err == nil && len(ws) == 1 })
	victim.Close() // dies: no DISCONNECT
	zmqtest.Eventually(t, "the broker to forget the dead worker", wait, func() bool {
		ws, err := admin.Workers(ctx)
		return err == nil && len(ws) == 0
	})

	attacker := zmqtest.Socket(t, zmq.DEALER)
	attacker.SetIdentity(victimID)
	if err := f.Client(t, "wa").Apply(attacker); err != nil { // a real worker key, for A* only
		t.Fatal(err)
	}
	if err := attacker.Connect(srv.WorkerEndpoint()); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Submit(ctx, "C1", client.Request{Params: map[string]string{"secret": "CANARY-42"}}); err != nil {
		t.Fatal(err)
	}
	if got, ok := zmqtest.TryRecv(attacker, 500*time.Millisecond); ok {
		t.Fatalf("the newcomer got the dead worker's job: %s", zmqtest.Join(got))
	}
}

// TestCurve_ReplacedKeyLosesItsConnection: a key replaced under the same
// name (rotated after a theft) loses its rights on the connection it
// already has, not only for new ones.
func TestCurve_ReplacedKeyLosesItsConnection(t *testing.T) {
	srv, f, keys := startSecure(t)
	ctx := context.Background()
	stolen := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	if _, err := stolen.Jobs(ctx); err != nil {
		t.Fatal(err)
	}
	var rotated []curvetest.Entry
	for _, e := range secureEntries {
		if e.Name == "alice" {
			e.Pair = "carol" // alice's new key pair
		}
		rotated = append(rotated, e)
	}
	f.WriteKeys(t, rotated)
	if err := keys.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := stolen.Jobs(ctx); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("the old key's connection after rotation: %v, want forbidden", err)
	}
	fresh := newClient(t, srv.ClientEndpoint(), &curve.Client{Broker: curve.Public{Key: f.Broker.Public}, Own: f.Pair(t, "carol")})
	if _, err := fresh.Jobs(ctx); err != nil {
		t.Fatalf("alice's new key: %v", err)
	}
}

// TestCurve_WatcherLosesEventsOnReload: a PUB socket checks no key per
// message, so after a reload that takes a key's watch right away, its
// subscription must be cut and its reconnection refused.
func TestCurve_WatcherLosesEventsOnReload(t *testing.T) {
	srv, f, keys := startSecureEvents(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	first := make(chan struct{}, 1)
	ended := make(chan error, 1)
	go func() {
		ended <- client.WatchCurve(ctx, srv.EventsEndpoint(), f.Client(t, "alice"), nil, func(protocol.Event) error {
			select {
			case first <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	countingWorker(t, srv.WorkerEndpoint(), "A1", f.Client(t, "wall"))
	bob := newClient(t, srv.ClientEndpoint(), f.Client(t, "bob"))
	zmqtest.Eventually(t, "the worker", wait, func() bool { st, err := bob.ServiceStatus(ctx, "A1"); return err == nil && st == "200" })
	zmqtest.Eventually(t, "alice's first event", wait, func() bool {
		if _, err := bob.Submit(ctx, "A1", client.Request{}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-first:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	var noWatch []curvetest.Entry
	for _, e := range secureEntries {
		if e.Name == "alice" {
			e.Rights = auth.Rights{} // may submit, no longer watch
		}
		noWatch = append(noWatch, e)
	}
	f.WriteKeys(t, noWatch)
	if err := keys.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, curve.ErrRefused) {
			t.Fatalf("alice's watch ended with %v, want refused", err)
		}
	case <-ctx.Done():
		t.Fatal("alice still watches after her watch right was removed")
	}
}

// TestCurve_ImpostorBrokerGetsNothing: a process that binds the worker port
// (while zmwsd is down, any local user can) without the broker's secret key
// gets no READY and no output from a CURVE worker.
func TestCurve_ImpostorBrokerGetsNothing(t *testing.T) {
	f := curvetest.New(t, secureEntries)
	_, secret, err := zmq.NewCurveKeypair() // not the broker's
	if err != nil {
		t.Fatal(err)
	}
	impostor := zmqtest.Socket(t, zmq.ROUTER)
	impostor.SetCurveServer(1)
	if err := impostor.SetCurveSecretkey(secret); err != nil {
		t.Fatal(err)
	}
	if err := impostor.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := impostor.GetLastEndpoint()
	countingWorker(t, ep, "A1", f.Client(t, "wall")) // trusts the real broker's key
	if got, ok := zmqtest.TryRecv(impostor, time.Second); ok {
		t.Fatalf("the impostor got %s", zmqtest.Join(got))
	}
}

// TestCurve_RefusedKeyDoesNotFloodTheLog: a peer with an unknown key that
// reconnects every 5 ms is logged once, not hundreds of times.
func TestCurve_RefusedKeyDoesNotFloodTheLog(t *testing.T) {
	f := curvetest.New(t, secureEntries, "mallory")
	var logs syncbuf.Buffer
	srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*",
		Curve: &server.Curve{Key: f.Broker, Keys: f.Keys(t)}, Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "server", srv.Run)
	s := zmqtest.Socket(t, zmq.DEALER)
	s.SetReconnectIvl(5 * time.Millisecond)
	s.SetReconnectIvlMax(5 * time.Millisecond)
	if err := f.Client(t, "mallory").Apply(s); err != nil {
		t.Fatal(err)
	}
	watch, err := curve.WatchSocket(s)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if err := s.Connect(srv.ClientEndpoint()); err != nil {
		t.Fatal(err)
	}
	zmqtest.Eventually(t, "refusals", wait, func() bool { return watch.Err() != nil })
	// Time passing is what is tested: some 60 reconnections, each refused,
	// and the log must still hold one line of them.
	time.Sleep(300 * time.Millisecond)
	mallory := f.Pair(t, "mallory").Public
	if n := strings.Count(logs.String(), mallory); n != 1 {
		t.Errorf("the refused key is in %d log lines, want 1", n)
	}
}

// TestCurve_ConnectionChurnIsCheap: anyone can open and close TCP
// connections to the worker port; each close must not make the broker
// heartbeat every worker (at most one check per 50 ms).
func TestCurve_ConnectionChurnIsCheap(t *testing.T) {
	f := curvetest.New(t, secureEntries)
	srv := start(t, server.Config{Broker: broker.Config{Heartbeat: time.Minute},
		Curve: &server.Curve{Key: f.Broker, Keys: f.Keys(t)}})
	w := curveDealer(t, srv.WorkerEndpoint(), f.Client(t, "wall"))
	zmqtest.Send(t, w, b("MDPW02"), []byte{0x01}, b("A1"))
	admin := newClient(t, srv.ClientEndpoint(), f.Client(t, "alice"))
	zmqtest.Eventually(t, "the worker", wait, func() bool { ws, err := admin.Workers(context.Background()); return err == nil && len(ws) == 1 })
	addr := strings.TrimPrefix(srv.WorkerEndpoint(), "tcp://")
	start := time.Now()
	dials := 0
	for time.Since(start) < time.Second { // a second of churn: its length is what is tested
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		dials++
	}
	heartbeats := 0
	for {
		msg, ok := zmqtest.TryRecv(w, 200*time.Millisecond)
		if !ok {
			break
		}
		if len(msg) == 2 && msg[1][0] == 0x05 {
			heartbeats++
		}
	}
	if limit := int(time.Since(start)/(50*time.Millisecond)) + 2; heartbeats > limit {
		t.Errorf("%d connections opened and closed in a second made %d heartbeats to the worker, want at most %d", dials, heartbeats, limit)
	}
	t.Logf("%d dials, %d heartbeats", dials, heartbeats)
}
