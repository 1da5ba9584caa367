package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/zmws/zmws/protocol"
)

// A job submitted with Zmws-Delay answers 202 at once; GET /jobs/{id}
// shows it scheduled, with its priority and time; DELETE cancels it.
func TestE2E_ScheduledJob(t *testing.T) {
	s := newStack(t, Config{})
	s.worker(t, "STR-REV", 1, reverse)
	req, err := http.NewRequest(http.MethodPost, s.hs.URL+"/STR-REV?str=later", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Zmws-Delay", "1h")
	req.Header.Set("Zmws-Priority", "3")
	resp, err := s.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("delayed submission: %d, Location %q", resp.StatusCode, loc)
	}
	r, body := s.get(t, loc)
	job := decodeJSON[protocol.JobView](t, body)
	if r.StatusCode != http.StatusOK || job.State != protocol.JobScheduled || job.Priority != 3 || job.NotBefore == nil ||
		time.Until(*job.NotBefore) < 59*time.Minute {
		t.Fatalf("scheduled job: %d %s", r.StatusCode, body)
	}
	del, err := http.NewRequest(http.MethodDelete, s.hs.URL+loc, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = s.hs.Client().Do(del)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r, body := s.get(t, loc); resp.StatusCode != http.StatusOK || decodeJSON[protocol.JobView](t, body).Code != protocol.CodeCancelled {
		t.Fatalf("after DELETE %d: %d %s", resp.StatusCode, r.StatusCode, body)
	}
}
