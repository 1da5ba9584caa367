package broker

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/zmws/zmws/protocol"
)

// Per-client limits (Config.ClientRate, Config.ClientConcurrency): how
// many jobs a second one client submits, and how many of its sync jobs are
// unfinished at once. A client is its CURVE key when it has one, else its
// peer's network address (the server reads ZeroMQ's Peer-Address), so a
// client that reconnects under a new routing id is the same client. The
// in-process HTTP gateway has neither and is not limited here: it limits
// each token or address itself (--http-rate, --http-concurrency). Past a
// limit a submission is refused rate_limited, never queued.

// maxClients bounds the clients whose limits the broker tracks. Past it,
// clients not yet tracked share one allowance (the last entry), so many
// addresses cannot grow the broker's memory, though they then compete.
const maxClients = 10_000

// overflowClient is the key of the shared allowance past maxClients.
const overflowClient = "\x00overflow"

// clientLimit is one client's allowance.
type clientLimit struct {
	bucket *rate.Limiter // nil without Config.ClientRate
	sync   int           // its sync jobs not finished
}

// ParseClientRate reads a --client-rate value: N or N/BURST jobs a
// second.
func ParseClientRate(s string) (Rate, error) {
	r, err := parseRate(s)
	if err != nil {
		return Rate{}, fmt.Errorf("client rate %q (want JOBS_PER_SECOND or JOBS_PER_SECOND/BURST): %w", s, err)
	}
	return r, nil
}

// limitKey is who r's client is for the per-client limits, or "" when it
// is not limited (no limit set, or the in-process gateway).
func (b *Broker) limitKey(user, peer string) string {
	if b.cfg.ClientRate.PerSecond <= 0 && b.cfg.ClientConcurrency <= 0 {
		return ""
	}
	if user != "" {
		return "key:" + user
	}
	if peer != "" {
		return "peer:" + peer
	}
	return ""
}

// clientOf returns the allowance of client key, making it if needed, and
// the key it is kept under (overflowClient past maxClients).
func (b *Broker) clientOf(now time.Time, key string) (string, *clientLimit) {
	if c := b.clients[key]; c != nil {
		return key, c
	}
	if len(b.clients) >= maxClients {
		b.sweepClients(now)
		if len(b.clients) >= maxClients {
			key = overflowClient
			if c := b.clients[key]; c != nil {
				return key, c
			}
		}
	}
	c := &clientLimit{}
	if r := b.cfg.ClientRate; r.PerSecond > 0 {
		c.bucket = rate.NewLimiter(rate.Limit(r.PerSecond), r.burst())
	}
	if b.clients == nil {
		b.clients = make(map[string]*clientLimit)
	}
	b.clients[key] = c
	return key, c
}

// sweepClients forgets the allowances that are back to full: no sync job
// unfinished and a full bucket. Such a client, when it comes back, gets a
// fresh one, as it would have.
func (b *Broker) sweepClients(now time.Time) {
	for k, c := range b.clients {
		if c.sync == 0 && (c.bucket == nil || c.bucket.TokensAt(now) >= float64(c.bucket.Burst())) {
			delete(b.clients, k)
		}
	}
}

// clientLimited takes one submission from r's client's allowance at now
// (and, for a sync job, one of its concurrent sync jobs). When there is
// none it refuses r (rate_limited, counted for service) and reports true.
func (b *Broker) clientLimited(now time.Time, r *request, service string, sync bool) bool {
	if r.limit == "" {
		return false
	}
	key, c := b.clientOf(now, r.limit)
	r.limit = key
	if sync && b.cfg.ClientConcurrency > 0 && c.sync >= b.cfg.ClientConcurrency {
		b.countRefused(service, protocol.CodeRateLimited)
		b.refuse(*r, protocol.CodeRateLimited, fmt.Sprintf("this client has %d sync jobs unfinished, its limit (--client-concurrency): wait for one to end", c.sync))
		return true
	}
	if c.bucket != nil {
		res := c.bucket.ReserveN(now, 1)
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			b.countRefused(service, protocol.CodeRateLimited)
			b.refuse(*r, protocol.CodeRateLimited, fmt.Sprintf("this client submits at most %g jobs a second (burst %d, --client-rate): the next is taken in %v",
				float64(c.bucket.Limit()), c.bucket.Burst(), d.Round(time.Millisecond)))
			return true
		}
	}
	if sync && b.cfg.ClientConcurrency > 0 {
		c.sync++
		r.holdsSync = true
	}
	return false
}

// syncEnded gives back the concurrent sync job j's client held, once j
// finishes (moveJob).
func (b *Broker) syncEnded(j *job) {
	x := j.x
	if x == nil || x.reply == nil || !x.reply.holdsSync {
		return
	}
	x.reply.holdsSync = false
	if c := b.clients[x.reply.limit]; c != nil && c.sync > 0 {
		c.sync--
	}
}
