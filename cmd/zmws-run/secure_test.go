package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/internal/curvetest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/runner"
	"github.com/zmws/zmws/server"
)

// TestRun_CurveAndAllowlistedEnvironment runs zmws-run over CURVE with a
// secret in its environment: a job running env sees only the allow-listed
// variables and its own ZMWS_* ones.
func TestRun_CurveAndAllowlistedEnvironment(t *testing.T) {
	f := curvetest.New(t, []curvetest.Entry{
		{Name: "alice", Role: auth.RoleClient, Rights: auth.Rights{Admin: true}},
		{Name: "runner", Role: auth.RoleWorker, Rights: auth.Rights{Services: []string{"ENV*"}}},
	})
	srv, err := server.New(server.Config{
		ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*",
		Broker: broker.Config{Heartbeat: 200 * time.Millisecond, Liveness: 5},
		Curve:  &server.Curve{Key: f.Broker, Keys: f.Keys(t)},
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "server").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "server", srv.Run)
	c, err := client.New(client.Config{Broker: srv.ClientEndpoint(), Curve: f.Client(t, "alice")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	t.Setenv("SECRET_TOKEN", "x")
	t.Setenv("ZMWS_RUN_CURVE_KEY", f.KeyFile("runner")) // the flag's variable, as an operator would set it
	t.Setenv("ZMWS_RUN_BROKER_KEY", f.PubFile("broker"))
	t.Setenv("ZMWSD_HTTP_TOKENS", "/etc/zmws/tokens.toml")
	start(t, srv, c, []string{"--service", "ENV", "--", "env"}, "ENV")
	start(t, srv, c, []string{"--inherit-env", "--service", "ENV-ALL", "--", "env"}, "ENV-ALL")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	allowed := map[string]bool{runner.EnvJobID: true, runner.EnvService: true, runner.EnvAttempt: true}
	for _, n := range runner.DefaultInheritEnv {
		allowed[n] = true
	}
	res, err := c.Call(ctx, "ENV", client.Request{}, nil)
	if err != nil || !res.OK() {
		t.Fatalf("SYNC-ENV: %+v, %v", res, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(res.Output)), "\n") {
		name, _, _ := strings.Cut(line, "=")
		if !allowed[name] && !strings.HasPrefix(name, "LC_") {
			t.Errorf("job saw %s, which is not on the allow-list", line)
		}
	}
	res, err = c.Call(ctx, "ENV-ALL", client.Request{}, nil)
	if err != nil || !res.OK() {
		t.Fatalf("SYNC-ENV-ALL: %+v, %v", res, err)
	}
	out := string(res.Output)
	if !strings.Contains(out, "SECRET_TOKEN=x") {
		t.Errorf("--inherit-env did not pass SECRET_TOKEN:\n%s", out)
	}
	for _, own := range []string{"ZMWS_RUN_CURVE_KEY", "ZMWS_RUN_BROKER_KEY", "ZMWSD_HTTP_TOKENS"} {
		if strings.Contains(out, own+"=") {
			t.Errorf("even with --inherit-env, zmws's own %s must not reach a job:\n%s", own, out)
		}
	}
}
