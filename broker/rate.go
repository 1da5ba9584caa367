package broker

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/zmws/zmws/protocol"
)

// Rate is a service's submission bound: PerSecond jobs a second on
// average, Burst at once (0: PerSecond, at least 1). Submissions past it
// are refused rate_limited, with a message that says when one would pass;
// a refusal takes nothing from the allowance. Jobs given back, retried or
// restored are not submissions and are not counted.
type Rate struct {
	PerSecond float64
	Burst     int
}

// ParseRate reads a --rate value: SERVICE=N or SERVICE=N/BURST, jobs a
// second; SERVICE * is every service without a rate of its own.
func ParseRate(s string) (service string, r Rate, err error) {
	name, spec, ok := strings.Cut(s, "=")
	if !ok || name == "" || spec == "" {
		return "", Rate{}, fmt.Errorf("rate %q: want SERVICE=JOBS_PER_SECOND or SERVICE=JOBS_PER_SECOND/BURST (SERVICE * for every service)", s)
	}
	if r, err = parseRate(spec); err != nil {
		return "", Rate{}, fmt.Errorf("rate %q: %w", s, err)
	}
	if name != "*" {
		if err := protocol.ValidWorkerService(name); err != nil {
			return "", Rate{}, fmt.Errorf("rate %q: %w", s, err)
		}
	}
	return name, r, nil
}

// parseRate reads N or N/BURST, jobs a second.
func parseRate(spec string) (Rate, error) {
	var r Rate
	var err error
	per, burst, hasBurst := strings.Cut(spec, "/")
	if r.PerSecond, err = strconv.ParseFloat(per, 64); err != nil || r.PerSecond <= 0 || math.IsInf(r.PerSecond, 0) {
		return Rate{}, fmt.Errorf("%q is not a positive number of jobs a second", per)
	}
	if hasBurst {
		if r.Burst, err = strconv.Atoi(burst); err != nil || r.Burst <= 0 {
			return Rate{}, fmt.Errorf("burst %q is not a positive integer", burst)
		}
	}
	return r, nil
}

// String is r as ParseRate reads it, without the service.
func (r Rate) String() string {
	if r.Burst > 0 {
		return fmt.Sprintf("%g/%d", r.PerSecond, r.Burst)
	}
	return fmt.Sprintf("%g", r.PerSecond)
}

// burst is r's burst with its default.
func (r Rate) burst() int {
	if r.Burst > 0 {
		return r.Burst
	}
	return max(1, int(math.Ceil(r.PerSecond)))
}

// rateLimited takes one submission from s's bucket at now, and returns
// what it took (nil: s has no rate), which the caller gives back with
// CancelAt when it refuses the submission after all: a refusal takes
// nothing from the allowance. When there is none it refuses r
// (rate_limited, counted) and reports true.
func (b *Broker) rateLimited(now time.Time, r request, s *service) (*rate.Reservation, bool) {
	if !s.rated {
		s.rated = true
		rt, ok := b.cfg.Rates[s.name]
		if !ok {
			rt, ok = b.cfg.Rates["*"]
		}
		if ok {
			s.rate = rate.NewLimiter(rate.Limit(rt.PerSecond), rt.burst())
		}
	}
	if s.rate == nil {
		return nil, false
	}
	res := s.rate.ReserveN(now, 1)
	d := res.DelayFrom(now)
	if d <= 0 {
		return res, false
	}
	res.CancelAt(now)
	b.countRefused(s.name, protocol.CodeRateLimited)
	b.refuse(r, protocol.CodeRateLimited, fmt.Sprintf("service %s takes at most %g jobs a second (burst %d, --rate): the next is taken in %v",
		s.name, float64(s.rate.Limit()), s.rate.Burst(), d.Round(time.Millisecond)))
	return nil, true
}
