package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
)

// Defaults for the zero values of PoolConfig.
const (
	DefaultMaxIdle    = 16
	DefaultMaxClients = 512
)

// watchRetry is the pause before the event subscription is made again after
// it failed.
const watchRetry = time.Second

// Errors returned by a Pool.
var (
	// ErrClosed: the Pool was closed.
	ErrClosed = errors.New("gateway: pool closed")
	// ErrBusy: MaxClients requests were in flight for a whole Timeout.
	ErrBusy = errors.New("gateway: every broker client is busy")
	// ErrStoreFailing: the broker answers, but its job store failed its
	// last commit, so it refuses submissions (Ping).
	ErrStoreFailing = errors.New("gateway: the broker's job store is failing")
)

// PoolConfig configures a Pool. Zero values mean the defaults.
type PoolConfig struct {
	// Broker is the broker's client endpoint: inproc://... in zmwsd.
	// Required.
	Broker string
	// Events is the broker's events endpoint, used to wake /jobs/{id}?wait=
	// when a job finishes. Empty: waits rely on re-checking alone.
	Events string
	// Timeout bounds a Submit or a query (client.DefaultTimeout), and the
	// wait for a free client when MaxClients are in use. Queries are not
	// resent: over inproc a lost request means a stuck broker.
	Timeout time.Duration
	// MaxIdle is how many idle clients are kept for reuse (DefaultMaxIdle).
	MaxIdle int
	// MaxClients bounds the clients in use at once, one per request in
	// flight; a synchronous request holds its client until the job ends
	// (DefaultMaxClients). Each is one ZeroMQ socket, and a ZeroMQ context
	// allows 1023 by default.
	MaxClients int
	// Logger receives the pool's and its clients' logs (default: none).
	Logger zerolog.Logger
}

// Pool is a Backend made of client.Clients connected to one broker. A
// client.Client runs one request at a time, so each request borrows a client
// of its own for its whole duration and gives it back; a client whose
// request failed other than by a broker refusal (cancelled, timed out,
// socket error) is closed instead of reused. Its methods are safe for
// concurrent use.
type Pool struct {
	cfg   PoolConfig
	log   zerolog.Logger
	slots chan struct{} // one token per client in use

	mu     sync.Mutex
	idle   []*client.Client
	all    map[*client.Client]struct{} // idle and in use, for Close
	closed bool

	wmu     sync.Mutex
	waiters map[string]map[chan struct{}]struct{} // job ID → channels to close when it finishes

	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// NewPool returns a Pool for cfg.Broker; clients are made as requests need
// them. With cfg.Events set it subscribes to job completions at once.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if cfg.Broker == "" {
		return nil, errors.New("gateway: pool needs a broker endpoint")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = client.DefaultTimeout
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = DefaultMaxIdle
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		cfg:       cfg,
		log:       cfg.Logger.With().Str("component", "gateway").Logger(),
		slots:     make(chan struct{}, cfg.MaxClients),
		all:       map[*client.Client]struct{}{},
		waiters:   map[string]map[chan struct{}]struct{}{},
		stopWatch: cancel,
		watchDone: make(chan struct{}),
	}
	if cfg.Events == "" {
		close(p.watchDone)
		return p, nil
	}
	go p.watch(ctx)
	return p, nil
}

// Close closes every client, interrupting requests in flight (they return
// ErrClosed or client.ErrClosed), and stops the event subscription. Later
// requests return ErrClosed.
func (p *Pool) Close() error {
	p.stopWatch()
	<-p.watchDone
	p.mu.Lock()
	p.closed = true
	all := p.all
	p.all, p.idle = nil, nil
	p.mu.Unlock()
	for c := range all {
		c.Close()
	}
	return nil
}

// get borrows a client: an idle one, or a new one. It waits up to
// Config.Timeout for a slot when MaxClients are in use.
func (p *Pool) get(ctx context.Context) (*client.Client, error) {
	select {
	case p.slots <- struct{}{}:
	default:
		t := time.NewTimer(p.cfg.Timeout)
		defer t.Stop()
		select {
		case p.slots <- struct{}{}:
		case <-t.C:
			return nil, ErrBusy
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		<-p.slots
		return nil, ErrClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		return c, nil
	}
	c, err := client.New(client.Config{
		Broker:  p.cfg.Broker,
		Timeout: p.cfg.Timeout,
		Retries: -1,
		Logger:  p.cfg.Logger,
	})
	if err != nil {
		<-p.slots
		return nil, fmt.Errorf("gateway: %w", err)
	}
	p.all[c] = struct{}{}
	return c, nil
}

// put gives a client back after a request that ended with err: kept for
// reuse after success or a refusal (its socket is in a known state), closed
// otherwise or when enough are idle.
func (p *Pool) put(c *client.Client, err error) {
	var refused *client.Error
	reuse := err == nil || errors.As(err, &refused)
	p.mu.Lock()
	if reuse && !p.closed && len(p.idle) < p.cfg.MaxIdle {
		p.idle = append(p.idle, c)
		reuse = true
	} else {
		reuse = false
		delete(p.all, c)
	}
	p.mu.Unlock()
	if !reuse {
		c.Close()
	}
	<-p.slots
}

// with runs fn with a borrowed client.
func (p *Pool) with(ctx context.Context, fn func(*client.Client) error) error {
	c, err := p.get(ctx)
	if err != nil {
		return err
	}
	err = fn(c)
	p.put(c, err)
	return err
}

// PoolStats is a snapshot of a Pool.
type PoolStats struct {
	InUse int // clients lent to requests in flight
	Idle  int // clients kept for reuse
}

// Stats returns how many clients are in use and idle.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{InUse: len(p.slots), Idle: len(p.idle)}
}

// Submit implements Backend.
func (p *Pool) Submit(ctx context.Context, service string, req client.Request) (id string, err error) {
	err = p.with(ctx, func(c *client.Client) error {
		id, err = c.Submit(ctx, service, req)
		return err
	})
	return id, err
}

// Call implements Backend. The client is held until the job ends, or until
// ctx ends (the request is then abandoned and the client closed).
func (p *Pool) Call(ctx context.Context, service string, req client.Request, onPartial func([]byte) error) (res *client.Result, err error) {
	err = p.with(ctx, func(c *client.Client) error {
		res, err = c.Call(ctx, service, req, onPartial)
		return err
	})
	return res, err
}

// Query implements Backend: one JSON frame from a SERVER-* service.
func (p *Pool) Query(ctx context.Context, service string) (body []byte, err error) {
	err = p.with(ctx, func(c *client.Client) error {
		frames, err := c.Query(ctx, service)
		if err != nil {
			return err
		}
		if len(frames) != 1 {
			return fmt.Errorf("query %s: reply of %d frames, want one JSON frame: %w", service, len(frames), client.ErrBadReply)
		}
		body = frames[0]
		return nil
	})
	return body, err
}

// QueryPage implements Backend: one page of a paged SERVER-* listing.
func (p *Pool) QueryPage(ctx context.Context, service string, opt client.PageOptions) (body []byte, next string, err error) {
	err = p.with(ctx, func(c *client.Client) error {
		frames, n, err := c.QueryPage(ctx, service, opt)
		if err != nil {
			return err
		}
		if len(frames) != 1 {
			return fmt.Errorf("query %s: reply of %d frames, want one JSON frame: %w", service, len(frames), client.ErrBadReply)
		}
		body, next = frames[0], n
		return nil
	})
	return body, next, err
}

// Job implements Backend.
func (p *Pool) Job(ctx context.Context, id string) (info protocol.JobInfo, err error) {
	err = p.with(ctx, func(c *client.Client) error {
		info, err = c.Job(ctx, id)
		return err
	})
	return info, err
}

// Cancel implements Backend.
func (p *Pool) Cancel(ctx context.Context, id string) (info protocol.JobInfo, err error) {
	err = p.with(ctx, func(c *client.Client) error {
		info, err = c.Cancel(ctx, id)
		return err
	})
	return info, err
}

// Retry implements Backend.
func (p *Pool) Retry(ctx context.Context, id string) (info protocol.JobInfo, err error) {
	err = p.with(ctx, func(c *client.Client) error {
		info, err = c.Retry(ctx, id)
		return err
	})
	return info, err
}

// Ping implements Backend with SERVER-HEALTH, which the broker answers
// from memory: an error matching ErrStoreFailing (with the store's error)
// while the broker's last commit to its job store failed.
func (p *Pool) Ping(ctx context.Context) error {
	body, err := p.Query(ctx, protocol.ServerHealth)
	if err != nil {
		return err
	}
	var h protocol.HealthInfo
	if err := json.Unmarshal(body, &h); err != nil {
		return fmt.Errorf("query %s: %v: %w", protocol.ServerHealth, err, client.ErrBadReply)
	}
	if h.Store == protocol.StoreFailing {
		return fmt.Errorf("%w since %v: %s", ErrStoreFailing, h.StoreFailedSince, h.StoreError)
	}
	return nil
}

// WatchJob implements Backend.
func (p *Pool) WatchJob(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	p.wmu.Lock()
	set := p.waiters[id]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		p.waiters[id] = set
	}
	set[ch] = struct{}{}
	p.wmu.Unlock()
	stop := func() {
		p.wmu.Lock()
		defer p.wmu.Unlock()
		if set, ok := p.waiters[id]; ok {
			delete(set, ch)
			if len(set) == 0 {
				delete(p.waiters, id)
			}
		}
	}
	return ch, stop
}

// watch follows the events endpoint until ctx ends, waking the waiters of
// each finished job. When the subscription fails it is made again.
func (p *Pool) watch(ctx context.Context) {
	defer close(p.watchDone)
	topics := []string{protocol.EventCompleted, protocol.EventFailed}
	for {
		err := client.Watch(ctx, p.cfg.Events, topics, p.notify)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn().Err(err).Str(logging.KeyEndpoint, p.cfg.Events).Msg("event subscription failed, retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// notify wakes everyone waiting for e's job, once it has finished.
func (p *Pool) notify(e protocol.Event) error {
	if e.Event != protocol.EventCompleted && e.Event != protocol.EventFailed {
		return nil
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	for ch := range p.waiters[e.Job] {
		close(ch)
	}
	delete(p.waiters, e.Job)
	return nil
}
