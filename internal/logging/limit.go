package logging

import "time"

// Limiter keeps a flood of one complaint from flooding the log: per kind
// of complaint it lets through the first line per peer in a period, and at
// most Burst lines of that kind per period across peers (peers can be made
// up: a new connection is a new peer). What it holds back is counted and
// reported with the next line of the kind it lets through. A Limiter is
// used by one goroutine (the broker's, the ZAP handler's); it reads no
// clock: callers pass the time.
type Limiter struct {
	// Period is the window (default a minute); Burst the lines per kind in
	// a window (default 20).
	Period time.Duration
	Burst  int
	kinds  map[string]*limitKind
}

type limitKind struct {
	windowEnd  time.Time
	lines      int
	suppressed int
	peers      map[string]time.Time // when each peer may be logged again
}

// maxPeers bounds the peers remembered per kind; past it the window starts
// afresh.
const maxPeers = 4096

// Allow reports whether a line of kind about peer may be logged now, and
// how many lines of kind were held back since the last one let through.
func (l *Limiter) Allow(kind, peer string, now time.Time) (ok bool, suppressed int) {
	period, burst := l.Period, l.Burst
	if period <= 0 {
		period = time.Minute
	}
	if burst <= 0 {
		burst = 20
	}
	if l.kinds == nil {
		l.kinds = map[string]*limitKind{}
	}
	k := l.kinds[kind]
	if k == nil {
		k = &limitKind{peers: map[string]time.Time{}}
		l.kinds[kind] = k
	}
	if !now.Before(k.windowEnd) || len(k.peers) >= maxPeers {
		k.windowEnd, k.lines = now.Add(period), 0
		if len(k.peers) >= maxPeers {
			clear(k.peers)
		}
	}
	if next, seen := k.peers[peer]; (seen && now.Before(next)) || k.lines >= burst {
		k.suppressed++
		return false, 0
	}
	k.lines++
	k.peers[peer] = now.Add(period)
	suppressed, k.suppressed = k.suppressed, 0
	return true, suppressed
}
