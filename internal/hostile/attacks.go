package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/curve"
)

// endless sends frames with MORE and never a last one, over a raw ZMTP
// connection greeted with mechanism (NULL, or CURVE without a handshake),
// until ctx ends or cfg.MaxBytes are sent; then it disconnects. When the
// broker closes the connection (a CURVE broker does) it connects again, as
// an attacker would.
func endless(ctx context.Context, endpoint, mechanism string, cfg config) (int64, error) {
	return rawFrames(ctx, endpoint, mechanism, cfg, 0)
}

// complete sends whole messages of cfg.PerMsg frames, as endless does.
func complete(ctx context.Context, endpoint string, cfg config) (int64, error) {
	return rawFrames(ctx, endpoint, "NULL", cfg, cfg.PerMsg)
}

// rawFrames sends frames, each perMsg-th one the last of its message (0:
// none is).
func rawFrames(ctx context.Context, endpoint, mechanism string, cfg config, perMsg int) (int64, error) {
	body := make([]byte, cfg.Frame)
	var sent int64
	for ctx.Err() == nil {
		p, err := dialRaw(ctx, endpoint, mechanism)
		var op *net.OpError
		switch {
		case errors.As(err, &op) && op.Op == "dial":
			switch {
			case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
				return sent, nil
			case op.Timeout():
				continue // the broker is slow to accept: try again
			}
			return sent, err
		case ctx.Err() != nil:
			p.Close()
			return sent, nil
		}
		stop := context.AfterFunc(ctx, func() { p.Close() }) // unblocks a write
		for n := 1; err == nil; n++ {
			flags := byte(flagMore)
			if perMsg > 0 && n%perMsg == 0 {
				flags = 0
			}
			err = p.frame(flags, body)
			if cfg.MaxBytes > 0 && sent+p.sent.Load() >= cfg.MaxBytes {
				break
			}
		}
		stop()
		p.Close()
		sent += p.sent.Load()
		if cfg.MaxBytes > 0 && sent >= cfg.MaxBytes {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return sent, nil
}

// finalFrame is the last frame of each message a CURVE peer sends; its
// CURVE frame (33 bytes more: command name, nonce, MAC, flags) is the only
// one of its size, so the relay can drop it.
var finalFrame = []byte("end")

// endlessCurve runs a CURVE peer with key (curvePeer) in a child process
// until ctx ends or cfg.MaxBytes reached the broker, then kills it: the
// peer leaves as a crashed one does, and libzmq's teardown of a socket in
// the middle of a message cannot abort this process. It returns the bytes
// the relay passed on to the broker.
func endlessCurve(ctx context.Context, endpoint string, key *curve.Client, cfg config) (int64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %d", peerEnv, endpoint, key.Broker.Key, key.Own.File, cfg.Frame))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var passed, dropped atomic.Int64
	budget := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var p, d int64
			if _, err := fmt.Sscan(sc.Text(), &p, &d); err == nil {
				passed.Store(p)
				dropped.Store(d)
				if cfg.MaxBytes > 0 && p >= cfg.MaxBytes {
					select {
					case <-budget:
					default:
						close(budget)
					}
				}
			}
		}
	}()
	select {
	case <-ctx.Done():
	case <-budget:
	case <-read:
	}
	cmd.Process.Kill()
	<-read
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
		err = nil
	}
	if err == nil && passed.Load() > int64(cfg.Frame)*4 && dropped.Load() == 0 {
		err = errors.New("the relay found no final frame to drop: the broker got whole messages")
	}
	return passed.Load(), err
}

// peerEnv makes this program (or its test binary) a CURVE peer: the value
// is "ENDPOINT BROKER-PUBLIC-KEY OWN-SECRET-KEY-FILE FRAME-SIZE".
const peerEnv = "ZMWS_HOSTILE_CURVE_PEER"

// curvePeer sends, from a libzmq CURVE client, two-frame messages (a frame
// of frameSize bytes, then finalFrame) through a relay that drops every
// finalFrame: the broker gets one message that never ends, if it admits
// the key. It prints the bytes the relay passed on and the frames it
// dropped, every 100 ms, until it is killed.
func curvePeer(spec string) error {
	var endpoint, brokerKey, keyFile string
	var frameSize int
	if _, err := fmt.Sscan(spec, &endpoint, &brokerKey, &keyFile, &frameSize); err != nil {
		return fmt.Errorf("%s=%q: %w", peerEnv, spec, err)
	}
	own, err := curve.LoadSecret(keyFile)
	if err != nil {
		return err
	}
	key := curve.Client{Broker: curve.Public{Name: "broker", Key: brokerKey}, Own: own}
	r, err := newRelay(endpoint, int64(len(finalFrame))+33)
	if err != nil {
		return err
	}
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			fmt.Println(r.passed.Load(), r.dropped.Load())
		}
	}()
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	sock.SetSndhwm(2)
	if err := key.Apply(sock); err != nil {
		return err
	}
	if err := sock.Connect(r.Endpoint()); err != nil {
		return err
	}
	body := make([]byte, frameSize)
	for {
		if _, err := sock.SendBytes(body, zmq.SNDMORE); err != nil {
			return err
		}
		if _, err := sock.SendBytes(finalFrame, 0); err != nil {
			return err
		}
	}
}

// keys is the CURVE broker's key files and its peers' keys.
type keys struct {
	brokerKey string // the broker's secret key file
	clientDir string // the folder of authorized client keys
	client    *curve.Client
	stranger  *curve.Client // a key the broker does not know
}

func makeKeys(work string) (keys, error) {
	var k keys
	dir := filepath.Join(work, "keys")
	k.clientDir = filepath.Join(work, "client-keys")
	for _, d := range []string{dir, k.clientDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return k, err
		}
	}
	broker, err := curve.Generate(dir, "broker")
	if err != nil {
		return k, err
	}
	k.brokerKey = broker.File
	pub := curve.Public{Name: "broker", Key: broker.Public}
	for _, c := range []struct {
		name string
		dst  **curve.Client
	}{{"attacker", &k.client}, {"stranger", &k.stranger}} {
		kp, err := curve.Generate(dir, c.name)
		if err != nil {
			return k, err
		}
		*c.dst = &curve.Client{Broker: pub, Own: kp}
	}
	b, err := os.ReadFile(filepath.Join(dir, "attacker.pub"))
	if err != nil {
		return k, err
	}
	if err := os.WriteFile(filepath.Join(k.clientDir, "attacker.pub"), b, 0o644); err != nil {
		return k, fmt.Errorf("client keys: %w", err)
	}
	return k, nil
}
