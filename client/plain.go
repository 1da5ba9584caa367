package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/zmws/zmws/protocol"
)

// detectGrace is how long detection waits for an 18/MDP answer after the
// 7/MDP one came first. A broker answers one connection's requests in
// order, and the 18/MDP probe goes first, so it is normally there already.
const detectGrace = 100 * time.Millisecond

// known is what a client configured with d speaks before it has asked the
// broker: d, or "" for auto.
func known(d protocol.Dialect) protocol.Dialect {
	if d == protocol.DialectAuto {
		return ""
	}
	return d
}

// withoutMeta returns body without the meta frame it starts with, if any:
// a plain broker would hand the frame on to a worker as input.
func withoutMeta(body func(ref string) [][]byte) func(ref string) [][]byte {
	return func(ref string) [][]byte {
		b := body(ref)
		if len(b) > 0 && protocol.IsMeta(b[0]) {
			b = b[1:]
		}
		return b
	}
}

// plainAllows finds out what the broker speaks, if need be, and refuses
// what a plain broker cannot do: anything but Call and the mmi.* queries.
func (c *Client) plainAllows(ctx context.Context, op, service string) error {
	d, err := c.dialect(ctx, service)
	if err != nil || !d.Plain() {
		return err
	}
	if op == "query" && strings.HasPrefix(service, protocol.MMIPrefix) {
		return nil
	}
	return fmt.Errorf("%s %s: the broker at %s speaks %s, which has no job IDs or zmws queries (only Call and mmi.*): %w",
		op, service, c.cfg.Broker, d.Describe(), ErrUnsupported)
}

// dialect returns what the client speaks to the broker, asking the broker
// first if Config.Protocol is auto and no request has found out yet.
// service (the request about to go) is the name detection asks about.
func (c *Client) dialect(ctx context.Context, service string) (protocol.Dialect, error) {
	c.mu.Lock()
	d := c.speak
	c.mu.Unlock()
	if d != "" {
		return d, nil
	}
	c.detect.Lock()
	defer c.detect.Unlock()
	c.mu.Lock()
	d = c.speak
	c.mu.Unlock()
	if d != "" {
		return d, nil // another request found out meanwhile
	}
	d, err := c.detectDialect(ctx, service)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.speak = d
	c.mu.Unlock()
	return d, nil
}

// detectDialect asks the broker mmi.service about service twice at once:
// in 18/MDP with a meta frame holding a ref, then in 7/MDP. A zmws broker
// answers the first with the ref echoed; a plain 18/MDP broker answers it
// without (mdp2); a 7/MDP broker drops the 18/MDP header (the Guide's
// mdbroker logs "invalid message") and answers the second (mdp1). Nothing
// within Config.Timeout is an error naming the endpoint and both protocols;
// the next request asks again.
func (c *Client) detectDialect(ctx context.Context, service string) (protocol.Dialect, error) {
	name, _ := protocol.SplitSync(service)
	notify := make(chan struct{}, 1)
	v2, err := c.startForm(protocol.MMIService, protocol.Form{Version: protocol.V2, Delimiter: true}, func(ref string) [][]byte {
		return requestBody(protocol.Meta{Ref: ref}, []byte(name))
	}, notify)
	if err != nil {
		return "", err
	}
	defer c.finish(v2)
	v1, err := c.startForm(protocol.MMIService, protocol.Form{Version: protocol.V1, Delimiter: true}, func(string) [][]byte {
		return [][]byte{[]byte(name)}
	}, notify)
	if err != nil {
		return "", err
	}
	defer c.finish(v1)
	timeout := c.timeout()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var grace <-chan time.Time
	found := func(d protocol.Dialect, r reply) (protocol.Dialect, error) {
		status := ""
		if len(r.rest) > 0 {
			status = string(r.rest[0])
		}
		c.log.Info().Str("protocol", d.Describe()).Str(keyService, name).Str("mmi", status).Msg("broker protocol found")
		return d, nil
	}
	for {
		r, ok, err := v2.take()
		switch {
		case err != nil:
			return "", fmt.Errorf("client: find out what the broker at %s speaks: %w", c.cfg.Broker, err)
		case ok && r.byRef:
			return found(protocol.DialectZMWS, r)
		case ok && r.metaErr == nil && !r.hasMeta:
			return found(protocol.DialectMDP2, r)
		}
		if grace == nil && v1.pending() {
			grace = time.After(detectGrace)
		}
		select {
		case <-notify:
		case <-grace:
			r, _, _ := v1.take()
			return found(protocol.DialectMDP1, r)
		case <-t.C:
			if r, ok, _ := v1.take(); ok {
				return found(protocol.DialectMDP1, r)
			}
			return "", fmt.Errorf("client: the broker at %s answered mmi.service neither in 18/MDP (zmws or plain) nor in 7/MDP within %v: is it running, and does it answer 8/MMI? Else set the protocol (zmws, mdp1, mdp2): %w",
				c.cfg.Broker, timeout, ErrTimeout)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-c.done:
			return "", ErrClosed
		}
	}
}

// callPlain is CallWith for a plain broker: the request goes to the
// service as a worker announced it (no SYNC- prefix: a plain broker knows
// no asynchronous jobs) with the input as its one frame, and the reply,
// matched by service and order, is the output. A reply of the frames
// "FAIL", code, text (what zmws workers and brokers tell plain peers) is a
// failed Result, or an *Error for a refusal. A plain broker cannot be asked
// about a quiet job: the call waits, warning each Config.Liveness.
func (c *Client) callPlain(ctx context.Context, service string, req Request, hooks CallHooks) (*Result, error) {
	name, _ := protocol.SplitSync(service)
	if len(req.Params) > 0 || req.Key != "" || req.TTR != 0 || req.Retries != 0 || req.Owner != "" || req.Priority != 0 || req.Delay != 0 || !req.At.IsZero() {
		return nil, fmt.Errorf("call %s: parameters, keys, time-to-run, retries, owners, priorities and delays need a zmws broker: %w", name, ErrUnsupported)
	}
	input := req.Input
	if input == nil {
		input = []byte{} // one empty frame: a body, as MDP workers expect
	}
	cl, err := c.start(name, func(string) [][]byte { return [][]byte{input} }, nil)
	if err != nil {
		return nil, err
	}
	defer c.finish(cl)
	w := &syncWait{c: c, cl: cl, service: name, hooks: hooks, start: time.Now(), plain: true}
	return w.wait(ctx)
}

// plainResult is the Result of a plain broker's final reply.
func (w *syncWait) plainResult(body [][]byte) (*Result, error) {
	if len(body) == 3 && string(body[0]) == protocol.FailFrame {
		code, text := string(body[1]), string(body[2])
		switch code {
		case protocol.CodeUnknownService, protocol.CodeQueueFull, protocol.CodeBadRequest,
			protocol.CodeForbidden, protocol.CodeStoreUnavailable:
			return nil, refusal(protocol.Meta{Code: code, Error: text})
		}
		return &Result{Status: protocol.StatusFailed, Code: code, Error: text, Output: w.output}, nil
	}
	if w.hooks.OnPartial != nil {
		w.output = nil // Output holds what came with the final reply only
	}
	for _, f := range body {
		w.output = append(w.output, f...)
	}
	return &Result{Status: protocol.StatusComplete, Output: w.output}, nil
}
