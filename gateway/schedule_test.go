package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/zmws/zmws/protocol"
)

func TestGateway_ServerSchedules(t *testing.T) {
	want := `[{"name":"nightly","spec":"0 3 * * *","service":"backup","catch_up":"one","fired":0,"skipped":0,"missed":0}]`
	fb := &fakeBackend{queries: map[string]string{protocol.ServerSchedules: want}}
	g := newGateway(t, fb, Config{})
	w := serve(g, http.MethodGet, "/"+protocol.ServerSchedules, nil)
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != want {
		t.Fatalf("GET /SERVER-SCHEDULES: %d %q", w.Code, w.Body.String())
	}
	if svc, _, _ := fb.last(); svc != protocol.ServerSchedules {
		t.Fatalf("asked %s", svc)
	}
}
