package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/curve"
)

// Metrics (Config.Metrics): the broker counts jobs itself (broker.Stats),
// the loop counts its messages and times its turns in plain fields, and a
// prometheus.Collector asks the loop for a copy of all that when metrics
// are scraped: the loop answers between two turns, so nothing on the
// dispatch path takes a lock or touches Prometheus. The committer times
// its commits with Prometheus histograms of its own (its goroutine, off
// the loop). docs/METRICS.md lists every metric.

// DefaultMetricsServices is Config.MetricsServices' default.
const DefaultMetricsServices = 1000

// OtherServices is the service label of the services past
// Config.MetricsServices: their counts are summed under it.
const OtherServices = "_other"

// snapshotTimeout bounds how long a scrape waits for the loop.
const snapshotTimeout = 2 * time.Second

// turnBounds are the buckets of the loop turn histogram: 10 µs to 1 s.
var turnBounds = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 100 * time.Millisecond, time.Second,
}

// loopStats is what the loop counts of itself; its goroutine owns it.
type loopStats struct {
	received [2]uint64 // messages read: client socket, worker socket
	sent     [2]uint64 // messages sent: client socket, worker socket
	turns    broker.Histogram
	// conns are the open TCP connections of the client and worker
	// sockets, as a snapshot has them (connWatch, or with CURVE the
	// worker socket's monitor, which the loop reads: curveConns).
	conns      [2]int64
	curveConns int64
}

// snapshot is what the loop answers a scrape with.
type snapshot struct {
	broker broker.Stats
	loop   loopStats
	events uint64 // events published
}

// errNotServing is a scrape's error when the loop does not answer.
var errNotServing = errors.New("server: the broker loop did not answer")

// answerStats gives a waiting scrape a snapshot; the loop calls it
// between turns. It costs a channel poll when no scrape waits.
func (s *Server) answerStats() {
	select {
	case c := <-s.statsReq:
		snap := snapshot{broker: s.b.Stats(), events: s.eventsSent.Load()}
		snap.loop.received, snap.loop.sent = s.loop.received, s.loop.sent
		snap.loop.turns = s.loop.turns.Clone()
		for i, w := range s.conns {
			if w != nil {
				snap.loop.conns[i] = w.open.Load()
			}
		}
		if s.gone != nil {
			snap.loop.conns[1] = s.loop.curveConns
		}
		c <- snap
	default:
	}
}

// stats asks the loop for a snapshot, waiting at most snapshotTimeout (the
// loop turns at least every maxPoll).
func (s *Server) stats() (snapshot, error) {
	c := make(chan snapshot, 1)
	t := time.NewTimer(snapshotTimeout)
	defer t.Stop()
	select {
	case s.statsReq <- c:
	case <-s.done:
		return snapshot{}, errNotServing
	case <-t.C:
		return snapshot{}, errNotServing
	}
	select {
	case snap := <-c:
		return snap, nil
	case <-t.C:
		return snapshot{}, errNotServing
	}
}

// metricsOn prepares what the loop and the committer count, and registers
// the collector with reg.
func (s *Server) metricsOn(reg prometheus.Registerer) error {
	s.statsReq = make(chan chan snapshot)
	s.loop.turns = broker.NewHistogram(turnBounds[:])
	c := newCollector(s)
	if err := reg.Register(c); err != nil {
		return err
	}
	var err error
	if s.conns[0], err = watchConns(s.clients, "client"); err != nil {
		return err
	}
	if s.gone == nil { // with CURVE the loop's monitor counts them
		if s.conns[1], err = watchConns(s.workers, "worker"); err != nil {
			return err
		}
	}
	if s.commit != nil {
		s.commit.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zmws_journal_commit_seconds",
			Help:    "Time one commit of the job journal took (write and fsync).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		})
		s.commit.size = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zmws_journal_commit_jobs",
			Help:    "Job records in one commit of the job journal (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		})
		s.commit.errors = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zmws_journal_commit_errors_total",
			Help: "Commits of the job journal that failed (submissions were refused store_unavailable).",
		})
		for _, m := range []prometheus.Collector{s.commit.latency, s.commit.size, s.commit.errors} {
			if err := reg.Register(m); err != nil {
				return err
			}
		}
	}
	if p, ok := s.cfg.Store.(interface{ Path() string }); ok {
		path := p.Path()
		size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "zmws_journal_size_bytes",
			Help: "Size of the job journal file.",
		}, func() float64 {
			fi, err := os.Stat(path)
			if err != nil {
				return 0
			}
			return float64(fi.Size())
		})
		if err := reg.Register(size); err != nil {
			return err
		}
	}
	return nil
}

// collector turns the loop's snapshots into metrics.
type collector struct {
	s   *Server
	cap int

	up, services, workers, jobs, conns              *prometheus.Desc
	received, sent, turns                           *prometheus.Desc
	submitted, completed, failed, requeued, refused *prometheus.Desc
	queued, active, svcWorkers, duration, queueWait *prometheus.Desc
	scheduled, paused, draining                     *prometheus.Desc
	ticks, nextTick                                 *prometheus.Desc
	jobBuckets                                      []float64

	// mu guards labelled: the services that have a label of their own, at
	// most cap, kept while they are known so a series does not move
	// between its name and OtherServices from one scrape to the next.
	mu       sync.Mutex
	labelled map[string]bool
}

func newCollector(s *Server) *collector {
	svc := []string{"service"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	c := &collector{s: s, cap: s.cfg.MetricsServices, labelled: map[string]bool{},
		up:       d("zmws_broker_up", "1 when the broker loop answered this scrape, 0 when it did not in time (its other metrics are then missing)."),
		services: d("zmws_broker_services", "Services the broker knows (every service a worker ever offered, until forgotten)."),
		workers:  d("zmws_broker_workers", "Live workers connected to the broker, all services."),
		conns:    d("zmws_broker_connections", "Open TCP connections of the broker's socket (peers connected over inproc, the gateway, are not counted).", "socket"),
		jobs:     d("zmws_broker_jobs_in_memory", "Jobs the broker holds in memory: queued, active and the retained finished ones."),
		received: d("zmws_broker_messages_received_total", "Messages the broker read, by socket.", "socket"),
		sent:     d("zmws_broker_messages_sent_total", "Messages the broker sent, by socket (events: published lifecycle events).", "socket"),
		turns:    d("zmws_broker_loop_turn_seconds", "Time a turn of the broker loop took that had messages to handle: reading them, the broker's work, sending its output."),

		submitted:  d("zmws_jobs_submitted_total", "Jobs accepted, per service.", svc...),
		completed:  d("zmws_jobs_completed_total", "Jobs that finished complete, per service.", svc...),
		failed:     d("zmws_jobs_failed_total", "Jobs that finished failed, per service and error code.", "service", "code"),
		requeued:   d("zmws_jobs_requeued_total", "Times a job was queued again (its worker lost, its time-to-run passed, a retry after a failure), per service.", svc...),
		refused:    d("zmws_jobs_refused_total", "Submissions refused, per service and error code (service _unknown: a name no worker offered).", "service", "code"),
		queued:     d("zmws_jobs_queued", "Jobs waiting in the service's queue.", svc...),
		active:     d("zmws_jobs_active", "Jobs of the service running now.", svc...),
		scheduled:  d("zmws_jobs_scheduled", "Jobs of the service waiting for their time (submitted with a delay or an at).", svc...),
		paused:     d("zmws_service_paused", "1 while an operator has the service paused (SERVER-PAUSE): its jobs queue, none is dispatched (_other: how many are).", svc...),
		draining:   d("zmws_service_draining", "1 while an operator has the service draining (SERVER-DRAIN) (_other: how many are).", svc...),
		ticks:      d("zmws_schedule_ticks_total", "Ticks of a recurring schedule since the broker started, by outcome: fired (a job made), skipped (no job: unknown service, full queue), missed (passed over by the catch-up rule).", "schedule", "outcome"),
		nextTick:   d("zmws_schedule_next_tick_timestamp_seconds", "When the schedule next fires, Unix time.", "schedule"),
		svcWorkers: d("zmws_workers", "Live workers of the service, idle or busy.", "service", "state"),
		duration:   d("zmws_job_duration_seconds", "Time finished runs took, from dispatch to their end, per service.", svc...),
		queueWait:  d("zmws_job_queue_wait_seconds", "Time jobs waited from submission to their first dispatch, per service.", svc...),
	}
	if c.cap <= 0 {
		c.cap = DefaultMetricsServices
	}
	for _, b := range broker.JobBuckets() {
		c.jobBuckets = append(c.jobBuckets, b.Seconds())
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.services, c.workers, c.jobs, c.conns, c.received, c.sent, c.turns,
		c.submitted, c.completed, c.failed, c.requeued, c.refused, c.queued, c.active, c.svcWorkers, c.duration, c.queueWait,
		c.scheduled, c.paused, c.draining, c.ticks, c.nextTick} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap, err := c.s.stats()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	known := 0
	for _, s := range snap.broker.Services {
		if s.Name != broker.UnknownService {
			known++
		}
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.services, float64(known))
	gauge(c.workers, float64(snap.broker.Workers))
	gauge(c.jobs, float64(snap.broker.Jobs))
	for i, name := range []string{"client", "worker"} {
		counter(c.received, snap.loop.received[i], name)
		counter(c.sent, snap.loop.sent[i], name)
		gauge(c.conns, float64(snap.loop.conns[i]), name)
	}
	counter(c.sent, snap.events, "events")
	for _, sc := range snap.broker.Schedules {
		counter(c.ticks, sc.Fired, sc.Name, "fired")
		counter(c.ticks, sc.Skipped, sc.Name, "skipped")
		counter(c.ticks, sc.Missed, sc.Name, "missed")
		if !sc.Next.IsZero() {
			gauge(c.nextTick, float64(sc.Next.UnixNano())/1e9, sc.Name)
		}
	}
	ch <- constHistogram(c.turns, snap.loop.turns, nil)

	for _, s := range c.group(snap.broker.Services) {
		for _, r := range s.Refused {
			counter(c.refused, r.N, s.Name, r.Code)
		}
		if s.Name == broker.UnknownService {
			continue // a name for refusals only
		}
		counter(c.submitted, s.Submitted, s.Name)
		counter(c.completed, s.Completed, s.Name)
		counter(c.requeued, s.Requeued, s.Name)
		for _, f := range s.Failed {
			counter(c.failed, f.N, s.Name, f.Code)
		}
		gauge(c.queued, float64(s.Queued), s.Name)
		gauge(c.active, float64(s.Active), s.Name)
		gauge(c.scheduled, float64(s.Scheduled), s.Name)
		gauge(c.paused, float64(s.Paused), s.Name)
		gauge(c.draining, float64(s.Draining), s.Name)
		gauge(c.svcWorkers, float64(s.Idle), s.Name, "idle")
		gauge(c.svcWorkers, float64(s.Busy), s.Name, "busy")
		ch <- constHistogram(c.duration, s.Duration, c.jobBuckets, s.Name)
		ch <- constHistogram(c.queueWait, s.Wait, c.jobBuckets, s.Name)
	}
}

// group gives the first c.cap services a label of their own (once given,
// kept while the service is known) and sums the rest under OtherServices.
func (c *collector) group(ss []broker.ServiceStats) []broker.ServiceStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	known := make(map[string]bool, len(ss))
	for _, s := range ss {
		known[s.Name] = true
	}
	for name := range c.labelled {
		if !known[name] {
			delete(c.labelled, name) // forgotten: its place is free
		}
	}
	out := make([]broker.ServiceStats, 0, len(ss))
	var other *broker.ServiceStats
	for _, s := range ss {
		if s.Name == broker.UnknownService || c.labelled[s.Name] {
			out = append(out, s)
			continue
		}
		if len(c.labelled) < c.cap {
			c.labelled[s.Name] = true
			out = append(out, s)
			continue
		}
		if other == nil {
			other = &broker.ServiceStats{Name: OtherServices,
				Duration: broker.NewHistogram(broker.JobBuckets()), Wait: broker.NewHistogram(broker.JobBuckets())}
		}
		add(other, s)
	}
	if other != nil {
		out = append(out, *other)
	}
	return out
}

// add sums s into o.
func add(o *broker.ServiceStats, s broker.ServiceStats) {
	o.Submitted += s.Submitted
	o.Completed += s.Completed
	o.Requeued += s.Requeued
	o.Failed = addCodes(o.Failed, s.Failed)
	o.Refused = addCodes(o.Refused, s.Refused)
	o.Queued += s.Queued
	o.Active += s.Active
	o.Scheduled += s.Scheduled
	o.Paused += s.Paused
	o.Draining += s.Draining
	o.Idle += s.Idle
	o.Busy += s.Busy
	addHistogram(&o.Duration, s.Duration)
	addHistogram(&o.Wait, s.Wait)
}

func addCodes(to, from []broker.CodeCount) []broker.CodeCount {
next:
	for _, f := range from {
		for i := range to {
			if to[i].Code == f.Code {
				to[i].N += f.N
				continue next
			}
		}
		to = append(to, f)
	}
	return to
}

func addHistogram(to *broker.Histogram, from broker.Histogram) {
	for i, n := range from.Counts {
		if i < len(to.Counts) {
			to.Counts[i] += n
		}
	}
	to.Sum += from.Sum
	to.Count += from.Count
}

// constHistogram makes h a Prometheus histogram: cumulative counts by
// upper bound in seconds (bounds, or h's own when nil).
func constHistogram(d *prometheus.Desc, h broker.Histogram, bounds []float64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		if bounds != nil {
			buckets[bounds[i]] = cum
		} else {
			buckets[b.Seconds()] = cum
		}
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}

// connWatch counts a socket's open TCP connections (accepted, not yet
// closed) from its monitor's events, on a goroutine of its own that owns
// the monitor's PAIR socket. Inproc peers (the gateway) make no events.
type connWatch struct {
	sock *zmq.Socket // the socket watched (the loop's)
	open atomic.Int64
	stop chan struct{}
	done chan struct{}
}

// watchConns starts counting sock's connections.
func watchConns(sock *zmq.Socket, role string) (*connWatch, error) {
	mon, err := curve.Monitor(sock, "inproc://zmws-server-conns-"+role+"-"+rand.Text(), zmq.EVENT_ACCEPTED|zmq.EVENT_DISCONNECTED)
	if err != nil {
		return nil, fmt.Errorf("server: %s socket: %w", role, err)
	}
	w := &connWatch{sock: sock, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(mon)
	return w, nil
}

func (w *connWatch) run(mon *zmq.Socket) {
	defer close(w.done)
	defer mon.Close()
	poller := zmq.NewPoller()
	poller.Add(mon, zmq.POLLIN)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		if _, err := poller.Poll(maxPoll); err != nil && zmq.AsErrno(err) == zmq.ETERM {
			return
		}
		for range maxDrain {
			ev, _, _, err := mon.RecvEvent(zmq.DONTWAIT)
			if err != nil {
				break
			}
			w.open.Add(connDelta(ev))
		}
	}
}

// connDelta is what a monitor event changes in a count of open
// connections.
func connDelta(ev zmq.Event) int64 {
	switch ev {
	case zmq.EVENT_ACCEPTED:
		return 1
	case zmq.EVENT_DISCONNECTED:
		return -1
	}
	return 0
}

// close stops the monitoring, on the socket's goroutine, then the reader.
func (w *connWatch) close() {
	if w == nil {
		return
	}
	w.sock.Monitor("", 0)
	close(w.stop)
	<-w.done
}
