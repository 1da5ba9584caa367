package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/internal/zmqmsg"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/store"
)

// Config holds the server's endpoints and limits.
type Config struct {
	// ClientBind is where clients connect (ROUTER). Required.
	ClientBind string
	// WorkerBind is where workers connect (ROUTER). Required.
	WorkerBind string
	// EventsBind is where lifecycle events are published (XPUB: subscribe
	// as to a PUB). Empty: none.
	EventsBind string
	// ClientInproc and EventsInproc, when set, bind the client and events
	// sockets to these inproc:// endpoints as well, for in-process clients
	// such as the HTTP gateway (no network hop). EventsInproc turns events
	// on even when EventsBind is empty.
	ClientInproc string
	EventsInproc string
	// Broker configures the state machine. Events is set from EventsBind.
	Broker broker.Config
	// MaxMsgSize is ZMQ_MAXMSGSIZE on both ROUTER sockets: a peer that sends
	// a bigger frame is disconnected by libzmq (default 16 MiB; -1 none).
	MaxMsgSize int64
	// MaxFrames and MaxBytes bound one message (after the routing id) as
	// the loop reads it, frame by frame: a message with more frames or
	// more bytes in all is read to its end but not kept, and the broker
	// refuses it (a client's request: bad_request) or drops its worker.
	// They bound what the Go heap holds of one message; libzmq holds all
	// of it before the loop can read a frame, and holds an unfinished one
	// without bound (docs/SECURITY.md). Defaults DefaultMaxFrames and
	// DefaultMaxBytes (or MaxMsgSize, if more); -1: none.
	MaxFrames int
	MaxBytes  int64
	// Linger bounds how long unsent messages are kept at shutdown (default 1 s).
	Linger time.Duration
	// Logger receives the server's and the broker's logs. Default: none.
	Logger zerolog.Logger
	// Store keeps jobs durable (nil: memory only). The server loads it at
	// New, commits the broker's records in batches, and sends a reply that
	// hands out a job ID only after the job's record is committed; it
	// reads jobs the broker no longer holds (broker.Lookup) on a goroutine
	// of its own. The caller closes the Store after Run returns.
	Store store.Store
	// Retain, RetainCount and RetainBytes bound how long, how many, and
	// how many stored bytes (store.RecordSize) of finished jobs the Store
	// keeps (for lookups by ID and idempotency keys); a pruner goroutine,
	// beside the committer and off the loop, deletes the oldest ones past
	// any bound every PruneEvery (default 1 min). Zero disables a bound.
	Retain      time.Duration
	RetainCount int
	RetainBytes int64
	PruneEvery  time.Duration
	// CommitDelay is how long records that no reply waits for (a job
	// dispatched or finished, a sync job's history) may wait to be
	// committed with later ones (default 20 ms; negative: commit at once).
	// A reply that hands out a job ID never waits for it: its batch is
	// committed at once. The delay trades disk syncs for a wider window in
	// which a broker crash forgets that a job ran (it then runs again).
	CommitDelay time.Duration
	// Curve, when set, makes the client, worker and events sockets CURVE
	// servers: only the keys it authorizes connect, each on its role's
	// socket, and the broker checks every message against the key's
	// rights. nil: no security (NULL mechanism), for loopback.
	Curve *Curve
	// Alive, when set, is called by Run's goroutine between turns of its
	// loop, at most once every AliveEvery (default 1 s), as long as the
	// loop turns: zmwsd sends systemd's watchdog keep-alive from it, so a
	// loop that hangs gets zmwsd restarted. It must not block. The loop
	// turns at least every 100 ms, so an idle broker calls it too.
	Alive      func()
	AliveEvery time.Duration
	// Metrics, when set, receives the server's Prometheus collector (jobs
	// per service, the loop, the journal: docs/METRICS.md); the broker
	// then counts jobs (broker.Config.Stats). Scrapes ask the loop for its
	// counts between turns. MetricsServices caps the services with a
	// label of their own (default DefaultMetricsServices); the rest are
	// summed under OtherServices.
	Metrics         prometheus.Registerer
	MetricsServices int
}

// Curve is the broker's CURVE key pair and the keys it lets in.
type Curve struct {
	Key  curve.KeyPair
	Keys *auth.Keys
	// ProbeTimeout bounds the check at New that each socket refuses a key
	// no one authorized (default 5 s).
	ProbeTimeout time.Duration
}

// Defaults.
const (
	DefaultMaxMsgSize = 16 << 20
	DefaultMaxFrames  = 1024
	DefaultMaxBytes   = 64 << 20
	DefaultLinger     = time.Second
	// DefaultCommitDelay is Config.CommitDelay's default.
	DefaultCommitDelay = 20 * time.Millisecond
	// DefaultAliveEvery is Config.AliveEvery's default.
	DefaultAliveEvery = time.Second
	// maxPoll caps a poll so a cancelled context is seen promptly.
	maxPoll = 100 * time.Millisecond
	// maxDrain bounds the messages read from one socket in one turn, so one
	// busy socket cannot starve the other or the heartbeats.
	maxDrain = 256
)

// Server runs a broker.Broker over ZeroMQ sockets. One goroutine (Run's)
// owns the sockets and the broker after New returns.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	b       *broker.Broker
	clients *zmq.Socket
	workers *zmq.Socket
	events  *zmq.Socket // inproc events, and without CURVE the network's
	// netEvents publishes events on EventsBind with CURVE (nil otherwise);
	// eventsDomain is its ZAP domain.
	netEvents    *zmq.Socket
	eventsDomain string
	// eventsTopics and netTopics are the topics the subscribers of events
	// and netEvents want; the broker builds events only for those.
	eventsTopics topics
	netTopics    topics
	// rx and tx receive and send whole messages in one cgo call each, for
	// the loop goroutine only.
	rx *zmqmsg.Reader
	tx zmqmsg.Writer
	// clientProps and workerProps are the message properties read on each
	// socket: User-Id with CURVE, and on the client socket the peer's
	// address when the broker limits each client.
	clientProps, workerProps zmqmsg.Props
	eps                      [3]string
	commit                   *committer // nil without a Store
	// lookups answers the broker's archive lookups off the loop (nil
	// without a Store); answers is the loop's buffer for their answers.
	lookups *reader
	answers []broker.Answer
	zap     *auth.Registration // nil without CURVE
	// gone reads the worker socket's monitor (with CURVE): a closed
	// connection makes the broker check every worker, at once and again at
	// recheckAt, after recheckIn, since libzmq ends the connection's pipe
	// a moment after it reports the close.
	gone      *zmq.Socket
	recheckAt time.Time
	recheckIn time.Duration
	lastCheck time.Time
	// keysGen is the key set's generation the events socket's subscribers
	// were admitted under (with CURVE). After a reload the events endpoint
	// is unbound, and bound again at rebindAt (libzmq frees the port a
	// moment after unbinding), at most rebindTries times.
	keysGen     uint64
	rebindAt    time.Time
	rebindTries int
	// lazyAt is when records no reply waits for are committed anyway
	// (zero: none are pending).
	lazyAt time.Time
	// restored holds what Restore returned, sent when Run starts.
	restored []protocol.Envelope
	// aliveAt is when Config.Alive is next due.
	aliveAt time.Time
	// eventsSent counts the events the broker made (for tests and metrics).
	eventsSent atomic.Uint64
	// loop is what the loop counts of itself, and statsReq where scrapes
	// ask it for a snapshot (nil without Config.Metrics); done is closed
	// when Run returns.
	loop     loopStats
	conns    [2]*connWatch // client and worker sockets' connections (Config.Metrics)
	statsReq chan chan snapshot
	done     chan struct{}
}

// New creates the sockets and binds them, so the endpoints (with the ports
// the system chose for tcp://...:*) are known before Run.
func New(cfg Config) (*Server, error) {
	if cfg.ClientBind == "" || cfg.WorkerBind == "" {
		return nil, errors.New("server: client and worker endpoints are required")
	}
	if err := broker.CheckSchedules(cfg.Broker.Schedules); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.MaxMsgSize == 0 {
		cfg.MaxMsgSize = DefaultMaxMsgSize
	}
	if cfg.MaxFrames == 0 {
		cfg.MaxFrames = DefaultMaxFrames
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	switch {
	case cfg.CommitDelay == 0:
		cfg.CommitDelay = DefaultCommitDelay
	case cfg.CommitDelay < 0:
		cfg.CommitDelay = 0
	}
	if cfg.AliveEvery <= 0 {
		cfg.AliveEvery = DefaultAliveEvery
	}
	cfg.Broker.Events = cfg.EventsBind != "" || cfg.EventsInproc != ""
	cfg.Broker.Logger = cfg.Logger
	cfg.Broker.Stats = cfg.Metrics != nil
	s := &Server{cfg: cfg, log: cfg.Logger.With().Str("component", "server").Logger(),
		eventsTopics: topics{}, netTopics: topics{}, rx: zmqmsg.NewReader(), done: make(chan struct{})}
	if cfg.Curve != nil {
		s.clientProps, s.workerProps = zmqmsg.PropUser, zmqmsg.PropUser
	}
	if cfg.Broker.ClientRate.PerSecond > 0 || cfg.Broker.ClientConcurrency > 0 {
		s.clientProps |= zmqmsg.PropPeer
	}
	var err error
	var domains auth.Domains
	if cfg.Curve != nil {
		if cfg.Curve.Keys == nil {
			return nil, errors.New("server: CURVE needs the authorized keys")
		}
		cfg.Broker.Access = cfg.Curve.Keys
		if cfg.Broker.Reload == nil {
			cfg.Broker.Reload = cfg.Curve.Keys.Reload
		}
		// The ZAP handler is up before any socket binds: libzmq admits
		// every key while none answers.
		if s.zap, err = auth.Register(cfg.Curve.Keys, cfg.Logger); err != nil {
			return nil, err
		}
		domains = s.zap.Domains
	}
	if s.clients, s.eps[0], err = s.router(cfg.ClientBind, "client", domains.Client); err != nil {
		s.close(0)
		return nil, err
	}
	if s.workers, s.eps[1], err = s.router(cfg.WorkerBind, "worker", domains.Worker); err != nil {
		s.close(0)
		return nil, err
	}
	if err = zmqmsg.Check(s.clients); err != nil {
		s.close(0)
		return nil, err
	}
	if cfg.ClientInproc != "" {
		if err = s.clients.Bind(cfg.ClientInproc); err != nil {
			s.close(0)
			return nil, fmt.Errorf("server: bind client endpoint %s: %w", cfg.ClientInproc, err)
		}
	}
	if cfg.Broker.Events {
		// With CURVE, the network endpoint has an XPUB socket of its own,
		// made anew when the keys are reloaded (see readmitWatchers); the
		// inproc one (the gateway's) stays.
		s.eventsDomain = domains.Events
		var binds []string
		if cfg.Curve == nil {
			binds = append(binds, cfg.EventsBind)
		} else if cfg.EventsBind != "" {
			if s.netEvents, err = s.pub(true); err == nil {
				err = s.netEvents.Bind(cfg.EventsBind)
			}
			if err != nil {
				s.close(0)
				return nil, fmt.Errorf("server: bind events endpoint %s: %w", cfg.EventsBind, err)
			}
			s.eps[2], _ = s.netEvents.GetLastEndpoint()
		}
		binds = append(binds, cfg.EventsInproc)
		for _, ep := range binds {
			if ep == "" {
				continue
			}
			if s.events == nil {
				if s.events, err = s.pub(false); err != nil {
					s.close(0)
					return nil, err
				}
			}
			if err = s.events.Bind(ep); err != nil {
				s.close(0)
				return nil, fmt.Errorf("server: bind events endpoint %s: %w", ep, err)
			}
			if ep == cfg.EventsBind {
				s.eps[2], _ = s.events.GetLastEndpoint()
			}
		}
	}
	if cfg.Curve != nil {
		if err = s.probe(); err != nil {
			s.close(0)
			return nil, err
		}
		if err = s.monitorWorkers(); err != nil {
			s.close(0)
			return nil, err
		}
		s.keysGen = cfg.Curve.Keys.Generation()
	}
	var snap store.Snapshot
	// The Store is the archive, and only the loop answers lookups: without
	// one, none may wait.
	cfg.Broker.Archived = cfg.Store != nil
	if cfg.Store != nil {
		cfg.Broker.Durable = true
		history := cfg.Broker.History
		if history <= 0 {
			history = broker.DefaultHistory
		}
		if snap, err = cfg.Store.Load(history); err != nil {
			s.close(0)
			return nil, fmt.Errorf("server: load the job store: %w", err)
		}
		if s.commit, err = newCommitter(cfg.Store); err != nil {
			s.close(0)
			return nil, err
		}
		if s.lookups, err = newReader(cfg.Store); err != nil {
			s.commit.close()
			s.close(0)
			return nil, err
		}
	}
	if cfg.Broker.Events {
		cfg.Broker.Subscribed = s.subscribed
	}
	s.b = broker.New(cfg.Broker)
	if cfg.Metrics != nil {
		if err = s.metricsOn(cfg.Metrics); err != nil {
			s.close(0)
			if s.commit != nil {
				s.commit.close()
				s.lookups.close(time.Second)
			}
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	if cfg.Store != nil {
		s.restored = append(s.restored, s.b.Restore(time.Now(), snap)...)
	}
	return s, nil
}

func (s *Server) router(endpoint, role, domain string) (*zmq.Socket, string, error) {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return nil, "", fmt.Errorf("server: %s socket: %w", role, err)
	}
	if s.cfg.Curve != nil {
		if err := curve.ApplyServer(sock, s.cfg.Curve.Key, domain); err != nil {
			sock.Close()
			return nil, "", fmt.Errorf("server: %s socket: %w", role, err)
		}
	}
	for _, set := range []func() error{
		func() error { return sock.SetLinger(0) },
		func() error { return sock.SetMaxmsgsize(s.cfg.MaxMsgSize) },
		// Unroutable sends fail instead of vanishing: a worker that is
		// gone is noticed at once, a client that is gone is logged.
		func() error { return sock.SetRouterMandatory(1) },
		func() error { return sock.SetSndhwm(100_000) },
		func() error { return sock.SetRcvhwm(100_000) },
	} {
		if err := set(); err != nil {
			sock.Close()
			return nil, "", fmt.Errorf("server: %s socket option: %w", role, err)
		}
	}
	if err := sock.Bind(endpoint); err != nil {
		sock.Close()
		return nil, "", fmt.Errorf("server: bind %s endpoint %s: %w", role, endpoint, err)
	}
	ep, err := sock.GetLastEndpoint()
	if err != nil {
		ep = endpoint
	}
	s.log.Info().Str(logging.KeyEndpoint, ep).Str("role", role).Msg("listening")
	return sock, ep, nil
}

// ClientEndpoint is the bound client endpoint (with the chosen port).
func (s *Server) ClientEndpoint() string { return s.eps[0] }

// WorkerEndpoint is the bound worker endpoint.
func (s *Server) WorkerEndpoint() string { return s.eps[1] }

// EventsEndpoint is the bound events endpoint, or "" when disabled.
func (s *Server) EventsEndpoint() string { return s.eps[2] }

// Run serves until ctx is cancelled, then tells workers DISCONNECT, waits at
// most Config.Linger for queued messages to leave, and closes the sockets.
// It returns nil on a clean stop.
func (s *Server) Run(ctx context.Context) error {
	poller, polledNet := s.poller(), s.netEvents
	defer close(s.done)
	defer func() {
		s.stopLookups()
		s.stopCommits()
		s.send(s.b.Shutdown(time.Now()))
		s.close(s.cfg.Linger)
		s.log.Info().Msg("stopped")
	}()
	s.send(s.restored)
	s.restored = nil
	if s.cfg.Store != nil && (s.cfg.Retain > 0 || s.cfg.RetainCount > 0 || s.cfg.RetainBytes > 0) {
		pctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.prune(pctx) }()
		defer func() { stop(); <-done }()
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		wait := maxPoll
		lazyAt := s.lazyAt
		if s.commit != nil && s.commit.busy {
			lazyAt = time.Time{} // the commit's end wakes the loop
		}
		for _, d := range []time.Time{s.b.Deadline(), lazyAt, s.recheckAt, s.rebindAt} {
			if !d.IsZero() {
				if until := d.Sub(now); until < wait {
					wait = max(until, 0)
				}
			}
		}
		if s.netEvents != polledNet { // a key reload made a new one
			poller, polledNet = s.poller(), s.netEvents
		}
		polled, err := poller.Poll(pollTimeout(wait))
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if zmq.AsErrno(err) == zmq.ETERM {
				return nil
			}
			return fmt.Errorf("server: poll: %w", err)
		}
		var start time.Time // of a turn with input, timed for metrics
		if s.statsReq != nil && len(polled) > 0 {
			start = time.Now()
		}
		var lookupWake *zmq.Socket
		if s.lookups != nil {
			lookupWake = s.lookups.wake
		}
		for _, p := range polled {
			switch p.Socket {
			case s.events:
				s.subscriptions(s.events, s.eventsTopics)
			case s.netEvents:
				s.subscriptions(s.netEvents, s.netTopics)
			case s.clients:
				s.loop.received[0] += s.drain(s.clients, s.clientProps, s.b.HandleClientFrom, s.b.ClientOversize)
			case s.workers:
				s.loop.received[1] += s.drain(s.workers, s.workerProps, s.handleWorker, s.b.WorkerOversize)
			case s.gone:
				s.workersGone()
			case lookupWake:
				s.lookedUp()
			default:
				s.committed(s.commit.finished())
			}
		}
		if now = time.Now(); !now.Before(s.b.Deadline()) {
			s.send(s.b.Tick(now))
		}
		if !s.recheckAt.IsZero() && !now.Before(s.recheckAt) {
			s.checkWorkers(now)
		}
		if !s.rebindAt.IsZero() && !now.Before(s.rebindAt) {
			s.rebindEvents(now)
		}
		if s.netEvents != nil {
			if gen := s.cfg.Curve.Keys.Generation(); gen != s.keysGen {
				s.keysGen = gen
				s.readmitWatchers(now)
			}
		}
		if s.lookups != nil {
			s.lookups.ask(s.b.Lookups())
		}
		s.startCommit(false)
		if s.cfg.Alive != nil && !now.Before(s.aliveAt) {
			s.cfg.Alive()
			s.aliveAt = now.Add(s.cfg.AliveEvery)
		}
		if s.statsReq != nil {
			if !start.IsZero() {
				s.loop.turns.Observe(time.Since(start))
			}
			s.answerStats()
		}
	}
}

// pollTimeout rounds d up to whole milliseconds, what zmq_poll counts in:
// pebbe/zmq4 truncates, so a deadline less than 1 ms away would be polled
// for with 0 (no wait) again and again until it passed, a busy loop.
func pollTimeout(d time.Duration) time.Duration {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// poller polls the loop's sockets, the events sockets first: a
// subscription that came before a request is seen before the request's
// events are. The events sockets are read only when a subscription waits
// (one non-blocking read of each per turn cost three cgo calls apiece).
func (s *Server) poller() *zmq.Poller {
	p := zmq.NewPoller()
	for _, sock := range []*zmq.Socket{s.events, s.netEvents, s.clients, s.workers, s.gone} {
		if sock != nil {
			p.Add(sock, zmq.POLLIN)
		}
	}
	if s.commit != nil {
		p.Add(s.commit.wake, zmq.POLLIN)
		p.Add(s.lookups.wake, zmq.POLLIN)
	}
	return p
}

// lookedUp feeds the broker the answers of the archive lookups that came
// back, and sends its replies.
func (s *Server) lookedUp() {
	s.answers = s.lookups.answers(s.answers[:0])
	for _, a := range s.answers {
		s.send(s.b.LookedUp(time.Now(), a))
	}
	clear(s.answers)
}

// stopLookups stops the lookup reader at shutdown. The requests still
// waiting for the archive get no reply: their clients see the broker go.
func (s *Server) stopLookups() {
	if s.lookups != nil && !s.lookups.close(time.Second) {
		s.log.Error().Msg("archive lookup still running at shutdown")
	}
}

// prune deletes finished jobs past the retention bounds, in the background:
// bbolt lets it run beside the committer, in small transactions.
func (s *Server) prune(ctx context.Context) {
	every := s.cfg.PruneEvery
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var before time.Time
		if s.cfg.Retain > 0 {
			before = time.Now().Add(-s.cfg.Retain)
		}
		n, err := s.cfg.Store.Prune(before, s.cfg.RetainCount, s.cfg.RetainBytes)
		if err != nil {
			s.log.Error().Err(err).Msg("prune finished jobs")
		} else if n > 0 {
			s.log.Info().Int("jobs", n).Msg("pruned finished jobs")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startCommit hands the broker's pending records to the committer, unless
// it is busy: then they wait for the next turn (group commit). Records no
// reply waits for wait up to Config.CommitDelay for company, unless now.
func (s *Server) startCommit(now bool) {
	if s.commit == nil {
		return
	}
	// The delay counts from when records first wait, a commit under way
	// or not.
	pending := s.b.Pending()
	if pending && s.lazyAt.IsZero() {
		s.lazyAt = time.Now().Add(s.cfg.CommitDelay)
	}
	if s.commit.busy {
		return
	}
	// Held replies with nothing to commit (a resubmitted idempotency key
	// whose job is in the batch being written) go with an empty batch.
	urgent := s.b.Holding()
	if !urgent && !pending {
		s.lazyAt = time.Time{}
		return
	}
	if !urgent && !now && s.cfg.CommitDelay > 0 && time.Now().Before(s.lazyAt) {
		return
	}
	s.lazyAt = time.Time{}
	s.commit.start(s.b.Flush())
}

// committed sends the replies the broker held for a finished commit, or,
// when it failed, the refusals it makes of them.
func (s *Server) committed(err error) {
	if err != nil {
		s.send(s.b.Rejected(time.Now(), err))
		return
	}
	s.send(s.b.Committed())
}

// stopCommits finishes at shutdown: waits for a commit under way, then
// commits what is left, so finished jobs are recorded.
func (s *Server) stopCommits() {
	if s.commit == nil {
		return
	}
	defer s.commit.close()
	for i := 0; i < 2; i++ {
		err, was := s.commit.wait(10 * time.Second)
		if was {
			s.committed(err)
		}
		if !s.b.Pending() && !s.b.Holding() {
			return
		}
		s.startCommit(true)
	}
}

// drain reads up to maxDrain ready messages from sock, feeding each to
// handle, or to oversize when it is past Config.MaxFrames or MaxBytes, and
// sending what they return before reading the next. It returns how many
// it read.
//
// With CURVE, each message carries the name of the key its peer
// authenticated with (the ZAP handler's User-Id), which the broker checks
// against the key's rights; props says whether it and the peer's address
// (for the per-client limits) are read.
func (s *Server) drain(sock *zmq.Socket, props zmqmsg.Props, handle func(time.Time, string, string, string, [][]byte) []protocol.Envelope,
	oversize func(time.Time, string, string, broker.Oversize) []protocol.Envelope) uint64 {
	for n := range uint64(maxDrain) {
		r, err := s.recv(sock, props)
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				s.log.Error().Err(err).Msg("receive")
			}
			return n
		}
		if r.over {
			s.send(oversize(time.Now(), string(r.msg[0]), r.user, r.oversize()))
			continue
		}
		s.send(handle(time.Now(), string(r.msg[0]), r.user, r.peer, r.msg[1:]))
	}
	return maxDrain
}

// handleWorker is the broker's HandleWorker, in drain's shape: a worker's
// address is not used.
func (s *Server) handleWorker(now time.Time, from, user, _ string, frames [][]byte) []protocol.Envelope {
	return s.b.HandleWorker(now, from, user, frames)
}

// send puts what the broker returned on its sockets without blocking.
// Replies that wait for a commit are not among them: the broker holds
// those until Committed returns them. A worker that
// cannot be reached (gone, or its queue full) is reported to the broker,
// with the jobs whose REQUESTs to it could not be sent, and the broker
// requeues them; an unreachable client is logged.
//
// Unreachable workers are reported one at a time, what the broker answers
// sent before the next: a job it gives to another worker that is gone too
// is then known not to have reached that one either, and is not counted as
// an attempt there.
func (s *Server) send(envs []protocol.Envelope) {
	var gone []unreachable // in the order found
	for {
		for _, e := range envs {
			var err error
			switch e.Peer {
			case protocol.ToClient:
				err = s.sendFrames(s.clients, e.To, e.Frames)
				if err != nil {
					s.log.Debug().Err(err).Str(logging.KeyClient, fmt.Sprintf("%x", e.To)).Msg("reply not delivered: client gone")
				} else {
					s.loop.sent[0]++
				}
			case protocol.ToWorker:
				if err = s.sendFrames(s.workers, e.To, e.Frames); err != nil {
					gone = notSent(gone, e)
				} else {
					s.loop.sent[1]++
				}
			case protocol.ToEvents:
				s.eventsSent.Add(1)
				s.publish(s.events, s.eventsTopics, e)
				s.publish(s.netEvents, s.netTopics, e)
			}
		}
		if len(gone) == 0 {
			return
		}
		// The broker reuses its output buffer: ask it only now, once the
		// previous envelopes are out.
		g := gone[0]
		gone = gone[1:]
		s.log.Warn().Str(logging.KeyWorker, fmt.Sprintf("%x", g.id)).Int("undelivered_jobs", len(g.jobs)).Msg("worker unreachable")
		envs = s.b.Unreachable(time.Now(), g.id, g.jobs...)
	}
}

// unreachable is a worker a send failed to, and the jobs whose REQUESTs
// were among the messages not sent.
type unreachable struct {
	id   string
	jobs []string
}

// notSent adds envelope e, which could not be sent to its worker, to gone.
func notSent(gone []unreachable, e protocol.Envelope) []unreachable {
	i := slices.IndexFunc(gone, func(g unreachable) bool { return g.id == e.To })
	if i < 0 {
		gone = append(gone, unreachable{id: e.To})
		i = len(gone) - 1
	}
	if e.Job != "" {
		gone[i].jobs = append(gone[i].jobs, e.Job)
	}
	return gone
}

// sendFrames sends [to, frames...] as one message without blocking, in
// one cgo call (zmqmsg).
func (s *Server) sendFrames(sock *zmq.Socket, to string, frames [][]byte) error {
	return s.tx.SendTo(sock, zmq.DONTWAIT, to, frames)
}

func (s *Server) close(linger time.Duration) {
	for _, w := range s.conns {
		w.close()
	}
	if s.gone != nil {
		// Monitoring stops before its reader closes: see curve.Monitor.
		s.workers.Monitor("", 0)
		s.gone.Close()
	}
	for _, sock := range []*zmq.Socket{s.clients, s.workers, s.events, s.netEvents} {
		if sock != nil {
			sock.SetLinger(linger)
			sock.Close()
		}
	}
	if s.zap != nil {
		s.zap.Close() // after the sockets: no peer is admitted unchecked
	}
	s.rx.Close()
}
