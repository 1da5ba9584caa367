package broker_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// page asks b for one page of a paged listing as client key user ("" for
// a trusted peer) and decodes it: its entries and the next cursor. A
// refusal fails the test.
func page[T any](t *testing.T, b *broker.Broker, user, service string, m protocol.Meta) ([]T, string) {
	t.Helper()
	out := b.HandleClient(t0, "c", user, request(v2, service, protocol.EncodeMeta(m)))
	_, md, rest := clientReply(t, one(t, out, protocol.ToClient, "c"))
	if md.Status != protocol.StatusComplete || len(rest) != 1 {
		t.Fatalf("%s %+v: reply %+v, %d frames", service, m, md, len(rest))
	}
	var items []T
	if err := json.Unmarshal(rest[0], &items); err != nil || items == nil {
		t.Fatalf("%s %+v: payload %.200q: %v", service, m, rest[0], err)
	}
	return items, md.Next
}

func servicePage(t *testing.T, b *broker.Broker, user string, limit int, after string) ([]string, string) {
	t.Helper()
	items, next := page[protocol.ServiceInfo](t, b, user, protocol.ServerServices, protocol.Meta{Limit: limit, After: after})
	names := make([]string, len(items))
	for i, s := range items {
		names[i] = s.Name
	}
	return names, next
}

// walkServices follows every page of SERVER-SERVICES, limit a page.
func walkServices(t *testing.T, b *broker.Broker, user string, limit int) (names []string, pages int) {
	t.Helper()
	after := ""
	for {
		got, next := servicePage(t, b, user, limit, after)
		names, pages = append(names, got...), pages+1
		if next == "" {
			return names, pages
		}
		if len(got) == 0 || next != got[len(got)-1] {
			t.Fatalf("page after %q: %v, next %q: want the last name as next", after, got, next)
		}
		if pages > 1000 {
			t.Fatal("walk does not end")
		}
		after = next
	}
}

func withServices(t *testing.T, cfg broker.Config, names ...string) *broker.Broker {
	t.Helper()
	b := newBroker(t, cfg)
	for i, name := range names {
		b.HandleWorker(t0, fmt.Sprint("w", i), "wall", readyZ(name))
	}
	return b
}

func TestBroker_ServicesPages(t *testing.T) {
	six := []string{"A", "B", "C", "D", "E", "F"}
	b := withServices(t, broker.Config{}, "D", "F", "B", "A", "E", "C")
	for _, tc := range []struct {
		name      string
		limit     int
		after     string
		want      []string
		wantNext  string
		wantPages int
	}{
		{"all on one page", 0, "", six, "", 1},
		{"first of two", 3, "", []string{"A", "B", "C"}, "C", 2},
		{"an exact multiple: the last page is full and has no next", 3, "C", []string{"D", "E", "F"}, "", 0},
		{"a page size that leaves one over", 5, "", []string{"A", "B", "C", "D", "E"}, "E", 2},
		{"one over", 5, "E", []string{"F"}, "", 0},
		{"a cursor that names no service", 2, "BA", []string{"C", "D"}, "D", 0},
		{"a cursor before every name", 1, "0", []string{"A"}, "A", 0},
		{"a cursor past the end", 2, "Z", []string{}, "", 0},
		{"the last name as cursor", 2, "F", []string{}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next := servicePage(t, b, "", tc.limit, tc.after)
			if !slices.Equal(got, tc.want) || next != tc.wantNext {
				t.Fatalf("limit %d after %q: %v next %q, want %v next %q", tc.limit, tc.after, got, next, tc.want, tc.wantNext)
			}
			if tc.wantPages == 0 {
				return
			}
			all, pages := walkServices(t, b, "", tc.limit)
			if !slices.Equal(all, six) || pages != tc.wantPages {
				t.Fatalf("walk at limit %d: %v in %d pages, want %v in %d", tc.limit, all, pages, six, tc.wantPages)
			}
		})
	}
}

func TestBroker_ServicesPageOfNoServices(t *testing.T) {
	b := newBroker(t, broker.Config{})
	if got, next := servicePage(t, b, "", 0, ""); len(got) != 0 || next != "" {
		t.Fatalf("no services: %v next %q", got, next)
	}
	// A stock client's reply is the bare JSON: "[]", not "null".
	r, err := protocol.DecodeReply(one(t, b.HandleClient(t0, "c", "", request(v1, protocol.ServerServices)), protocol.ToClient, "c").Frames)
	if err != nil || len(r.Body) != 1 || string(r.Body[0]) != "[]" {
		t.Fatalf("stock client, no services: %q %v", r.Body, err)
	}
}

// TestBroker_PageLimits: no limit is the default, a larger one than the
// maximum is the maximum, and a negative one is refused.
func TestBroker_PageLimits(t *testing.T) {
	names := make([]string, protocol.MaxServicesPage+1)
	for i := range names {
		names[i] = fmt.Sprintf("S%05d", i)
	}
	b := withServices(t, broker.Config{}, names...)
	if got, next := servicePage(t, b, "", 0, ""); len(got) != protocol.DefaultServicesPage || next != names[protocol.DefaultServicesPage-1] {
		t.Fatalf("no limit: %d services, next %q; want %d", len(got), next, protocol.DefaultServicesPage)
	}
	if got, next := servicePage(t, b, "", 1<<40, ""); len(got) != protocol.MaxServicesPage || next != names[protocol.MaxServicesPage-1] {
		t.Fatalf("limit 2^40: %d services, next %q; want the maximum, %d", len(got), next, protocol.MaxServicesPage)
	}
	for _, service := range []string{protocol.ServerServices, protocol.ServerJobs} {
		out := b.HandleClient(t0, "c", "", request(v2, service, protocol.EncodeMeta(protocol.Meta{Limit: -1})))
		md := refusedWith(t, out, "c", protocol.CodeBadRequest)
		if !strings.Contains(md.Error, "limit -1") || !strings.Contains(md.Error, service) {
			t.Errorf("%s limit -1: %q, want the limit and the service named", service, md.Error)
		}
	}
	// A stock client, which cannot page, gets the first page.
	r, err := protocol.DecodeReply(one(t, b.HandleClient(t0, "c", "", request(v1, protocol.ServerServices)), protocol.ToClient, "c").Frames)
	var list []protocol.ServiceInfo
	if err != nil || len(r.Body) != 1 || json.Unmarshal(r.Body[0], &list) != nil || len(list) != protocol.DefaultServicesPage || list[0].Name != names[0] {
		t.Fatalf("stock client: %d frames, %d services, %v", len(r.Body), len(list), err)
	}
	// A malformed limit is a malformed meta frame.
	frame := append([]byte(protocol.MetaPrefix), `{"limit":"ten"}`...)
	refusedWith(t, b.HandleClient(t0, "c", "", request(v2, protocol.ServerServices, frame)), "c", protocol.CodeBadRequest)
}

// TestBroker_ServicesPagesStableUnderChange: services announced or
// forgotten during a walk neither repeat nor hide the others.
func TestBroker_ServicesPagesStableUnderChange(t *testing.T) {
	b := withServices(t, broker.Config{}, "A", "C", "E", "G", "I")
	first, next := servicePage(t, b, "", 2, "")
	if !slices.Equal(first, []string{"A", "C"}) || next != "C" {
		t.Fatalf("first page %v next %q", first, next)
	}
	// B lands before the cursor, F after it; the cursor's own C goes.
	b.HandleWorker(t0, "wB", "", readyZ("B"))
	b.HandleWorker(t0, "wF", "", readyZ("F"))
	b.HandleWorker(t0, "w1", "wall", workerMsg(v2, protocol.CmdDisconnect, ""))
	out := b.HandleClient(t0, "c", "", request(v2, protocol.ServerForget, meta, []byte("C")))
	if _, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c")); md.Status != protocol.StatusComplete {
		t.Fatalf("forget C: %+v", md)
	}
	second, next := servicePage(t, b, "", 2, next)
	third, last := servicePage(t, b, "", 2, next)
	if !slices.Equal(second, []string{"E", "F"}) || !slices.Equal(third, []string{"G", "I"}) || last != "" {
		t.Fatalf("after the change: %v then %v (next %q), want [E F] then [G I]", second, third, last)
	}
}

// TestBroker_ServicesPagesOfAKey: a key's pages hold only the services it
// may use, and are full: the filter comes before the paging.
func TestBroker_ServicesPagesOfAKey(t *testing.T) {
	b := withServices(t, broker.Config{Access: newAccess()}, "A1", "B1", "A2", "B2", "A3", "B3", "A4", "B4", "A5")
	got, next := servicePage(t, b, "bob", 2, "")
	if !slices.Equal(got, []string{"A1", "A2"}) || next != "A2" {
		t.Fatalf("bob's first page: %v next %q", got, next)
	}
	all, pages := walkServices(t, b, "bob", 2)
	if !slices.Equal(all, []string{"A1", "A2", "A3", "A4", "A5"}) || pages != 3 {
		t.Fatalf("bob's walk: %v in %d pages", all, pages)
	}
	// A cursor between his services shows him nothing of the others.
	if got, next := servicePage(t, b, "bob", 1, "B"); len(got) != 0 || next != "" {
		t.Fatalf("bob after B: %v next %q", got, next)
	}
	if all, _ := walkServices(t, b, "alice", 4); len(all) != 9 {
		t.Fatalf("the admin's walk: %v", all)
	}
}

// finishJobs runs n jobs of S on w1 to their end, one a second from
// at(from), and returns their IDs in the order they finished.
func finishJobs(t *testing.T, b *broker.Broker, from time.Duration, n int, params map[string]string) []string {
	t.Helper()
	var ids []string
	for i := range n {
		now := at(from + time.Duration(i)*time.Second)
		out := b.HandleClient(now, "c", "", zreq("S", params))
		id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
		b.HandleWorker(now, "w1", "", final(id, protocol.Meta{Status: protocol.StatusComplete}, "out"))
		ids = append(ids, id)
	}
	return ids
}

func jobPage(t *testing.T, b *broker.Broker, limit int, after string) ([]string, string) {
	t.Helper()
	items, next := page[protocol.JobInfo](t, b, "", protocol.ServerJobs, protocol.Meta{Limit: limit, After: after})
	ids := make([]string, len(items))
	for i, j := range items {
		ids[i] = j.ID
	}
	return ids, next
}

func newestFirst(ids []string) []string {
	out := slices.Clone(ids)
	slices.Reverse(out)
	return out
}

func TestBroker_JobsPages(t *testing.T) {
	b := newBroker(t, broker.Config{History: 5})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	if got, next := jobPage(t, b, 0, ""); len(got) != 0 || next != "" {
		t.Fatalf("no jobs: %v next %q", got, next)
	}
	ids := newestFirst(finishJobs(t, b, 0, 7, nil))[:5] // the ring keeps 5
	p1, n1 := jobPage(t, b, 2, "")
	p2, n2 := jobPage(t, b, 2, n1)
	p3, n3 := jobPage(t, b, 2, n2)
	if !slices.Equal(p1, ids[:2]) || !slices.Equal(p2, ids[2:4]) || !slices.Equal(p3, ids[4:]) || n1 == "" || n2 == "" || n3 != "" {
		t.Fatalf("pages of 2: %v %q, %v %q, %v %q; want %v", p1, n1, p2, n2, p3, n3, ids)
	}
	if !strings.HasSuffix(n1, "."+ids[1]) {
		t.Errorf("cursor %q does not name the page's last job %s", n1, ids[1])
	}
	// An exact multiple: the last page is full and has no next.
	if got, next := jobPage(t, b, 5, ""); !slices.Equal(got, ids) || next != "" {
		t.Fatalf("limit 5 of 5: %v next %q", got, next)
	}
	if got, next := jobPage(t, b, 1000_000, ""); !slices.Equal(got, ids) || next != "" {
		t.Fatalf("limit past the maximum: %v next %q", got, next)
	}
	// The last job's cursor: an empty page.
	_, last := jobPage(t, b, 4, "")
	if got, next := jobPage(t, b, 4, last); len(got) != 1 || next != "" {
		t.Fatalf("after job 4 of 5: %v next %q", got, next)
	}
	// Five more jobs finish: the cursor's job has left the ring, and so has
	// every job older than it, so its page is empty.
	finishJobs(t, b, time.Minute, 5, nil)
	if got, next := jobPage(t, b, 2, n1); len(got) != 0 || next != "" {
		t.Fatalf("after a job that left the history: %v next %q", got, next)
	}
}

// TestBroker_JobsPagesStableUnderChange: jobs that finish during a walk
// go before its cursor; the walk goes on where it was.
func TestBroker_JobsPagesStableUnderChange(t *testing.T) {
	b := newBroker(t, broker.Config{History: 10})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	ids := newestFirst(finishJobs(t, b, 0, 6, nil))
	p1, next := jobPage(t, b, 3, "")
	finishJobs(t, b, time.Minute, 2, nil)
	p2, last := jobPage(t, b, 3, next)
	if !slices.Equal(p1, ids[:3]) || !slices.Equal(p2, ids[3:]) || last != "" {
		t.Fatalf("walk with jobs finishing: %v then %v (next %q), want %v", p1, p2, last, ids)
	}
}

// TestBroker_JobsPageOfARetriedJob: a failed job retried and finished
// again is in the history twice, under one ID; the cursor tells them apart.
func TestBroker_JobsPageOfARetriedJob(t *testing.T) {
	b := newBroker(t, broker.Config{History: 10})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	out := b.HandleClient(t0, "c", "", zreq("S", nil))
	id, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	b.HandleWorker(t0, "w1", "", final(id, protocol.Meta{Status: protocol.StatusFailed, Error: "no"}))
	other := finishJobs(t, b, time.Second, 1, nil)[0]
	out = b.HandleClient(at(time.Minute), "c", "", request(v2, protocol.ServerRetry, meta, []byte(id)))
	again, _, _ := dispatched(t, one(t, out, protocol.ToWorker, "w1"))
	b.HandleWorker(at(time.Minute), "w1", "", final(again, protocol.Meta{Status: protocol.StatusComplete}))
	var walk []string
	for after, n := "", 0; ; n++ {
		got, next := jobPage(t, b, 1, after)
		walk = append(walk, got...)
		if next == "" || n > 10 {
			break
		}
		after = next
	}
	if !slices.Equal(walk, []string{id, other, id}) {
		t.Fatalf("walk one a page: %v, want %s %s %s", walk, id, other, id)
	}
}

func TestBroker_JobsPageBadCursor(t *testing.T) {
	b := newBroker(t, broker.Config{History: 5})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	ids := finishJobs(t, b, 0, 3, nil)
	for _, after := range []string{
		"x",
		"3",
		"3." + ids[0], // the newest is 3, but it is ids[2]
		"4." + ids[2], // no job has finished fourth yet
		"0." + ids[0],
		"-1." + ids[0],
		"1e3." + ids[0],
	} {
		out := b.HandleClient(t0, "c", "", request(v2, protocol.ServerJobs, protocol.EncodeMeta(protocol.Meta{After: after})))
		md := refusedWith(t, out, "c", protocol.CodeBadRequest)
		if !strings.Contains(md.Error, "first page") {
			t.Errorf("after %q: %q, want it to say to start again", after, md.Error)
		}
	}
	if got, _ := jobPage(t, b, 0, "3."+ids[2]); !slices.Equal(got, newestFirst(ids[:2])) {
		t.Fatalf("the newest's cursor: %v", got)
	}
}

// TestBroker_PagesAreBoundedInBytes: a page ends after the entry that
// takes it past protocol.MaxPageBytes, and says where to go on.
func TestBroker_PagesAreBoundedInBytes(t *testing.T) {
	b := newBroker(t, broker.Config{History: 5})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	big := map[string]string{"p": strings.Repeat("x", protocol.MaxPageBytes*3/4)}
	ids := newestFirst(finishJobs(t, b, 0, 3, big))
	var walk []string
	pages := 0
	for after := ""; ; {
		got, next := jobPage(t, b, 0, after)
		walk, pages = append(walk, got...), pages+1
		if next == "" || pages > 5 {
			break
		}
		after = next
	}
	if !slices.Equal(walk, ids) || pages != 2 {
		t.Fatalf("3 jobs of 3/4 a page each: %v in %d pages, want %v in 2", walk, pages, ids)
	}
}
