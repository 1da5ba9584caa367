package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/curvetest"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/server"
)

func TestCLI_Keygen(t *testing.T) {
	var r rig // no broker
	dir := t.TempDir()
	out, errOut, err := r.zmws(t, "", "keygen", "alice", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := curve.LoadSecret(filepath.Join(dir, "alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != kp.Public || strings.Contains(out+errOut, kp.Secret) {
		t.Errorf("stdout %q, want the public key only (stderr %q)", out, errOut)
	}
	if _, _, err := r.zmws(t, "", "keygen", "alice", "--dir", dir); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("second keygen: %v", err)
	}
}

// TestCLI_CurveKeysAndReload: the CLI speaks CURVE with --broker-key and
// --curve-key, is refused clearly with a key the broker does not know, and
// an admin key reloads the broker's keys.
func TestCLI_CurveKeysAndReload(t *testing.T) {
	f := curvetest.New(t, []curvetest.Entry{
		{Name: "admin", Role: auth.RoleClient, Rights: auth.Rights{Admin: true}},
		{Name: "user", Role: auth.RoleClient},
	}, "newcomer")
	keys := f.Keys(t)
	srv, err := server.New(server.Config{ClientBind: "tcp://127.0.0.1:*", WorkerBind: "tcp://127.0.0.1:*",
		Curve: &server.Curve{Key: f.Broker, Keys: keys}, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	zmqtest.Go(t, "server", srv.Run)
	r := rig{client: srv.ClientEndpoint()}
	as := func(name string, args ...string) (string, string, error) {
		return r.zmws(t, "", append([]string{"--broker-key", f.PubFile("broker"), "--curve-key", f.KeyFile(name)}, args...)...)
	}
	if _, _, err := as("user", "services"); err != nil {
		t.Fatalf("user: %v", err)
	}
	start := time.Now()
	_, _, err = as("newcomer", "services")
	if !errors.Is(err, curve.ErrRefused) || !strings.Contains(err.Error(), "broker refused our key ("+srv.ClientEndpoint()+"): not authorized") {
		t.Fatalf("newcomer: %v, want a refusal naming the endpoint", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	if _, _, err := as("user", "keys", "reload"); err == nil || !strings.Contains(err.Error(), `"user" may not use SERVER-RELOAD`) {
		t.Errorf("reload by a non-admin key: %v", err)
	}
	f.WriteKeys(t, []curvetest.Entry{
		{Name: "admin", Role: auth.RoleClient, Rights: auth.Rights{Admin: true}},
		{Name: "newcomer", Role: auth.RoleClient},
	})
	if _, errOut, err := as("admin", "keys", "reload"); err != nil || !strings.Contains(errOut, "keys reloaded") {
		t.Fatalf("reload by the admin: %v %q", err, errOut)
	}
	if _, _, err := as("newcomer", "services"); err != nil {
		t.Errorf("newcomer after the reload: %v", err)
	}
	if _, _, err := r.zmws(t, "", "--broker-key", f.PubFile("broker"), "services"); err == nil || !strings.Contains(err.Error(), "--curve-key") {
		t.Errorf("--broker-key alone: %v", err)
	}
}

func TestCLI_ServicesForget(t *testing.T) {
	r := newRig(t)
	out, _, err := r.zmws(t, "", "services")
	if err != nil || !strings.Contains(out, "STR-REV") {
		t.Fatalf("services: %v %q", err, out)
	}
	if _, _, err := r.zmws(t, "", "services", "forget", "STR-REV"); err == nil || !strings.Contains(err.Error(), "workers") {
		t.Errorf("forget a service with a worker: %v, want a refusal saying why", err)
	}
	if _, _, err := r.zmws(t, "", "services", "forget", "NOPE"); err == nil || !strings.Contains(err.Error(), "no service NOPE") {
		t.Errorf("forget an unknown service: %v", err)
	}
}
