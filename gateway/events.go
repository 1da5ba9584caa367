package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/logging"
	"github.com/zmws/zmws/protocol"
)

// Defaults of EventsConfig.
const (
	// DefaultEventsBuffer is how many events wait for one slow listener
	// before it misses some (and is told to resync).
	DefaultEventsBuffer = 256
	// DefaultMaxListeners bounds the event streams open at once; past it a
	// request for one gets 503 busy.
	DefaultMaxListeners = 256
)

// EventsConfig configures an Events hub.
type EventsConfig struct {
	// Endpoint is the broker's events endpoint (inproc:// in zmwsd, which
	// the broker trusts; tcp:// with Curve from elsewhere). Required.
	Endpoint string
	// Curve, when set, are the keys for a CURVE events endpoint: the
	// client key needs the watch or admin right (docs/SECURITY.md).
	Curve *curve.Client
	// Buffer is each listener's queue of events (DefaultEventsBuffer).
	Buffer int
	// MaxListeners bounds the listeners at once (DefaultMaxListeners).
	MaxListeners int
	// Logger receives the hub's logs (default: none).
	Logger zerolog.Logger
}

// ErrTooManyListeners is returned by Events.Subscribe past
// EventsConfig.MaxListeners.
var ErrTooManyListeners = errors.New("gateway: too many event listeners")

// Events relays the broker's job lifecycle events to many listeners (the
// web page's streams, /ui/events) through one SUB socket. The socket exists
// only while someone listens, so the broker builds no events nobody reads
// (it skips events without subscribers). A listener that does not keep up
// loses events, never holds up the others: its queue is bounded, and once
// an event found it full the listener is told to resync (Listener.Resync).
// Its methods are safe for concurrent use.
type Events struct {
	cfg EventsConfig
	log zerolog.Logger

	mu        sync.Mutex
	listeners map[*Listener]struct{}
	stop      context.CancelFunc // ends the running subscription; nil when none runs
	done      chan struct{}      // closed when that subscription's goroutine ends
	closed    bool
}

// Listener is one subscriber of an Events hub.
type Listener struct {
	// C delivers the events in the order the broker published them.
	C <-chan protocol.Event
	// Resync receives a value when events were lost for this listener
	// (its queue was full, or the subscription failed and was made
	// again): what it built from events is stale.
	Resync <-chan struct{}

	c      chan protocol.Event
	resync chan struct{}
}

// lost tells l it missed events, without blocking.
func (l *Listener) lost() {
	select {
	case l.resync <- struct{}{}:
	default: // already told
	}
}

// NewEvents returns a hub for cfg.Endpoint. It connects when the first
// listener subscribes.
func NewEvents(cfg EventsConfig) (*Events, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("gateway: the events hub needs the broker's events endpoint")
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultEventsBuffer
	}
	if cfg.MaxListeners <= 0 {
		cfg.MaxListeners = DefaultMaxListeners
	}
	return &Events{
		cfg:       cfg,
		log:       cfg.Logger.With().Str("component", "gateway").Logger(),
		listeners: map[*Listener]struct{}{},
	}, nil
}

// Subscribe adds a listener; cancel removes it (and, for the last one,
// closes the subscription). Events published before the broker sees the
// subscription are not delivered: a listener that needs the whole picture
// takes a snapshot after subscribing and applies events on top of it.
func (e *Events) Subscribe() (l *Listener, cancel func(), err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, nil, ErrClosed
	}
	if len(e.listeners) >= e.cfg.MaxListeners {
		return nil, nil, ErrTooManyListeners
	}
	c := make(chan protocol.Event, e.cfg.Buffer)
	rs := make(chan struct{}, 1)
	l = &Listener{C: c, Resync: rs, c: c, resync: rs}
	e.listeners[l] = struct{}{}
	if e.stop == nil {
		e.start()
	}
	return l, func() { e.unsubscribe(l) }, nil
}

func (e *Events) unsubscribe(l *Listener) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.listeners[l]; !ok {
		return
	}
	delete(e.listeners, l)
	if len(e.listeners) == 0 && e.stop != nil {
		e.stop()
		e.stop = nil // the goroutine ends on its own; done is waited for by Close
	}
}

// Listeners returns how many listeners there are.
func (e *Events) Listeners() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.listeners)
}

// Close ends the subscription; Subscribe then returns ErrClosed. The
// listeners' channels stay open: their streams end with their requests.
func (e *Events) Close() error {
	e.mu.Lock()
	e.closed = true
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
	done := e.done
	e.mu.Unlock()
	if done != nil {
		<-done
	}
	return nil
}

// start runs a subscription until its context ends. Called with mu held.
func (e *Events) start() {
	ctx, cancel := context.WithCancel(context.Background())
	prev := e.done
	done := make(chan struct{})
	e.stop, e.done = cancel, done
	go func() {
		defer close(done)
		if prev != nil {
			<-prev // one SUB at a time: the last one has closed its socket
		}
		e.run(ctx)
	}()
}

// run follows the events endpoint until ctx ends, remaking the
// subscription after a failure; events lost meanwhile make every listener
// resync.
func (e *Events) run(ctx context.Context) {
	for {
		err := client.WatchCurve(ctx, e.cfg.Endpoint, e.cfg.Curve, nil, e.publish)
		if ctx.Err() != nil {
			return
		}
		e.log.Warn().Err(err).Str(logging.KeyEndpoint, e.cfg.Endpoint).Msg("event relay subscription failed, retrying")
		e.mu.Lock()
		for l := range e.listeners {
			l.lost()
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// publish hands ev to every listener that has room; the others are told to
// resync. It never blocks: the SUB socket is read at the broker's pace.
func (e *Events) publish(ev protocol.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for l := range e.listeners {
		select {
		case l.c <- ev:
		default:
			l.lost()
		}
	}
	return nil
}
