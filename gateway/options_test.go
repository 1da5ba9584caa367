package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// Zmws-Priority, Zmws-Delay and Zmws-At reach the broker's request; bad
// values, and a delay on a sync job, are 400 naming the header.
func TestGateway_PriorityAndDelayHeaders(t *testing.T) {
	fb := &fakeBackend{call: func(context.Context, func([]byte) error) (*client.Result, error) {
		return &client.Result{Status: protocol.StatusComplete}, nil
	}}
	g := newGateway(t, fb, Config{})
	post := func(target string, h map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, target, nil)
		for k, v := range h {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w
	}
	w := post("/S", map[string]string{"Zmws-Priority": "-4", "Zmws-Delay": "30s"})
	if _, req, _ := fb.last(); w.Code != http.StatusAccepted || req.Priority != -4 || req.Delay != 30*time.Second || !req.At.IsZero() {
		t.Fatalf("priority and delay: %d %+v", w.Code, req)
	}
	w = post("/S", map[string]string{"Zmws-At": "2026-12-02T03:00:00Z"})
	if _, req, _ := fb.last(); w.Code != http.StatusAccepted || !req.At.Equal(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)) || req.Delay != 0 {
		t.Fatalf("at: %d %+v", w.Code, req)
	}
	w = post("/SYNC-S", map[string]string{"Zmws-Priority": "7"})
	if _, req, _ := fb.last(); w.Code != http.StatusOK || req.Priority != 7 {
		t.Fatalf("sync priority: %d %+v", w.Code, req)
	}
	far := time.Now().Add(protocol.MaxDelay + time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct {
		target string
		h      map[string]string
		name   string
	}{
		{"/S", map[string]string{"Zmws-Priority": "high"}, "Zmws-Priority"},
		{"/S", map[string]string{"Zmws-Priority": "4294967296"}, "Zmws-Priority"},
		{"/S", map[string]string{"Zmws-Delay": "soon"}, "Zmws-Delay"},
		{"/S", map[string]string{"Zmws-Delay": "-1s"}, "Zmws-Delay"},
		{"/S", map[string]string{"Zmws-Delay": "9000h"}, "Zmws-Delay"},
		{"/S", map[string]string{"Zmws-At": "tomorrow"}, "Zmws-At"},
		{"/S", map[string]string{"Zmws-At": far}, "Zmws-At"},
		{"/S", map[string]string{"Zmws-At": "2026-12-02T03:00:00Z", "Zmws-Delay": "1s"}, "Zmws-Delay and Zmws-At"},
		{"/SYNC-S", map[string]string{"Zmws-Delay": "1s"}, "Zmws-Delay"},
		{"/SYNC-S", map[string]string{"Zmws-At": "2026-12-02T03:00:00Z"}, "Zmws-At"},
	} {
		_, _, before := fb.last()
		w := post(c.target, c.h)
		body := wantError(t, w, http.StatusBadRequest, protocol.CodeBadRequest)
		if _, _, after := fb.last(); after != before {
			t.Errorf("%s %v reached the broker", c.target, c.h)
		}
		if !strings.Contains(body.Error, c.name) {
			t.Errorf("%s %v: %q does not name %s", c.target, c.h, body.Error, c.name)
		}
	}
}
