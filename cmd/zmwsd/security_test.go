package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/curvetest"
	"github.com/zmws/zmws/internal/zmqtest"
)

func TestRun_RefusesBadCurveKeys(t *testing.T) {
	f := curvetest.New(t, []curvetest.Entry{{Name: "w", Role: auth.RoleWorker}})
	dir := t.TempDir()
	garbled := filepath.Join(dir, "garbled.key")
	if err := os.WriteFile(garbled, []byte("# broker\nnot-a-z85-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readable := filepath.Join(dir, "readable.key")
	secret, err := os.ReadFile(f.KeyFile("broker"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readable, secret, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(readable, 0o644) // past the umask
	mismatched := filepath.Join(dir, "w.key")
	if err := os.WriteFile(mismatched, secret, 0o600); err != nil { // the broker's secret beside w's .pub
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w.pub"), []byte(f.Pair(t, "w").Public+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badKeys := filepath.Join(dir, "keys.toml")
	if err := os.WriteFile(badKeys, []byte("[[key]]\nname = \"x\"\nrole = \"client\"\npublic = \"short\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.key")
	ok := "--curve-key=" + f.KeyFile("broker")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--curve-key=" + missing, "--keys=" + f.KeysFile}, missing},
		{[]string{"--curve-key=" + garbled, "--keys=" + f.KeysFile}, garbled},
		{[]string{"--curve-key=" + readable, "--keys=" + f.KeysFile}, "chmod 600 " + readable},
		{[]string{"--curve-key=" + mismatched, "--keys=" + f.KeysFile}, "does not match its public key " + filepath.Join(dir, "w.pub")},
		{[]string{ok}, "no authorized keys"},
		{[]string{ok, "--keys=" + badKeys}, badKeys},
		{[]string{ok, "--keys=" + filepath.Join(dir, "nokeys.toml")}, "nokeys.toml"},
		{[]string{ok, "--client-keys=" + filepath.Join(dir, "nodir")}, "--client-keys"},
		{[]string{"--keys=" + f.KeysFile}, "need --curve-key"},
	} {
		cli := parse(t, append(tc.args, "--http-bind=", "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind=")...)
		err := run(context.Background(), cli, &bytes.Buffer{}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want it to name %q", tc.args, err, tc.want)
		}
	}
}

// TestRun_CurveNeedsHTTPTokens: the gateway is an in-process client the
// broker trusts, so with CURVE on it must want tokens, on loopback too.
func TestRun_CurveNeedsHTTPTokens(t *testing.T) {
	f := curvetest.New(t, []curvetest.Entry{{Name: "c", Role: auth.RoleClient}})
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind=", "--http-bind=127.0.0.1:0",
		"--curve-key="+f.KeyFile("broker"), "--keys="+f.KeysFile)
	err := run(context.Background(), cli, &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "--http-tokens") || !strings.Contains(err.Error(), "--http-bind") {
		t.Fatalf("CURVE with an open gateway: %v, want a refusal naming --http-tokens", err)
	}
}

func TestRun_RefusesOpenEndpointsWithoutCurve(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--client-bind=tcp://0.0.0.0:*"}, "--client-bind tcp://0.0.0.0:*"},
		{[]string{"--worker-bind=tcp://*:*"}, "--worker-bind tcp://*:*"},
		{[]string{"--events-bind=tcp://[::]:*"}, "--events-bind"},
		{[]string{"--client-bind=tcp://eth0:*"}, "--client-bind"},
		{[]string{"--http-bind=0.0.0.0:0"}, "--http-bind 0.0.0.0:0"},
		{[]string{"--http-bind=:0"}, "--http-bind :0"},
	} {
		base := []string{"--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind=", "--http-bind=127.0.0.1:0"}
		cli := parse(t, append(base, tc.args...)...)
		err := run(context.Background(), cli, &bytes.Buffer{}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("%v: err %v, want a refusal naming %q and --insecure", tc.args, err, tc.want)
		}
	}
	// --insecure lets it start, loudly.
	cli := parse(t, "--client-bind=tcp://0.0.0.0:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind=", "--http-bind=", "--insecure")
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	_, _, done := start(t, ctx, cli, &logs)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "INSECURE") {
		t.Errorf("no INSECURE warning in the log:\n%s", logs.String())
	}
	// Loopback and local transports need nothing.
	for _, ep := range []string{"tcp://127.0.0.1:1", "tcp://localhost:1", "tcp://[::1]:1", "ipc:///tmp/x", "inproc://x"} {
		if !localEndpoint(ep) {
			t.Errorf("%s is local", ep)
		}
	}
}

// TestRun_CurveAndSIGHUP runs zmwsd with CURVE, lets an authorized client
// in, refuses another, and adds that one's key with SIGHUP.
func TestRun_CurveAndSIGHUP(t *testing.T) {
	f := curvetest.New(t, []curvetest.Entry{{Name: "alice", Role: auth.RoleClient, Rights: auth.Rights{Admin: true}}}, "carol")
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind=", "--http-bind=",
		"--curve-key="+f.KeyFile("broker"), "--keys="+f.KeysFile)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	srv, _, done := start(t, ctx, cli, &logs)
	defer func() { cancel(); <-done }()
	query := func(name string) error {
		c, err := client.New(client.Config{Broker: srv.ClientEndpoint(), Curve: f.Client(t, name), Retries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Services(ctx)
		return err
	}
	if err := query("alice"); err != nil {
		t.Fatalf("alice: %v", err)
	}
	if err := query("carol"); !errors.Is(err, curve.ErrRefused) {
		t.Fatalf("carol before SIGHUP: %v, want refused", err)
	}
	f.WriteKeys(t, []curvetest.Entry{
		{Name: "alice", Role: auth.RoleClient, Rights: auth.Rights{Admin: true}},
		{Name: "carol", Role: auth.RoleClient},
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	zmqtest.Eventually(t, "the keys reloaded after SIGHUP", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "authorized keys reloaded")
	})
	if err := query("carol"); err != nil {
		t.Fatalf("carol after SIGHUP: %v", err)
	}
}

// TestMain lets the test binary play zmwsd itself (ZMWSD_TEST_MAIN=1), so
// a test can see its exit status and what it prints.
func TestMain(m *testing.M) {
	if os.Getenv("ZMWSD_TEST_MAIN") == "1" {
		os.Args = append([]string{"zmwsd"}, strings.Fields(os.Getenv("ZMWSD_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestMain_ExitsNonZeroNamingTheKeyFile runs the real main with a
// world-readable secret key: it must exit non-zero, the file named.
func TestMain_ExitsNonZeroNamingTheKeyFile(t *testing.T) {
	f := curvetest.New(t, []curvetest.Entry{{Name: "w", Role: auth.RoleWorker}})
	if err := os.Chmod(f.KeyFile("broker"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range []string{
		"--curve-key " + f.KeyFile("broker") + " --keys " + f.KeysFile + " --http-bind= --data-dir=",
		"--client-bind tcp://0.0.0.0:0 --http-bind= --data-dir=",
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ZMWSD_TEST_MAIN=1", "ZMWSD_TEST_ARGS="+args)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("zmwsd %s: %v, want a non-zero exit; output:\n%s", args, err, out)
		}
		want := f.KeyFile("broker")
		if strings.Contains(args, "0.0.0.0") {
			want = "--insecure"
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("zmwsd %s printed %q, want it to name %s", args, out, want)
		}
	}
}
