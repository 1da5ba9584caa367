package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
)

func intp(n int) *int { return &n }

func TestClient_SubmitAccepted(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ch := async(func() (string, error) {
		return c.Submit(context.Background(), "STR-REV", client.Request{
			Params: map[string]string{"str": "Hello"},
			Input:  []byte("input"),
		})
	})
	r := fb.recv()
	if r.msg.Service != "STR-REV" {
		t.Errorf("service %q, want STR-REV", r.msg.Service)
	}
	if want := map[string]string{"str": "Hello"}; !reflect.DeepEqual(r.meta.Params, want) || r.meta.Key != "" {
		t.Errorf("meta %+v, want params %v and no key", r.meta, want)
	}
	if got := zmqtest.Strings(r.in); !reflect.DeepEqual(got, []string{"input"}) {
		t.Errorf("input frames %q, want [input]", got)
	}
	fb.final(r, protocol.Meta{Status: protocol.StatusAccepted, Job: "01JOB"})
	id, err := await(t, ch)
	if err != nil || id != "01JOB" {
		t.Fatalf("Submit = %q, %v; want 01JOB", id, err)
	}
}

func TestClient_SubmitWithoutInputSendsMetaOnly(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ch := async(func() (string, error) { return c.Submit(context.Background(), "SLEEP", client.Request{}) })
	r := fb.recv()
	if len(r.in) != 0 {
		t.Errorf("input frames %q, want none", zmqtest.Strings(r.in))
	}
	fb.final(r, protocol.Meta{Status: protocol.StatusAccepted, Job: "J"})
	if _, err := await(t, ch); err != nil {
		t.Fatal(err)
	}
}

func TestClient_SubmitRefused(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ch := async(func() (string, error) { return c.Submit(context.Background(), "nope", client.Request{}) })
	r := fb.recv()
	const msg = "no worker has ever provided service nope"
	fb.final(r, protocol.Meta{Status: protocol.StatusRefused, Code: protocol.CodeUnknownService, Error: msg})
	id, err := await(t, ch)
	if id != "" || !errors.Is(err, client.ErrUnknownService) {
		t.Fatalf("Submit = %q, %v; want ErrUnknownService", id, err)
	}
	if errors.Is(err, client.ErrQueueFull) {
		t.Errorf("refusal %v also matches ErrQueueFull", err)
	}
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != protocol.CodeUnknownService || ce.Message != msg || err.Error() != msg {
		t.Errorf("error %#v (%q), want *Error{unknown_service, %q}", err, err, msg)
	}
}

func TestError_IsMatchesCodes(t *testing.T) {
	sentinels := map[string]error{
		protocol.CodeUnknownService: client.ErrUnknownService,
		protocol.CodeQueueFull:      client.ErrQueueFull,
		protocol.CodeNotFound:       client.ErrNotFound,
		protocol.CodeBadRequest:     client.ErrBadRequest,
	}
	for code := range sentinels {
		err := fmt.Errorf("wrapped: %w", &client.Error{Code: code, Message: "m"})
		for other, sentinel := range sentinels {
			if got := errors.Is(err, sentinel); got != (other == code) {
				t.Errorf("errors.Is(%s refusal, %v) = %v", code, sentinel, got)
			}
		}
		if errors.Is(err, client.ErrTimeout) {
			t.Errorf("%s refusal matches ErrTimeout", code)
		}
	}
	if got := (&client.Error{Code: "queue_full"}).Error(); got == "" {
		t.Error("Error() of a refusal without message is empty")
	}
}

func TestClient_SubmitRejectsSyncService(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	for _, s := range []string{"SYNC-X", "SYNC:X"} {
		if _, err := c.Submit(context.Background(), s, client.Request{}); !errors.Is(err, client.ErrBadRequest) {
			t.Errorf("Submit(%s) error %v, want ErrBadRequest", s, err)
		}
	}
	fb.expectNone(50 * time.Millisecond)
}

func TestClient_SubmitBadReply(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	for _, body := range [][][]byte{
		{[]byte("01JOB")}, // no meta frame
		{[]byte(protocol.MetaPrefix + "{not json")},
		{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusAccepted})}, // no job ID
		{protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete, Job: "J"})},
	} {
		ch := async(func() (string, error) { return c.Submit(context.Background(), "echo", client.Request{}) })
		r := fb.recv()
		fb.send(r.id, protocol.CmdReply, "echo", body...)
		if _, err := await(t, ch); !errors.Is(err, client.ErrBadReply) {
			t.Errorf("reply %q: error %v, want ErrBadReply", zmqtest.Strings(body), err)
		}
	}
}

func TestClient_CallStreamsPartials(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	chunks := make(chan string)
	ch := async(func() (*client.Result, error) {
		return c.Call(context.Background(), "STR-REV", client.Request{Input: []byte("abc")}, func(b []byte) error {
			chunks <- string(b)
			return nil
		})
	})
	r := fb.recv()
	if r.msg.Service != "SYNC-STR-REV" {
		t.Fatalf("service %q, want SYNC-STR-REV", r.msg.Service)
	}
	next := func() string {
		t.Helper()
		select {
		case s := <-chunks:
			return s
		case <-time.After(waitLong):
			t.Fatal("no partial delivered")
			return ""
		}
	}
	// Each partial must reach onPartial before the next is even sent.
	fb.partial(r, []byte("c"), []byte("b"))
	if a, b := next(), next(); a != "c" || b != "b" {
		t.Fatalf("partials %q %q, want c b", a, b)
	}
	fb.partial(r, []byte("a"))
	if s := next(); s != "a" {
		t.Fatalf("partial %q, want a", s)
	}
	fb.final(r, protocol.Meta{Status: protocol.StatusFailed, Job: "J1", Code: protocol.CodeJobFailed,
		Error: "exit status 3", ExitCode: intp(3), Attempt: 1}, []byte("!"))
	res, err := await(t, ch)
	if err != nil {
		t.Fatalf("Call error %v; a failed job is a result, not an error", err)
	}
	want := &client.Result{JobID: "J1", Status: protocol.StatusFailed, ExitCode: intp(3),
		Code: protocol.CodeJobFailed, Error: "exit status 3", Attempt: 1, Output: []byte("!")}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("result %+v, want %+v", res, want)
	}
	if res.OK() {
		t.Error("failed result says OK")
	}
}

func TestClient_CallNilOnPartialAccumulates(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ch := async(func() (*client.Result, error) {
		return c.Call(context.Background(), "SYNC:rev", client.Request{}, nil)
	})
	r := fb.recv()
	if r.msg.Service != "SYNC:rev" {
		t.Fatalf("service %q, want SYNC:rev kept as is", r.msg.Service)
	}
	fb.partial(r, []byte("ab"))
	fb.partial(r, []byte("c"), []byte("d"))
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete, Job: "J2", ExitCode: intp(0)}, []byte("e"), []byte("f"))
	res, err := await(t, ch)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Output) != "abcdef" || !res.OK() || res.JobID != "J2" || res.ExitCode == nil || *res.ExitCode != 0 {
		t.Errorf("result %+v, want complete J2 exit 0 output abcdef", res)
	}
}

func TestClient_CallRefused(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ch := async(func() (*client.Result, error) { return c.Call(context.Background(), "busy", client.Request{}, nil) })
	r := fb.recv()
	fb.final(r, protocol.Meta{Status: protocol.StatusRefused, Code: protocol.CodeQueueFull, Error: "queue of busy is full"})
	res, err := await(t, ch)
	if res != nil || !errors.Is(err, client.ErrQueueFull) {
		t.Fatalf("Call = %+v, %v; want ErrQueueFull", res, err)
	}
}

func TestClient_CallOnPartialErrorAbandons(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	stop := errors.New("stop")
	ch := async(func() (*client.Result, error) {
		return c.Call(context.Background(), "x", client.Request{}, func([]byte) error { return stop })
	})
	r := fb.recv()
	fb.partial(r, []byte("1"))
	if _, err := await(t, ch); err != stop {
		t.Fatalf("Call error %v, want the callback's error", err)
	}
	// The request was abandoned: the socket stays, and the abandoned call's
	// late replies do not reach the next call for the same service.
	ch2 := async(func() (*client.Result, error) { return c.Call(context.Background(), "x", client.Request{}, nil) })
	r2 := fb.recv()
	if !bytes.Equal(r.id, r2.id) {
		t.Error("the socket was replaced after an abandoned call; one socket serves them all")
	}
	fb.partial(r, []byte("old output"))
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete, Job: "OLD"})
	fb.final(r2, protocol.Meta{Status: protocol.StatusComplete, Job: "NEW"}, []byte("new"))
	if res, err := await(t, ch2); err != nil || res.JobID != "NEW" || string(res.Output) != "new" {
		t.Fatalf("next Call = %+v, %v; want job NEW with output new only", res, err)
	}
}

func TestClient_CallCancelReturnsPromptly(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, 1)
	ch := async(func() (*client.Result, error) {
		return c.Call(ctx, "SLEEP", client.Request{}, func([]byte) error { got <- struct{}{}; return nil })
	})
	r := fb.recv()
	fb.partial(r, []byte("tick"))
	select {
	case <-got:
	case <-time.After(waitLong):
		t.Fatal("partial not delivered")
	}
	start := time.Now()
	cancel()
	res, err := await(t, ch)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Call returned %v after cancel", elapsed)
	}
	if res != nil || err != context.Canceled {
		t.Fatalf("Call = %+v, %v; want context.Canceled", res, err)
	}
	// A late FINAL for the cancelled call must not answer the next one.
	ch2 := async(func() (*client.Result, error) { return c.Call(context.Background(), "SLEEP", client.Request{}, nil) })
	r2 := fb.recv()
	if !bytes.Equal(r.id, r2.id) {
		t.Error("the socket was replaced after cancel; one socket serves them all")
	}
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete, Job: "OLD"})
	fb.final(r2, protocol.Meta{Status: protocol.StatusComplete, Job: "NEW"})
	if res, err := await(t, ch2); err != nil || res.JobID != "NEW" {
		t.Fatalf("next Call = %+v, %v; want job NEW", res, err)
	}
}

func TestClient_CloseInterruptsCall(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ch := async(func() (*client.Result, error) { return c.Call(context.Background(), "SLEEP", client.Request{}, nil) })
	fb.recv()
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := await(t, ch); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Call after Close: %v, want ErrClosed", err)
	}
	if _, err := c.Submit(context.Background(), "x", client.Request{}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestClient_RequestsInFlightTogether: a query is answered while a Call
// waits on the same client, and a query that gives up leaves the Call be.
func TestClient_RequestsInFlightTogether(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ch := async(func() (*client.Result, error) { return c.Call(context.Background(), "SLEEP", client.Request{}, nil) })
	r := fb.recv()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Workers(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered query: %v, want DeadlineExceeded", err)
	}
	fb.recv() // the abandoned query, never answered

	chW := async(func() ([]protocol.WorkerInfo, error) { return c.Workers(context.Background()) })
	q := fb.recv()
	if !bytes.Equal(q.id, r.id) {
		t.Error("the query came from another socket")
	}
	fb.final(q, protocol.Meta{Status: protocol.StatusComplete}, []byte(`[{"identity":"w1"}]`))
	if got, err := await(t, chW); err != nil || len(got) != 1 {
		t.Fatalf("Workers while a Call waits = %+v, %v", got, err)
	}
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete, Job: "J"})
	if res, err := await(t, ch); err != nil || res.JobID != "J" {
		t.Fatalf("Call = %+v, %v", res, err)
	}
}

// TestClient_ManyInFlightAnsweredOutOfOrder: 200 calls on one client, each
// streaming and finishing in the reverse order of their sending, each get
// their own output.
func TestClient_ManyInFlightAnsweredOutOfOrder(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	const n = 200
	chs := make([]<-chan outcome[*client.Result], n)
	for i := range n {
		chs[i] = async(func() (*client.Result, error) {
			return c.Call(context.Background(), "echo", client.Request{Params: map[string]string{"n": fmt.Sprint(i)}}, nil)
		})
	}
	reqs := make([]received, n)
	for range n {
		r := fb.recv()
		var i int
		fmt.Sscan(r.meta.Params["n"], &i)
		reqs[i] = r
	}
	for i := n - 1; i >= 0; i-- {
		fb.partial(reqs[i], []byte(fmt.Sprint("out-", i)))
	}
	for i := n - 1; i >= 0; i-- {
		fb.final(reqs[i], protocol.Meta{Status: protocol.StatusComplete, Job: fmt.Sprint("job-", i)}, []byte("."))
	}
	for i, ch := range chs {
		res, err := await(t, ch)
		if want := fmt.Sprint("out-", i, "."); err != nil || res.JobID != fmt.Sprint("job-", i) || string(res.Output) != want {
			t.Fatalf("call %d = %+v, %v; want job-%d with output %q", i, res, err, i, want)
		}
	}
}

func TestClient_Queries(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ctx := context.Background()
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

	// serve answers one query with its JSON encoding of v and returns the request.
	serve := func(v any) received {
		t.Helper()
		r := fb.recv()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		fb.final(r, protocol.Meta{Status: protocol.StatusComplete}, b)
		return r
	}
	check := func(name string, r received, service string, in ...string) {
		t.Helper()
		if r.msg.Service != service {
			t.Errorf("%s: service %q, want %q", name, r.msg.Service, service)
		}
		if got := zmqtest.Strings(r.in); len(got) != len(in) || (len(in) > 0 && !reflect.DeepEqual(got, in)) {
			t.Errorf("%s: body %q, want %q", name, got, in)
		}
	}

	workers := []protocol.WorkerInfo{{Identity: "w1", Service: "echo", State: "idle", Protocol: "MDPW02", Zmws: true, Since: t0, LastHeartbeat: t0, JobsDone: 2}}
	chW := async(func() ([]protocol.WorkerInfo, error) { return c.Workers(ctx) })
	check("Workers", serve(workers), protocol.ServerWorkers)
	if got, err := await(t, chW); err != nil || !reflect.DeepEqual(got, workers) {
		t.Errorf("Workers = %+v, %v; want %+v", got, err, workers)
	}
	workers = append(workers, protocol.WorkerInfo{Identity: "w0", Service: "echo", State: "gone", Protocol: "MDPW02",
		Since: t0, LastHeartbeat: t0, JobsDone: 1, Failed: 1, GoneAt: t0, GoneWhy: protocol.GoneExpired})
	chW = async(func() ([]protocol.WorkerInfo, error) { return c.WorkersWithGone(ctx) })
	check("WorkersWithGone", serve(workers), protocol.ServerWorkers, protocol.WorkersAll)
	if got, err := await(t, chW); err != nil || !reflect.DeepEqual(got, workers) {
		t.Errorf("WorkersWithGone = %+v, %v; want %+v", got, err, workers)
	}

	jobs := []protocol.JobInfo{{ID: "J1", Service: "echo", State: "complete", Created: t0, Finished: &t0, Attempts: 1, ExitCode: intp(0)}}
	for _, q := range []struct {
		name    string
		service string
		call    func(context.Context) ([]protocol.JobInfo, error)
	}{
		{"Jobs", protocol.ServerJobs, c.Jobs},
		{"Active", protocol.ServerActive, c.Active},
	} {
		ch := async(func() ([]protocol.JobInfo, error) { return q.call(ctx) })
		check(q.name, serve(jobs), q.service)
		if got, err := await(t, ch); err != nil || !reflect.DeepEqual(got, jobs) {
			t.Errorf("%s = %+v, %v; want %+v", q.name, got, err, jobs)
		}
	}

	queue := []protocol.QueueInfo{{Service: "echo", Queued: 1, Oldest: "J9", Since: t0, Jobs: []string{"J9"}}}
	chQ := async(func() ([]protocol.QueueInfo, error) { return c.Queue(ctx) })
	check("Queue", serve(queue), protocol.ServerQueue)
	if got, err := await(t, chQ); err != nil || !reflect.DeepEqual(got, queue) {
		t.Errorf("Queue = %+v, %v; want %+v", got, err, queue)
	}

	services := []protocol.ServiceInfo{{Name: "echo", Queued: 1, WorkersIdle: 1, Completed: 7, FirstSeen: t0, LastSeen: t0}}
	chS := async(func() ([]protocol.ServiceInfo, error) { return c.Services(ctx) })
	check("Services", serve(services), protocol.ServerServices)
	if got, err := await(t, chS); err != nil || !reflect.DeepEqual(got, services) {
		t.Errorf("Services = %+v, %v; want %+v", got, err, services)
	}

	job := protocol.JobInfo{ID: "J1", Service: "echo", State: "complete", Created: t0, Output: []byte("out\x00put")}
	chJ := async(func() (protocol.JobInfo, error) { return c.Job(ctx, "J1") })
	check("Job", serve(job), protocol.ServerJob, "J1")
	if got, err := await(t, chJ); err != nil || !reflect.DeepEqual(got, job) {
		t.Errorf("Job = %+v, %v; want %+v", got, err, job)
	}

	chJ = async(func() (protocol.JobInfo, error) { return c.Job(ctx, "J0") })
	r := fb.recv()
	fb.final(r, protocol.Meta{Status: protocol.StatusRefused, Code: protocol.CodeNotFound, Error: "no job J0"})
	if _, err := await(t, chJ); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Job(J0) error %v, want ErrNotFound", err)
	}

	chM := async(func() (string, error) { return c.ServiceStatus(ctx, "echo") })
	r = fb.recv()
	check("ServiceStatus", r, protocol.MMIService, "echo")
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete}, []byte("200"))
	if got, err := await(t, chM); err != nil || got != "200" {
		t.Errorf("ServiceStatus = %q, %v; want 200", got, err)
	}

	chR := async(func() ([][]byte, error) { return c.Query(ctx, "SERVER-X", []byte("a"), []byte("b")) })
	r = fb.recv()
	check("Query", r, "SERVER-X", "a", "b")
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete}, []byte("1"), []byte("2"))
	if got, err := await(t, chR); err != nil || !reflect.DeepEqual(zmqtest.Strings(got), []string{"1", "2"}) {
		t.Errorf("Query = %q, %v; want [1 2]", zmqtest.Strings(got), err)
	}

	chW = async(func() ([]protocol.WorkerInfo, error) { return c.Workers(ctx) })
	r = fb.recv()
	fb.final(r, protocol.Meta{Status: protocol.StatusComplete}, []byte("[{"))
	if _, err := await(t, chW); !errors.Is(err, client.ErrBadReply) {
		t.Errorf("Workers with bad JSON: %v, want ErrBadReply", err)
	}
}

func TestClient_QueryResentWithItsReference(t *testing.T) {
	fb := newFakeBroker(t)
	// The timeout must outlast the fake broker answering the second attempt.
	c := newClient(t, fb.ep, client.Config{Timeout: 250 * time.Millisecond, Retries: 3})
	ch := async(func() ([]protocol.WorkerInfo, error) { return c.Workers(context.Background()) })
	r1 := fb.recv() // ignored: the client times out and resends
	r2 := fb.recv()
	if r1.meta.Ref == "" || r2.meta.Ref != r1.meta.Ref || r2.msg.Service != protocol.ServerWorkers {
		t.Fatalf("resend %s ref %q after ref %q; want the same request again", r2.msg.Service, r2.meta.Ref, r1.meta.Ref)
	}
	fb.final(r2, protocol.Meta{Status: protocol.StatusComplete}, []byte(`[{"identity":"w1","service":"echo"}]`))
	got, err := await(t, ch)
	if err != nil || len(got) != 1 || got[0].Identity != "w1" {
		t.Fatalf("Workers = %+v, %v", got, err)
	}
}

func TestClient_QueryGivesUpAfterRetries(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Timeout: 50 * time.Millisecond, Retries: 2})
	ch := async(func() (string, error) { return c.ServiceStatus(context.Background(), "echo") })
	for range 3 {
		fb.recv()
	}
	if _, err := await(t, ch); !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
	fb.expectNone(100 * time.Millisecond)
}

func TestClient_SubmitTimeoutNotRetried(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Timeout: 100 * time.Millisecond, Retries: 3})
	ch := async(func() (string, error) { return c.Submit(context.Background(), "echo", client.Request{}) })
	fb.recv()
	if _, err := await(t, ch); !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
	fb.expectNone(300 * time.Millisecond)
}

func TestClient_SubmitWithKeyRetried(t *testing.T) {
	fb := newFakeBroker(t)
	// The timeout must outlast the fake broker answering the second attempt.
	c := newClient(t, fb.ep, client.Config{Timeout: 250 * time.Millisecond})
	ch := async(func() (string, error) { return c.Submit(context.Background(), "echo", client.Request{Key: "k1"}) })
	r1 := fb.recv()
	r2 := fb.recv()
	if r1.meta.Key != "k1" || r2.meta.Key != "k1" {
		t.Fatalf("attempts: key %q, key %q; want k1 twice", r1.meta.Key, r2.meta.Key)
	}
	fb.final(r2, protocol.Meta{Status: protocol.StatusAccepted, Job: "J"})
	if id, err := await(t, ch); err != nil || id != "J" {
		t.Fatalf("Submit = %q, %v", id, err)
	}
}

func TestClient_LateReplyAfterTimeoutIgnored(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{Timeout: 100 * time.Millisecond})
	ch := async(func() (string, error) { return c.Submit(context.Background(), "echo", client.Request{}) })
	r1 := fb.recv()
	if _, err := await(t, ch); !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
	c.SetTimeout(waitLong)
	ch = async(func() (string, error) { return c.Submit(context.Background(), "echo", client.Request{}) })
	r2 := fb.recv()
	fb.final(r1, protocol.Meta{Status: protocol.StatusAccepted, Job: "LATE"})
	fb.final(r2, protocol.Meta{Status: protocol.StatusAccepted, Job: "NEW"})
	if id, err := await(t, ch); err != nil || id != "NEW" {
		t.Fatalf("Submit = %q, %v; want NEW", id, err)
	}
}

func TestClient_DropsStrayReplies(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ch := async(func() ([]protocol.WorkerInfo, error) { return c.Workers(context.Background()) })
	r := fb.recv()
	meta := protocol.EncodeMeta(protocol.Meta{Status: protocol.StatusComplete})
	fb.send(r.id, protocol.CmdReply, protocol.ServerJobs, meta, []byte(`[{"id":"J1"}]`)) // an old request's answer
	fb.send(r.id, protocol.CmdPartial, "SYNC-echo", []byte("chunk"))
	fb.send(r.id, protocol.CmdReply, protocol.ServerWorkers, meta, []byte(`[{"identity":"w1"}]`))
	got, err := await(t, ch)
	if err != nil || len(got) != 1 || got[0].Identity != "w1" {
		t.Fatalf("Workers = %+v, %v; want w1 only", got, err)
	}
}

func TestClient_ConcurrentUse(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprint("job-", i)
			id, err := c.Submit(context.Background(), "echo", client.Request{Params: map[string]string{"n": fmt.Sprint(i)}})
			if err == nil && id != want {
				err = fmt.Errorf("goroutine %d got %q, want %q", i, id, want)
			}
			errs <- err
		})
	}
	for range n {
		r := fb.recv()
		fb.final(r, protocol.Meta{Status: protocol.StatusAccepted, Job: "job-" + r.meta.Params["n"]})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
