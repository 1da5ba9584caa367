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

// DefaultMaxSync is the default bound of BrokerConfig.MaxSync.
const DefaultMaxSync = 4096

// watchRetry is the pause before the event subscription is made again after
// it failed.
const watchRetry = time.Second

// Errors returned by a Broker.
var (
	// ErrClosed: the Broker was closed.
	ErrClosed = errors.New("gateway: broker backend closed")
	// ErrBusy: MaxSync synchronous requests are in flight.
	ErrBusy = errors.New("gateway: too many synchronous requests in flight")
	// ErrStoreFailing: the broker answers, but its job store failed its
	// last commit, so it refuses submissions (Ping).
	ErrStoreFailing = errors.New("gateway: the broker's job store is failing")
)

// BrokerConfig configures a Broker. Zero values mean the defaults.
type BrokerConfig struct {
	// Broker is the broker's client endpoint: inproc://... in zmwsd.
	// Required.
	Broker string
	// Events is the broker's events endpoint, used to wake /jobs/{id}?wait=
	// when a job finishes. Empty: waits rely on re-checking alone.
	Events string
	// Timeout bounds a Submit or a query (client.DefaultTimeout). Queries
	// are not resent: over inproc a lost request means a stuck broker.
	Timeout time.Duration
	// MaxSync bounds the synchronous requests in flight at once
	// (DefaultMaxSync); past it a sync request is answered 503 busy at
	// once. Each holds a goroutine and a job at the broker, not a socket.
	MaxSync int
	// Liveness is how long a synchronous request waits without hearing of
	// its job before asking the broker about it (client.Config.Liveness).
	Liveness time.Duration
	// Logger receives the backend's and its client's logs (default: none).
	Logger zerolog.Logger
}

// Broker is the Backend of a zmwsd: one client.Client on one socket to the
// broker, carrying every request in flight at once, matched to its replies
// by reference. A request that gives up (its HTTP client went away, its
// timeout passed) leaves the socket and the others alone, so requests held
// by slow jobs never stand in the way of the rest. Its methods are safe for
// concurrent use.
type Broker struct {
	cfg         BrokerConfig
	log         zerolog.Logger
	c           *client.Client
	syncPermits chan struct{} // one permit per synchronous request in flight

	wmu     sync.Mutex
	waiters map[string]map[chan struct{}]struct{} // job ID → channels to close when it finishes

	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// NewBroker returns a Broker for cfg.Broker. With cfg.Events set it
// subscribes to job completions at once.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	if cfg.Broker == "" {
		return nil, errors.New("gateway: the backend needs a broker endpoint")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = client.DefaultTimeout
	}
	if cfg.MaxSync <= 0 {
		cfg.MaxSync = DefaultMaxSync
	}
	c, err := client.New(client.Config{
		Broker:   cfg.Broker,
		Timeout:  cfg.Timeout,
		Retries:  -1,
		Liveness: cfg.Liveness,
		Logger:   cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:         cfg,
		log:         cfg.Logger.With().Str("component", "gateway").Logger(),
		c:           c,
		syncPermits: make(chan struct{}, cfg.MaxSync),
		waiters:     map[string]map[chan struct{}]struct{}{},
		stopWatch:   cancel,
		watchDone:   make(chan struct{}),
	}
	if cfg.Events == "" {
		close(b.watchDone)
		return b, nil
	}
	go b.watch(ctx)
	return b, nil
}

// Close closes the client, ending requests in flight (they return
// client.ErrClosed), and stops the event subscription. Later requests
// return client.ErrClosed.
func (b *Broker) Close() error {
	b.stopWatch()
	<-b.watchDone
	return b.c.Close()
}

// Stats is a snapshot of a Broker.
type Stats struct {
	Sync int // synchronous requests in flight
}

// Stats returns what is in flight.
func (b *Broker) Stats() Stats { return Stats{Sync: len(b.syncPermits)} }

// Submit implements Backend.
func (b *Broker) Submit(ctx context.Context, service string, req client.Request) (string, error) {
	return b.c.Submit(ctx, service, req)
}

// Call implements Backend: a synchronous request, one of at most MaxSync
// in flight (ErrBusy past it). It ends with its job, with ctx, or with a
// broker that lost the job or stopped answering (see client.CallWith).
func (b *Broker) Call(ctx context.Context, service string, req client.Request, onPartial func([]byte) error) (*client.Result, error) {
	select {
	case b.syncPermits <- struct{}{}:
	default:
		return nil, fmt.Errorf("call %s: %d synchronous requests in flight (--http-max-sync): %w", service, b.cfg.MaxSync, ErrBusy)
	}
	defer func() { <-b.syncPermits }()
	return b.c.Call(ctx, service, req, onPartial)
}

// Query implements Backend: one JSON frame from a SERVER-* service.
func (b *Broker) Query(ctx context.Context, service string, body ...[]byte) ([]byte, error) {
	frames, err := b.c.Query(ctx, service, body...)
	if err != nil {
		return nil, err
	}
	if len(frames) != 1 {
		return nil, fmt.Errorf("query %s: reply of %d frames, want one JSON frame: %w", service, len(frames), client.ErrBadReply)
	}
	return frames[0], nil
}

// QueryPage implements Backend: one page of a paged SERVER-* listing.
func (b *Broker) QueryPage(ctx context.Context, service string, opt client.PageOptions) ([]byte, string, error) {
	frames, next, err := b.c.QueryPage(ctx, service, opt)
	if err != nil {
		return nil, "", err
	}
	if len(frames) != 1 {
		return nil, "", fmt.Errorf("query %s: reply of %d frames, want one JSON frame: %w", service, len(frames), client.ErrBadReply)
	}
	return frames[0], next, nil
}

// Job implements Backend.
func (b *Broker) Job(ctx context.Context, id string) (protocol.JobInfo, error) {
	return b.c.Job(ctx, id)
}

// Cancel implements Backend.
func (b *Broker) Cancel(ctx context.Context, id string) (protocol.JobInfo, error) {
	return b.c.Cancel(ctx, id)
}

// Retry implements Backend.
func (b *Broker) Retry(ctx context.Context, id string) (protocol.JobInfo, error) {
	return b.c.Retry(ctx, id)
}

// FailedPage implements Backend.
func (b *Broker) FailedPage(ctx context.Context, opt client.FailedOptions) ([]protocol.JobInfo, string, error) {
	return b.c.FailedPage(ctx, opt)
}

// RetryFailed implements Backend.
func (b *Broker) RetryFailed(ctx context.Context, opt client.FailedOptions) (protocol.RetryReport, string, error) {
	return b.c.RetryFailed(ctx, opt)
}

// Ping implements Backend with SERVER-HEALTH, which the broker's loop
// answers from memory, so it says whether the loop itself turns, whatever
// else is in flight: an error matching ErrStoreFailing (with the store's error)
// while the broker's last commit to its job store failed.
func (b *Broker) Ping(ctx context.Context) error {
	body, err := b.Query(ctx, protocol.ServerHealth)
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
func (b *Broker) WatchJob(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	b.wmu.Lock()
	set := b.waiters[id]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		b.waiters[id] = set
	}
	set[ch] = struct{}{}
	b.wmu.Unlock()
	stop := func() {
		b.wmu.Lock()
		defer b.wmu.Unlock()
		if set, ok := b.waiters[id]; ok {
			delete(set, ch)
			if len(set) == 0 {
				delete(b.waiters, id)
			}
		}
	}
	return ch, stop
}

// watch follows the events endpoint until ctx ends, waking the waiters of
// each finished job. When the subscription fails it is made again.
func (b *Broker) watch(ctx context.Context) {
	defer close(b.watchDone)
	topics := []string{protocol.EventCompleted, protocol.EventFailed}
	for {
		err := client.Watch(ctx, b.cfg.Events, topics, b.notify)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn().Err(err).Str(logging.KeyEndpoint, b.cfg.Events).Msg("event subscription failed, retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// notify wakes everyone waiting for e's job, once it has finished.
func (b *Broker) notify(e protocol.Event) error {
	if e.Event != protocol.EventCompleted && e.Event != protocol.EventFailed {
		return nil
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	for ch := range b.waiters[e.Job] {
		close(ch)
	}
	delete(b.waiters, e.Job)
	return nil
}
