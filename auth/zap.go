package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/logging"
)

// zapEndpoint is where libzmq sends ZAP requests (RFC 27), per context.
const zapEndpoint = "inproc://zeromq.zap.01"

// ZAP status codes (RFC 27).
const (
	zapOK     = "200"
	zapDenied = "400"
)

// The ZAP handler. libzmq asks one handler per context, and every zmws
// socket lives in pebbe/zmq4's default context, so there is one handler per
// process: it starts with the first Register, before the caller binds any
// CURVE socket, and is never stopped, because libzmq admits every key
// while no handler is bound. Brokers register their Keys under domains of
// their own; a request for a domain no broker holds, or by any mechanism
// but CURVE, is denied. This is the package's only mutable state; it
// mirrors libzmq's own per-context state.
var zap struct {
	once    sync.Once
	err     error
	mu      sync.RWMutex
	domains map[string]domain
	// limit keeps a peer that reconnects every 100 ms with a refused key
	// to a few log lines a minute. The handler's goroutine owns it.
	limit logging.Limiter
}

// domain is what a ZAP domain admits.
type domain struct {
	keys *Keys
	role Role
	// events: a client key needs the watch right.
	events bool
	log    zerolog.Logger
	reg    *Registration
}

// Domains are the ZAP domains of one broker's sockets.
type Domains struct {
	Client, Worker, Events string
}

// Registration is a broker's place in the ZAP handler.
type Registration struct {
	Domains Domains
	once    sync.Once
	// probe is the raw public key of the broker's start-up probe (see
	// ExpectProbe): refused like any unknown key, but not logged as a
	// stranger's.
	probe atomic.Value // string
}

// ExpectProbe names the public key (Z85) the broker's start-up check will
// connect with, so its refusal is logged as the check it is.
func (r *Registration) ExpectProbe(public string) { r.probe.Store(zmq.Z85decode(public)) }

// isProbe reports whether raw is the expected probe's key.
func (r *Registration) isProbe(raw string) bool {
	p, _ := r.probe.Load().(string)
	return p != "" && p == raw
}

// Register starts the process's ZAP handler if it is not running and
// makes it answer for keys on three new domains, which the caller sets on
// its client, worker and events sockets (curve.ApplyServer). Close the
// Registration after those sockets.
func Register(keys *Keys, log zerolog.Logger) (*Registration, error) {
	if keys == nil {
		return nil, errors.New("auth: Register needs keys")
	}
	zap.once.Do(func() { zap.err = startZAP() })
	if zap.err != nil {
		return nil, zap.err
	}
	log = log.With().Str("component", "zap").Logger()
	tag := rand.Text()[:10]
	r := &Registration{Domains: Domains{
		Client: curve.DomainClient + "." + tag,
		Worker: curve.DomainWorker + "." + tag,
		Events: curve.DomainEvents + "." + tag,
	}}
	d := r.Domains
	zap.mu.Lock()
	zap.domains[d.Client] = domain{keys: keys, role: RoleClient, log: log, reg: r}
	zap.domains[d.Worker] = domain{keys: keys, role: RoleWorker, log: log, reg: r}
	zap.domains[d.Events] = domain{keys: keys, role: RoleClient, events: true, log: log, reg: r}
	zap.mu.Unlock()
	return r, nil
}

// Close removes the domains: their sockets' new peers are denied from now.
func (r *Registration) Close() {
	r.once.Do(func() {
		zap.mu.Lock()
		delete(zap.domains, r.Domains.Client)
		delete(zap.domains, r.Domains.Worker)
		delete(zap.domains, r.Domains.Events)
		zap.mu.Unlock()
	})
}

// startZAP binds the handler's socket and starts its goroutine, which owns
// the socket for the life of the process.
func startZAP() error {
	zap.domains = map[string]domain{}
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return fmt.Errorf("auth: ZAP handler socket: %w", err)
	}
	sock.SetLinger(0)
	if err := sock.Bind(zapEndpoint); err != nil {
		sock.Close()
		return fmt.Errorf("auth: bind the ZAP handler (%s): %w (is another ZAP handler running in this process?)", zapEndpoint, err)
	}
	go serveZAP(sock)
	return nil
}

// serveZAP answers ZAP requests until the context ends.
func serveZAP(sock *zmq.Socket) {
	for {
		msg, err := sock.RecvMessageBytes(0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return // ETERM: the context is ending, and the sockets with it
		}
		reply := answer(msg)
		if reply == nil {
			continue
		}
		sock.SendMessage(reply...)
	}
}

// answer makes the reply to one ZAP request: [routing id, "", "1.0",
// request id, domain, address, identity, mechanism, credentials...]. The
// identity is the server socket's own (libzmq 4.3), not the peer's routing
// id: ZAP cannot tie a peer's chosen routing id to its key.
// A request too short to answer is dropped (libzmq never sends one).
func answer(msg [][]byte) []any {
	if len(msg) < 8 || len(msg[1]) != 0 {
		return nil
	}
	version, reqID, addr, mech := string(msg[2]), msg[3], string(msg[5]), string(msg[7])
	deny := func(why string) []any {
		return []any{msg[0], "", "1.0", reqID, zapDenied, why, "", ""}
	}
	if version != "1.0" {
		return deny("unsupported ZAP version")
	}
	zap.mu.RLock()
	d, ok := zap.domains[string(msg[4])]
	zap.mu.RUnlock()
	if !ok {
		return deny("unknown domain")
	}
	if mech != "CURVE" || len(msg) != 9 || len(msg[8]) != 32 {
		if ok, held := zap.limit.Allow("not CURVE", addr, time.Now()); ok {
			d.log.Warn().Str("address", addr).Str("mechanism", mech).Str("role", string(d.role)).Int("suppressed", held).Msg("peer refused: not CURVE")
		}
		return deny("CURVE required")
	}
	raw := string(msg[8])
	public := zmq.Z85encode(raw)
	key := d.keys.Current().ByPublic(raw)
	why := ""
	switch {
	case key == nil:
		why = "unknown key"
	case key.Role != d.role:
		why = "a " + string(key.Role) + " key is not accepted on the " + string(d.role) + " socket"
	case d.events && !key.Rights.MayWatch():
		why = "key may not watch events"
	}
	if why != "" && key == nil && d.reg.isProbe(raw) {
		d.log.Debug().Str("role", string(d.role)).Msg("start-up check: a key no one authorized is refused, as it must be")
		return deny(why)
	}
	if why != "" {
		ok, held := zap.limit.Allow(why, public, time.Now())
		if !ok {
			return deny(why)
		}
		ev := d.log.Warn().Str("address", addr).Str("public_key", public).Str("role", string(d.role)).Int("suppressed", held)
		if key != nil {
			ev = ev.Str("key", key.Name)
		}
		ev.Str("reason", why).Msg("peer refused")
		return deny(why)
	}
	d.log.Debug().Str("address", addr).Str("key", key.Name).Str("role", string(d.role)).Msg("peer admitted")
	return []any{msg[0], "", "1.0", reqID, zapOK, "OK", public, ""}
}
