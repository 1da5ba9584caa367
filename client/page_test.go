package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
)

// TestClient_PagesOnTheWire: the page options travel in the request's
// meta frame, and the walk follows the reply's next until there is none.
func TestClient_PagesOnTheWire(t *testing.T) {
	fb := newFakeBroker(t)
	c := newClient(t, fb.ep, client.Config{})
	ctx := context.Background()
	answer := func(r received, next string, names ...string) {
		t.Helper()
		list := []protocol.ServiceInfo{}
		for _, n := range names {
			list = append(list, protocol.ServiceInfo{Name: n})
		}
		b, _ := json.Marshal(list)
		fb.final(r, protocol.Meta{Status: protocol.StatusComplete, Next: next}, b)
	}

	ch := async(func() ([]protocol.ServiceInfo, error) {
		items, next, err := c.ServicesPage(ctx, client.PageOptions{Limit: 2, After: "A"})
		if next != "C" {
			return nil, fmt.Errorf("next %q, want C", next)
		}
		return items, err
	})
	r := fb.recv()
	if r.msg.Service != protocol.ServerServices || r.meta.Limit != 2 || r.meta.After != "A" || len(r.in) != 0 {
		t.Fatalf("ServicesPage sent %s %+v %q", r.msg.Service, r.meta, r.in)
	}
	answer(r, "C", "B", "C")
	if got, err := await(t, ch); err != nil || len(got) != 2 || got[1].Name != "C" {
		t.Fatalf("ServicesPage = %+v, %v", got, err)
	}

	// Services walks every page, at the largest page size.
	chAll := async(func() ([]protocol.ServiceInfo, error) { return c.Services(ctx) })
	r = fb.recv()
	if r.meta.Limit != protocol.MaxServicesPage || r.meta.After != "" {
		t.Fatalf("Services' first request: %+v", r.meta)
	}
	answer(r, "B", "A", "B")
	r = fb.recv()
	if r.meta.After != "B" {
		t.Fatalf("Services' second request: %+v, want after B", r.meta)
	}
	answer(r, "", "C")
	got, err := await(t, chAll)
	if err != nil || len(got) != 3 || got[2].Name != "C" {
		t.Fatalf("Services = %+v, %v", got, err)
	}

	// A broker that gives the same cursor again would walk for ever.
	chAll = async(func() ([]protocol.ServiceInfo, error) { return c.Services(ctx) })
	answer(fb.recv(), "B", "A", "B")
	answer(fb.recv(), "B", "B")
	if _, err := await(t, chAll); !errors.Is(err, client.ErrBadReply) {
		t.Fatalf("Services with a stuck cursor: %v, want ErrBadReply", err)
	}

	// A refusal of a page is the walk's error.
	chJobs := async(func() ([]protocol.JobInfo, error) { return c.Jobs(ctx) })
	r = fb.recv()
	if r.msg.Service != protocol.ServerJobs || r.meta.Limit != protocol.MaxJobsPage {
		t.Fatalf("Jobs sent %s %+v", r.msg.Service, r.meta)
	}
	fb.final(r, protocol.Meta{Status: protocol.StatusRefused, Code: protocol.CodeBadRequest, Error: "no"})
	var e *client.Error
	if _, err := await(t, chJobs); !errors.As(err, &e) || e.Code != protocol.CodeBadRequest {
		t.Fatalf("Jobs refused: %v", err)
	}
}

// announce makes each service known to the broker: a READY from a fresh
// worker socket, which then leaves (the broker remembers the service).
func announce(t *testing.T, endpoint string, services ...string) {
	t.Helper()
	for _, service := range services {
		s, err := zmq.NewSocket(zmq.DEALER)
		if err != nil {
			t.Fatal(err)
		}
		s.SetLinger(time.Second)
		if err := s.Connect(endpoint); err != nil {
			t.Fatal(err)
		}
		form := protocol.Form{Version: protocol.V2}
		for _, cmd := range []protocol.Command{protocol.CmdReady, protocol.CmdDisconnect} {
			if _, err := s.SendMessage(protocol.EncodeWorker(protocol.Message{Form: form, Cmd: cmd, Service: service})); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
	}
}

func TestClient_PagesAgainstServer(t *testing.T) {
	srv := startServer(t)
	names := []string{"P0", "P1", "P2", "P3", "P4", "P5", "P6"}
	announce(t, srv.WorkerEndpoint(), names...)
	startRevWorker(t, srv.WorkerEndpoint(), "STR-REV", 100*time.Millisecond)
	names = append(names, "STR-REV")
	c := newClient(t, srv.ClientEndpoint(), client.Config{})
	ctx := context.Background()
	zmqtest.Eventually(t, "services known", waitLong, func() bool {
		all, err := c.Services(ctx)
		return err == nil && len(all) == len(names)
	})

	// Pages of 3: 3, 3, 2, following next.
	var walked []string
	var sizes []int
	opt := client.PageOptions{Limit: 3}
	for {
		page, next, err := c.ServicesPage(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(page))
		for _, s := range page {
			walked = append(walked, s.Name)
		}
		if next == "" || len(sizes) > len(names) {
			break
		}
		opt.After = next
	}
	if !slices.Equal(walked, names) || !slices.Equal(sizes, []int{3, 3, 2}) {
		t.Fatalf("pages of 3: %v in pages of %v", walked, sizes)
	}

	// The iterator yields the same, and stops when the caller does.
	var seen []string
	for s, err := range c.AllServices(ctx, client.PageOptions{Limit: 2, After: "P1"}) {
		if err != nil {
			t.Fatal(err)
		}
		if seen = append(seen, s.Name); len(seen) == 4 {
			break
		}
	}
	if !slices.Equal(seen, names[2:6]) {
		t.Fatalf("AllServices after P1, first 4: %v", seen)
	}

	// Jobs: five finished, in pages of 2, newest first.
	var ids []string
	for i := range 5 {
		res, err := c.Call(ctx, "STR-REV", client.Request{Input: fmt.Appendf(nil, "job%d", i)}, nil)
		if err != nil || !res.OK() {
			t.Fatalf("Call %d: %+v %v", i, res, err)
		}
		ids = append([]string{res.JobID}, ids...)
	}
	var jobIDs []string
	pages := 0
	for j, err := range c.AllJobs(ctx, client.PageOptions{Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		jobIDs = append(jobIDs, j.ID)
	}
	first, next, err := c.JobsPage(ctx, client.PageOptions{Limit: 2})
	for err == nil && next != "" && pages < 10 {
		pages++
		_, next, err = c.JobsPage(ctx, client.PageOptions{Limit: 2, After: next})
	}
	if err != nil || !slices.Equal(jobIDs, ids) || len(first) != 2 || first[0].ID != ids[0] || pages != 2 {
		t.Fatalf("jobs in pages of 2: %v (%v), want %v; first page %d jobs, %d pages after it", jobIDs, err, ids, len(first), pages)
	}
	if all, err := c.Jobs(ctx); err != nil || len(all) != 5 {
		t.Fatalf("Jobs: %d, %v", len(all), err)
	}

	// A bad limit and a bad cursor are refused, and say why.
	var e *client.Error
	if _, _, err := c.ServicesPage(ctx, client.PageOptions{Limit: -1}); !errors.As(err, &e) || e.Code != protocol.CodeBadRequest {
		t.Errorf("limit -1: %v, want bad_request", err)
	}
	if _, _, err := c.JobsPage(ctx, client.PageOptions{After: "nonsense"}); !errors.As(err, &e) || e.Code != protocol.CodeBadRequest {
		t.Errorf("after nonsense: %v, want bad_request", err)
	}
}
