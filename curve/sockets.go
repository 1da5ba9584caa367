package curve

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// ZAP domains of the broker's sockets. The broker's ZAP handler admits a
// key on a socket only when the key's role fits the domain, so a client
// key cannot register as a worker, nor a worker key submit jobs.
const (
	DomainClient = "zmws-client"
	DomainWorker = "zmws-worker"
	DomainEvents = "zmws-events"
)

// Client is what a zmws client or worker needs to speak CURVE to a broker:
// the broker's public key, which authenticates the broker, and its own pair.
type Client struct {
	Broker Public
	Own    KeyPair
}

// LoadClient reads the broker's public key and the peer's own secret key.
// Both empty is no CURVE (nil, nil); one without the other is an error
// naming the flags.
func LoadClient(brokerKeyFile, ownKeyFile string) (*Client, error) {
	switch {
	case brokerKeyFile == "" && ownKeyFile == "":
		return nil, nil
	case brokerKeyFile == "":
		return nil, errors.New("--curve-key needs --broker-key (the broker's public key file)")
	case ownKeyFile == "":
		return nil, errors.New("--broker-key needs --curve-key (this peer's secret key file; make one with zmws keygen)")
	}
	b, err := LoadPublic(brokerKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--broker-key: %w", err)
	}
	own, err := LoadSecret(ownKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--curve-key: %w", err)
	}
	return &Client{Broker: b, Own: own}, nil
}

// Apply makes sock a CURVE client of the broker. Call it before Connect.
// Every option's error is returned.
func (c *Client) Apply(sock *zmq.Socket) error {
	for _, set := range []struct {
		what string
		fn   func(string) error
		key  string
	}{
		{"broker public key", sock.SetCurveServerkey, c.Broker.Key},
		{"own public key", sock.SetCurvePublickey, c.Own.Public},
		{"own secret key", sock.SetCurveSecretkey, c.Own.Secret},
	} {
		if err := set.fn(set.key); err != nil {
			return fmt.Errorf("curve: set %s: %w", set.what, err)
		}
	}
	return nil
}

// ApplyServer makes sock a CURVE server with the broker's key pair, its
// peers checked by the ZAP handler in domain. Call it before Bind.
func ApplyServer(sock *zmq.Socket, kp KeyPair, domain string) error {
	if err := sock.SetCurveServer(1); err != nil {
		return fmt.Errorf("curve: set server: %w", err)
	}
	if err := sock.SetCurveSecretkey(kp.Secret); err != nil {
		return fmt.Errorf("curve: set secret key: %w", err)
	}
	if err := sock.SetZapDomain(domain); err != nil {
		return fmt.Errorf("curve: set ZAP domain: %w", err)
	}
	return nil
}

// ErrRefused is matched (errors.Is) by the error of a handshake the broker
// refused: our key is not authorized there.
var ErrRefused = errors.New("broker refused our key")

// ErrHandshake is matched by the error of a handshake that failed for
// another reason: a wrong broker key, or one side not speaking CURVE.
var ErrHandshake = errors.New("CURVE handshake with the broker failed")

// Watch follows the handshakes of one socket through its monitor. Its
// methods are safe for concurrent use, but Close; it runs one goroutine
// until Close.
//
// libzmq sends monitor events with a blocking send from its I/O thread:
// a monitor nobody reads stalls every connection of the process. So the
// watch's reader is connected before monitoring starts, and Close stops
// the monitoring (on the socket's goroutine) before it stops reading.
type Watch struct {
	sock   *zmq.Socket
	mu     sync.Mutex
	ended  bool  // a handshake has ended
	ok     bool  // a handshake has succeeded
	err    error // the last handshake's failure; nil after a success
	stop   chan struct{}
	done   chan struct{}
	closer sync.Once
}

// handshakeEvents are the monitor events a Watch reads.
const handshakeEvents = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH |
	zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL

// WatchSocket starts watching sock's handshakes; call it before Connect,
// from the goroutine that owns sock. Close the Watch from that goroutine
// before closing the socket.
func WatchSocket(sock *zmq.Socket) (*Watch, error) {
	addr := "inproc://zmws-curve-watch-" + rand.Text()
	mon, err := Monitor(sock, addr, handshakeEvents)
	if err != nil {
		return nil, err
	}
	w := &Watch{sock: sock, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(mon)
	return w, nil
}

// Monitor starts monitoring sock for events on a new inproc endpoint addr
// and returns the PAIR socket to read them from, connected before the
// monitoring starts so no event waits for a reader. The caller reads it
// until it stops the monitoring with sock.Monitor("", 0) (on sock's
// goroutine), and only then closes it: libzmq's I/O thread blocks on a
// monitor event nobody reads.
func Monitor(sock *zmq.Socket, addr string, events zmq.Event) (*zmq.Socket, error) {
	mon, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		return nil, fmt.Errorf("curve: monitor socket: %w", err)
	}
	mon.SetLinger(0)
	// No high-water mark toward the reader: a burst of events (a flood of
	// connections) waits in memory instead of blocking libzmq's I/O thread
	// while the reader is busy.
	if err := mon.SetRcvhwm(0); err != nil {
		mon.Close()
		return nil, fmt.Errorf("curve: monitor socket: %w", err)
	}
	if err := mon.Connect(addr); err != nil { // inproc: connect before bind is fine
		mon.Close()
		return nil, fmt.Errorf("curve: connect monitor: %w", err)
	}
	if err := sock.Monitor(addr, events); err != nil {
		mon.Close()
		return nil, fmt.Errorf("curve: monitor socket: %w", err)
	}
	return mon, nil
}

func (w *Watch) run(mon *zmq.Socket) {
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
		polled, err := poller.Poll(pollSlice)
		if err != nil {
			return
		}
		if len(polled) == 0 {
			continue
		}
		ev, addr, value, err := mon.RecvEvent(0)
		if err != nil {
			return
		}
		w.note(ev, addr, value)
	}
}

// note records one handshake event.
func (w *Watch) note(ev zmq.Event, addr string, value int) {
	var err error
	switch ev {
	case zmq.EVENT_HANDSHAKE_SUCCEEDED:
	case zmq.EVENT_HANDSHAKE_FAILED_AUTH:
		err = fmt.Errorf("%w (%s): not authorized (ZAP status %d); ask the broker's operator to add our public key", ErrRefused, addr, value)
	case zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
		err = fmt.Errorf("%w (%s): the broker does not speak CURVE on this endpoint, or speaks it and we were not given keys", ErrHandshake, addr)
	default:
		err = fmt.Errorf("%w (%s): is --broker-key the public key of this broker?", ErrHandshake, addr)
	}
	w.mu.Lock()
	w.ended, w.err = true, err
	w.ok = w.ok || err == nil
	w.mu.Unlock()
}

// Handshaken reports whether a handshake has succeeded: a peer speaking
// ZMTP (a broker, not only a listening port) is at the other end, or was.
func (w *Watch) Handshaken() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok
}

// Err returns why the last handshake failed, or nil if it succeeded or
// none has ended yet.
func (w *Watch) Err() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// result says whether a handshake has ended, and how the last one did.
func (w *Watch) result() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ended, w.err
}

// Close stops monitoring the socket, then the watch's goroutine, and waits
// for it. Call it on the socket's goroutine, before closing the socket.
func (w *Watch) Close() {
	if w == nil {
		return
	}
	w.closer.Do(func() {
		w.sock.Monitor("", 0) // synchronous: no event is sent after it
		close(w.stop)
	})
	<-w.done
}

// pollSlice bounds a Watch's wait, so Close is prompt.
const pollSlice = 100 * time.Millisecond
