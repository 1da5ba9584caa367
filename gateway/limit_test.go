package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmws/zmws/worker"
)

func TestLimiter_RateAtChosenInstants(t *testing.T) {
	lm := newLimiter(Limits{Rate: 50})
	t0 := time.Unix(1000, 0)
	for i := range 50 { // the burst (default: the rate)
		if done, _, why := lm.admit("a", t0); done == nil {
			t.Fatalf("request %d of the burst refused: %s", i, why)
		} else {
			done()
		}
	}
	done, retry, why := lm.admit("a", t0)
	if done != nil || retry <= 0 || retry > 20*time.Millisecond {
		t.Fatalf("the 51st at once: admitted=%v retry=%v (%s), want refused, retry within 20 ms", done != nil, retry, why)
	}
	// Another client has a bucket of its own.
	if done, _, _ := lm.admit("b", t0); done == nil {
		t.Fatal("client b refused for a's requests")
	}
	// 20 ms later, one more token.
	if done, _, why := lm.admit("a", t0.Add(20*time.Millisecond)); done == nil {
		t.Fatalf("after 20 ms: refused: %s", why)
	}
	if done, _, _ := lm.admit("a", t0.Add(20*time.Millisecond)); done != nil {
		t.Fatal("after 20 ms: two admitted, one token refilled")
	}
	// A refusal takes no token: a second later the burst is whole again.
	for i := range 50 {
		if done, _, why := lm.admit("a", t0.Add(1020*time.Millisecond)); done == nil {
			t.Fatalf("a second on, request %d refused: %s", i, why)
		}
	}
}

func TestLimiter_Concurrent(t *testing.T) {
	lm := newLimiter(Limits{Concurrent: 2})
	now := time.Unix(1000, 0)
	d1, _, _ := lm.admit("a", now)
	d2, _, _ := lm.admit("a", now)
	if d1 == nil || d2 == nil {
		t.Fatal("two in flight refused")
	}
	if d, retry, why := lm.admit("a", now); d != nil || retry != time.Second {
		t.Fatalf("a third in flight: admitted=%v retry=%v (%s)", d != nil, retry, why)
	}
	d1()
	if d, _, why := lm.admit("a", now); d == nil {
		t.Fatalf("after one ended: refused: %s", why)
	}
}

func TestLimiter_ForgetsIdleClients(t *testing.T) {
	lm := newLimiter(Limits{Rate: 10, Burst: 1})
	now := time.Unix(1000, 0)
	busy, _, _ := lm.admit("busy", now) // in flight: remembered
	drained, _, _ := lm.admit("drained", now)
	drained() // ended, but its bucket is empty until 100 ms on
	if lm.sweep(now.Add(50 * time.Millisecond)); len(lm.clients) != 2 {
		t.Fatalf("after 50 ms: %d clients remembered, want 2", len(lm.clients))
	}
	busy()
	if lm.sweep(now.Add(time.Second)); len(lm.clients) != 0 {
		t.Fatalf("after 1 s, nothing in flight: %d clients remembered, want 0", len(lm.clients))
	}
}

// TestE2E_ClientRateLimit: with 50 requests a second per client, a client
// that sends 500 as fast as it can gets 429 rate_limited, with a
// Retry-After, for what is past its rate, and another client sending at
// the same time is not refused once.
func TestE2E_ClientRateLimit(t *testing.T) {
	ts, toks := testTokens(t)
	s := newStack(t, Config{Tokens: ts, Limits: Limits{Rate: 50}})
	s.worker(t, "STR-REV", 2, worker.HandlerFunc(reverse))
	get := func(token string) (int, string, string) {
		req, _ := http.NewRequest(http.MethodGet, s.hs.URL+"/STR-REV?str=abc", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := s.hs.Client().Do(req)
		if err != nil {
			t.Error(err)
			return 0, "", ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e struct {
			Code string `json:"code"`
		}
		json.Unmarshal(b, &e)
		return resp.StatusCode, e.Code, resp.Header.Get("Retry-After")
	}
	var accepted, refused, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	jobs := make(chan struct{}, 500)
	for range 500 {
		jobs <- struct{}{}
	}
	close(jobs)
	for range 8 {
		wg.Go(func() {
			for range jobs {
				switch code, ecode, retry := get(toks["str"]); {
				case code == http.StatusAccepted:
					accepted.Add(1)
				case code == http.StatusTooManyRequests && ecode == codeRateLimited:
					if n, err := strconv.Atoi(retry); err != nil || n < 1 {
						t.Errorf("429 with Retry-After %q", retry)
					}
					refused.Add(1)
				default:
					other.Add(1)
					t.Errorf("client str: %d %s", code, ecode)
				}
			}
		})
	}
	// The other client, meanwhile: 20 requests, all within its own burst.
	for i := range 20 {
		if code, ecode, _ := get(toks["all"]); code != http.StatusAccepted {
			t.Errorf("client all, request %d: %d %s (refused for the other client's rate)", i, code, ecode)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	bound := 50 + int64(50*elapsed.Seconds()) + 1 // the burst, then 50 a second
	t.Logf("client str: %d accepted, %d refused (429) in %v (at most %d may pass); client all: 20 of 20 accepted",
		accepted.Load(), refused.Load(), elapsed.Round(time.Millisecond), bound)
	if accepted.Load() > bound {
		t.Errorf("client str: %d accepted in %v, more than its rate allows (%d)", accepted.Load(), elapsed, bound)
	}
	if accepted.Load() < 50 {
		t.Errorf("client str: %d accepted, fewer than its burst of 50", accepted.Load())
	}
	if accepted.Load()+refused.Load()+other.Load() != 500 {
		t.Errorf("client str: %d answers of 500", accepted.Load()+refused.Load()+other.Load())
	}
	if elapsed < 4*time.Second && refused.Load() < 500-bound {
		t.Errorf("client str: only %d refused", refused.Load())
	}
}
