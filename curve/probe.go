package curve

import (
	"errors"
	"fmt"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// NewProbeKey makes a key pair for Probe.
func NewProbeKey() (KeyPair, error) {
	public, secret, err := zmq.NewCurveKeypair()
	if err != nil {
		return KeyPair{}, fmt.Errorf("curve: probe key pair: %w", err)
	}
	return KeyPair{Name: "start-up probe", Public: public, Secret: secret}, nil
}

// Probe connects to a CURVE server's endpoint (as returned by
// GetLastEndpoint) with a key pair made for the probe, which no key set
// holds, and returns nil only if the handshake is refused as not
// authorized. It is the broker's check at start that its ZAP handler
// answers: libzmq would admit any key if none did. A wildcard host is
// probed on loopback. typ is a socket type the server accepts (DEALER for
// a ROUTER, SUB for a PUB).
//
// The probe connects with key (make one with NewProbeKey), which no key
// set may hold.
func Probe(endpoint string, typ zmq.Type, serverPublic string, key KeyPair, timeout time.Duration) error {
	ep := endpoint
	for _, any := range []string{"tcp://0.0.0.0:", "tcp://*:"} {
		if rest, ok := strings.CutPrefix(ep, any); ok {
			ep = "tcp://127.0.0.1:" + rest
		}
	}
	if rest, ok := strings.CutPrefix(ep, "tcp://[::]:"); ok {
		ep = "tcp://[::1]:" + rest
	}
	sock, err := zmq.NewSocket(typ)
	if err != nil {
		return fmt.Errorf("curve: probe socket: %w", err)
	}
	sock.SetLinger(0)
	if strings.HasPrefix(ep, "tcp://[") {
		sock.SetIpv6(true)
	}
	c := &Client{Broker: Public{Key: serverPublic}, Own: key}
	if err := c.Apply(sock); err != nil {
		sock.Close()
		return err
	}
	w, err := WatchSocket(sock)
	if err != nil {
		sock.Close()
		return err
	}
	defer sock.Close()
	defer w.Close() // before the socket closes
	if err := sock.Connect(ep); err != nil {
		return fmt.Errorf("curve: probe %s: %w", ep, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if done, err := w.result(); done {
			if errors.Is(err, ErrRefused) {
				return nil
			}
			if err == nil {
				return fmt.Errorf("curve: %s admitted a key no one authorized: no ZAP handler answers for it", endpoint)
			}
			return fmt.Errorf("curve: probe %s: %w", endpoint, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("curve: probe %s: no handshake within %s", endpoint, timeout)
}
