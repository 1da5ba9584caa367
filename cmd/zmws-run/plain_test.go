package main

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/mdptest"
	"github.com/zmws/zmws/internal/syncbuf"
	"github.com/zmws/zmws/protocol"
)

// zmws-run serves a broker written from the 7/MDP or 18/MDP spec alone
// (internal/mdptest), with a real command, and a client gets the answer
// through it: in auto mode zmws-run finds 7/MDP after the broker leaves its
// 18/MDP READY unanswered, the client finds it with mmi.service.
func TestRun_AgainstPlainBrokers(t *testing.T) {
	if _, err := exec.LookPath("rev"); err != nil {
		t.Skip("rev not installed")
	}
	cases := []struct {
		name     string
		v        mdptest.Version
		protocol string // zmws-run's --protocol
		speaks   string // zmws-run's log says it speaks this
	}{
		{"7/MDP auto", mdptest.MDP1, "auto", "7/MDP"},
		{"7/MDP mdp1", mdptest.MDP1, "mdp1", "7/MDP"},
		{"18/MDP auto", mdptest.MDP2, "auto", "18/MDP+zmws"}, // a meta frame the broker ignores
		{"18/MDP mdp2", mdptest.MDP2, "mdp2", "18/MDP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := mdptest.Start(t, tc.v, heartbeat)
			c, err := client.New(client.Config{Broker: b.Endpoint, Protocol: protocol.DialectAuto, Timeout: wait,
				Logger: zerolog.New(zerolog.NewTestWriter(t))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			var logs syncbuf.Buffer
			cli := parse(t, "--broker", b.Endpoint, "--heartbeat", heartbeat.String(), "--protocol", tc.protocol,
				"--service", "REV", "--", "rev")
			stop := startCLI(t, c, io.MultiWriter(&logs, zerolog.NewTestWriter(t)), cli, "REV")
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			for _, in := range []string{"Hello, world\n", "abc\n"} {
				res, err := c.Call(ctx, "REV", client.Request{Input: []byte(in)}, nil)
				if err != nil || !res.OK() || string(res.Output) != reverse(in) {
					t.Fatalf("REV %q: %+v, %v", in, res, err)
				}
			}
			if err := stop(); err != nil {
				t.Errorf("run: %v", err)
			}
			if !logged(logs.String(), `"protocol":"`+tc.speaks+`"`, `"message":"ready sent"`) {
				t.Errorf("zmws-run's log says no READY in %s:\n%s", tc.speaks, logs.String())
			}
			if tc.v == mdptest.MDP1 && tc.protocol == "auto" &&
				!logged(logs.String(), `"protocol":"18/MDP+zmws"`, `"next":"7/MDP"`, "trying the other protocol") {
				t.Errorf("zmws-run's log does not say it left 18/MDP for 7/MDP:\n%s", logs.String())
			}
		})
	}
}

// heartbeat is the plain brokers' and zmws-run's: auto mode gives up on
// 18/MDP after 3 of them.
const heartbeat = 100 * time.Millisecond

// logged reports whether a line of log holds every one of parts.
func logged(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// reverse is rev's output for a line.
func reverse(line string) string {
	r := []rune(strings.TrimSuffix(line, "\n"))
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r) + "\n"
}
