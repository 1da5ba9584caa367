package client

import (
	"context"
	"encoding/json"
	"fmt"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/protocol"
)

// Watch subscribes to a broker's events endpoint (tcp://127.0.0.1:5557 by
// default) and calls fn for each job lifecycle event, until ctx ends (nil is
// returned) or fn returns an error (returned). topics limits the events
// (protocol.EventQueued, ...); none means all. Events published while no
// subscriber is connected are not replayed.
func Watch(ctx context.Context, endpoint string, topics []string, fn func(protocol.Event) error) error {
	return WatchCurve(ctx, endpoint, nil, topics, fn)
}

// WatchCurve is Watch over CURVE with keys (nil: none): the broker admits
// client keys with the watch or admin right. A refused handshake ends it
// with an error matching curve.ErrRefused.
func WatchCurve(ctx context.Context, endpoint string, keys *curve.Client, topics []string, fn func(protocol.Event) error) error {
	s, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		return fmt.Errorf("client: events socket: %w", err)
	}
	defer s.Close()
	s.SetLinger(0)
	var watch *curve.Watch
	if keys != nil {
		if err := keys.Apply(s); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		if watch, err = curve.WatchSocket(s); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		defer watch.Close() // before the socket closes (deferred first, runs later)
	}
	if len(topics) == 0 {
		topics = []string{""}
	}
	for _, t := range topics {
		if err := s.SetSubscribe(t); err != nil {
			return fmt.Errorf("client: subscribe %q: %w", t, err)
		}
	}
	if err := s.Connect(endpoint); err != nil {
		return fmt.Errorf("client: connect %s: %w", endpoint, err)
	}
	p := zmq.NewPoller()
	p.Add(s, zmq.POLLIN)
	for ctx.Err() == nil {
		polled, err := p.Poll(watchSlice)
		if err != nil {
			return fmt.Errorf("client: poll events: %w", err)
		}
		if len(polled) == 0 {
			if err := watch.Err(); err != nil {
				return fmt.Errorf("watch events: %w", err)
			}
			continue
		}
		msg, err := s.RecvMessageBytes(0)
		if err != nil {
			return fmt.Errorf("client: receive event: %w", err)
		}
		if len(msg) != 2 {
			continue
		}
		var e protocol.Event
		if err := json.Unmarshal(msg[1], &e); err != nil {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}
