package main

import (
	"fmt"
	"sort"
	"time"
)

// The helpers below print the same RUN and SUMMARY lines as the anchor
// harness in tools/anchors (anchors/internal/stats), so zmws lines and
// anchor lines can be read and parsed side by side.

// pct returns the p-th percentile (0..100) of d (nearest rank); d is sorted in place.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	if !sort.SliceIsSorted(d, func(i, j int) bool { return d[i] < d[j] }) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	}
	k := int(p/100*float64(len(d))+0.5) - 1
	k = max(0, min(k, len(d)-1))
	return d[k]
}

// medMinMax returns the median, min and max of xs (xs is not modified).
func medMinMax(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	c := append([]float64(nil), xs...)
	sort.Float64s(c)
	n := len(c)
	if n%2 == 1 {
		med = c[n/2]
	} else {
		med = (c[n/2-1] + c[n/2]) / 2
	}
	return med, c[0], c[n-1]
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e3) }

// run is one measured run: Jobs in Elapsed, with per-job latencies.
type run struct {
	Jobs    int
	Elapsed time.Duration
	P50     time.Duration
	P99     time.Duration
	Max     time.Duration
	// Done is the time from the start until every job had finished (async
	// runs only; Elapsed is then the submit phase).
	Done time.Duration
}

func (r run) rate() float64 { return float64(r.Jobs) / r.Elapsed.Seconds() }

func (r run) doneRate() float64 { return float64(r.Jobs) / r.Done.Seconds() }

// newRun makes a run from per-job latencies (zero entries are jobs that
// did not run and are left out).
func newRun(lat []time.Duration, elapsed time.Duration) run {
	kept := lat[:0]
	for _, d := range lat {
		if d > 0 {
			kept = append(kept, d)
		}
	}
	return run{Jobs: len(kept), Elapsed: elapsed, P50: pct(kept, 50), P99: pct(kept, 99), Max: pct(kept, 100)}
}

// line prints one run in the shared key=value format.
func (r run) line(label string, i int) string {
	s := fmt.Sprintf("RUN %s run=%d jobs=%d elapsed_s=%.3f jobs_per_s=%.0f us_per_job=%.1f p50_us=%s p99_us=%s max_us=%s",
		label, i, r.Jobs, r.Elapsed.Seconds(), r.rate(), float64(r.Elapsed)/1e3/float64(max(r.Jobs, 1)), us(r.P50), us(r.P99), us(r.Max))
	if r.Done > 0 {
		s += fmt.Sprintf(" done_s=%.3f done_jobs_per_s=%.0f", r.Done.Seconds(), r.doneRate())
	}
	return s
}

// summary prints median [min..max] over runs in the shared format.
func summary(label string, runs []run) string {
	var rate, p50, p99 []float64
	for _, r := range runs {
		rate = append(rate, r.rate())
		p50 = append(p50, float64(r.P50)/1e3)
		p99 = append(p99, float64(r.P99)/1e3)
	}
	rm, rl, rh := medMinMax(rate)
	pm, pl, ph := medMinMax(p50)
	qm, ql, qh := medMinMax(p99)
	usPer := 0.0
	if rm > 0 {
		usPer = 1e6 / rm
	}
	return fmt.Sprintf("SUMMARY %s runs=%d jobs_per_s=%.0f [%.0f..%.0f] us_per_job=%.1f p50_us=%.1f [%.1f..%.1f] p99_us=%.1f [%.1f..%.1f]",
		label, len(runs), rm, rl, rh, usPer, pm, pl, ph, qm, ql, qh)
}

// doneSummary is the "all done" line of async runs, shaped like the
// anchors' gearman-bg-done line.
func doneSummary(label string, runs []run) string {
	var xs []float64
	for _, r := range runs {
		xs = append(xs, r.doneRate())
	}
	m, lo, hi := medMinMax(xs)
	return fmt.Sprintf("SUMMARY %s runs=%d done_jobs_per_s=%.0f [%.0f..%.0f]", label, len(runs), m, lo, hi)
}

// valueSummary prints a single measured value (scale runs) in the same
// shape: SUMMARY label runs=1 key=value [value..value].
func valueSummary(label string, kv ...any) string {
	s := "SUMMARY " + label + " runs=1"
	for i := 0; i+1 < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case float64:
			s += fmt.Sprintf(" %s=%.1f [%.1f..%.1f]", kv[i], v, v, v)
		default:
			s += fmt.Sprintf(" %s=%v [%v..%v]", kv[i], v, v, v)
		}
	}
	return s
}
