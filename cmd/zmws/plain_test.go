package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/mdptest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/runner"
	"github.com/zmws/zmws/worker"
)

// zmwsAt runs the CLI in-process against broker, as rig.zmws does.
func zmwsAt(t *testing.T, broker, stdin string, args ...string) (string, string, error) {
	t.Helper()
	r := rig{client: broker, events: "tcp://127.0.0.1:1"}
	return r.zmws(t, stdin, args...)
}

// `zmws run` gets its answer through a broker written from the 7/MDP or
// 18/MDP spec (internal/mdptest), from the runner running rev behind a
// worker in auto mode; what a plain broker cannot do says so.
func TestCLI_RunThroughPlainBroker(t *testing.T) {
	if _, err := exec.LookPath("rev"); err != nil {
		t.Skip("rev not installed")
	}
	for _, v := range []mdptest.Version{mdptest.MDP1, mdptest.MDP2} {
		t.Run(map[mdptest.Version]string{mdptest.MDP1: "7-MDP", mdptest.MDP2: "18-MDP"}[v], func(t *testing.T) {
			b := mdptest.Start(t, v, 100*time.Millisecond)
			tpl, err := runner.New(runner.Spec{Service: "REV", Command: runner.Command{Args: []string{"rev"}}}, runner.Defaults{})
			if err != nil {
				t.Fatal(err)
			}
			log := zerolog.New(zerolog.NewTestWriter(t))
			w, err := worker.New(worker.Config{Brokers: []string{b.Endpoint}, Service: "REV",
				Handler: runner.NewHandler(tpl, runner.Config{Logger: log}), Heartbeat: 100 * time.Millisecond, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			zmqtest.Go(t, "worker", w.Run)
			zmqtest.Eventually(t, "REV ready at the plain broker", 5*time.Second, func() bool { return b.Ready() >= 1 })

			out, errOut, err := zmwsAt(t, b.Endpoint, "hello\n", "run", "REV")
			if err != nil || out != "olleh\n" {
				t.Fatalf("echo hello | zmws run REV: %q %v (stderr %q)", out, err, errOut)
			}
			// A SYNC- name the user typed goes as the worker announced it.
			out, _, err = zmwsAt(t, b.Endpoint, "abc\n", "--protocol", map[mdptest.Version]string{mdptest.MDP1: "mdp1", mdptest.MDP2: "mdp2"}[v], "run", "SYNC-REV")
			if err != nil || out != "cba\n" {
				t.Fatalf("zmws --protocol … run SYNC-REV: %q %v", out, err)
			}
			if _, _, err := zmwsAt(t, b.Endpoint, "", "run", "REV", "str=x"); !errors.Is(err, client.ErrUnsupported) {
				t.Errorf("zmws run REV str=x: %v, want ErrUnsupported", err)
			}
			if _, _, err := zmwsAt(t, b.Endpoint, "x", "submit", "REV"); !errors.Is(err, client.ErrUnsupported) {
				t.Errorf("zmws submit REV: %v, want ErrUnsupported", err)
			}
		})
	}
}

// Told zmws, `zmws run` against a 7/MDP broker, which drops every
// 18/MDP message, ends at --timeout instead of hanging; so does auto
// with no broker at all, or with the client's error naming the endpoint
// and both protocols when its detection, bounded by the same 300 ms,
// gives up first.
func TestCLI_RunThrough7MDPNeverHangs(t *testing.T) {
	b := mdptest.Start(t, mdptest.MDP1, 100*time.Millisecond)
	for _, tc := range []struct{ ep, protocol string }{{b.Endpoint, "zmws"}, {zmqtest.FreeEndpoint(t), "auto"}} {
		_, errOut, err := zmwsAt(t, tc.ep, "", "--protocol", tc.protocol, "--timeout", "300ms", "run", "REV")
		var ee exitError
		timedOut := errors.As(err, &ee) && ee.code == exitTimeout && strings.Contains(errOut, "no answer within --timeout")
		named := errors.Is(err, client.ErrTimeout) && strings.Contains(err.Error(), tc.ep) && strings.Contains(err.Error(), "7/MDP")
		if !timedOut && !named {
			t.Errorf("zmws --protocol %s run at %s: %v (stderr %q), want the timeout exit", tc.protocol, tc.ep, err, errOut)
		}
	}
}
