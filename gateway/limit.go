package gateway

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound what one client may ask of the gateway. A client is its
// token's name when the gateway has tokens, else the IP address it
// connects from. Past a bound a request gets 429 rate_limited with a
// Retry-After header; nothing is queued. Jobs and queries count
// (/NAME, /SYNC-NAME, /SERVER-*, /jobs/...); /healthz, the page's files,
// its event stream and /metrics do not.
type Limits struct {
	// Rate is how many requests a second a client may make, on average
	// (0: no bound); Burst how many it may make at once (default: Rate,
	// at least 1).
	Rate  float64
	Burst int
	// Concurrent bounds a client's requests in flight (0: no bound): a
	// client holding that many sync jobs open is refused another.
	Concurrent int
}

func (l Limits) on() bool { return l.Rate > 0 || l.Concurrent > 0 }

// codeRateLimited: a client's rate or concurrency bound (429).
const codeRateLimited = "rate_limited"

// maxTracked bounds the clients a limiter remembers. Past it, the clients
// with nothing to remember (a full bucket, no request in flight) are
// forgotten; if every one has something, a new client is refused rather
// than let through unbounded.
const maxTracked = 100_000

// limiter applies Limits per client.
type limiter struct {
	l       Limits
	burst   int
	mu      sync.Mutex
	clients map[string]*clientLimit
}

type clientLimit struct {
	bucket   *rate.Limiter // nil without a Rate
	inFlight int
}

func newLimiter(l Limits) *limiter {
	if !l.on() {
		return nil
	}
	b := l.Burst
	if b <= 0 {
		b = max(1, int(math.Ceil(l.Rate)))
	}
	return &limiter{l: l, burst: b, clients: map[string]*clientLimit{}}
}

// clientKey names r's client: its token's name, else its IP address.
func clientKey(r *http.Request, c *caller) string {
	if c != nil {
		return "token " + c.name
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "address " + host
}

// admit takes one request of client key at now. It returns a func to call
// when the request ends, or, refused, the wait to tell in Retry-After and
// why.
func (lm *limiter) admit(key string, now time.Time) (done func(), retry time.Duration, why string) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	cl := lm.clients[key]
	if cl == nil {
		if len(lm.clients) >= maxTracked && !lm.sweep(now) {
			return nil, time.Second, fmt.Sprintf("the gateway tracks %d clients at most, all of them busy", maxTracked)
		}
		cl = &clientLimit{}
		if lm.l.Rate > 0 {
			cl.bucket = rate.NewLimiter(rate.Limit(lm.l.Rate), lm.burst)
		}
		lm.clients[key] = cl
	}
	if lm.l.Concurrent > 0 && cl.inFlight >= lm.l.Concurrent {
		return nil, time.Second, fmt.Sprintf("%s has %d requests in flight, its bound (--http-concurrency)", key, cl.inFlight)
	}
	if cl.bucket != nil {
		res := cl.bucket.ReserveN(now, 1)
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			return nil, d, fmt.Sprintf("%s sends more than %g requests a second (burst %d, --http-rate)", key, lm.l.Rate, lm.burst)
		}
	}
	cl.inFlight++
	return func() {
		lm.mu.Lock()
		cl.inFlight--
		lm.mu.Unlock()
	}, 0, ""
}

// sweep forgets the clients a limiter need not remember (lm.mu held) and
// reports whether there is room now.
func (lm *limiter) sweep(now time.Time) bool {
	for k, cl := range lm.clients {
		if cl.inFlight == 0 && (cl.bucket == nil || cl.bucket.TokensAt(now) >= float64(lm.burst)) {
			delete(lm.clients, k)
		}
	}
	return len(lm.clients) < maxTracked
}

// limited reports whether the route counts against a client's Limits.
func (k routeKind) limited() bool {
	switch k {
	case routeAsync, routeSync, routeServer, routeJob, routeRetry, routeFailed, routeRetryFailed, routeControl:
		return true
	}
	return false
}

// refuseLimited answers 429 rate_limited with Retry-After in whole
// seconds (at least 1).
func refuseLimited(w http.ResponseWriter, retry time.Duration, why string) {
	secs := max(1, int(math.Ceil(retry.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, codeRateLimited, fmt.Sprintf("%s: try again in %d s", why, secs))
}
