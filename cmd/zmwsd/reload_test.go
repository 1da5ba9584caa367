package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/internal/tlstest"
	"github.com/zmws/zmws/internal/zmqtest"
)

func TestRun_HTTPSecurityErrors(t *testing.T) {
	dir := t.TempDir()
	_, certFile, keyFile := tlstest.Write(t, dir)
	missing := filepath.Join(dir, "missing-tokens.toml")
	broken := filepath.Join(dir, "broken.toml")
	if err := os.WriteFile(broken, []byte("[[token]]\nname = \"x\"\nhash = \"md5:00\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--http-tokens=" + missing}, []string{"--http-tokens", missing}},
		{[]string{"--http-tokens=" + broken}, []string{"--http-tokens", broken, `token 1 ("x")`, "hash"}},
		{[]string{"--http-tls-cert=" + certFile}, []string{"--http-tls-cert needs --http-tls-key"}},
		{[]string{"--http-tls-key=" + keyFile}, []string{"--http-tls-key needs --http-tls-cert"}},
		{[]string{"--http-tls-cert=" + filepath.Join(dir, "nope.pem"), "--http-tls-key=" + keyFile}, []string{"--http-tls-cert", "nope.pem"}},
		{[]string{"--http-tls-cert=" + keyFile, "--http-tls-key=" + certFile}, []string{"--http-tls-cert", keyFile}},
	} {
		cli := parse(t, append([]string{"--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*",
			"--events-bind=", "--http-bind=127.0.0.1:0"}, tc.args...)...)
		err := run(context.Background(), cli, &bytes.Buffer{}, nil)
		if err == nil {
			t.Errorf("%v: zmwsd started", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: err %q does not mention %q", tc.args, err, w)
			}
		}
	}
}

func TestCLI_HTTPSecurityEnvironment(t *testing.T) {
	t.Setenv("ZMWSD_HTTP_TOKENS", "/etc/zmws/tokens.toml")
	t.Setenv("ZMWSD_HTTP_TLS_CERT", "/etc/zmws/cert.pem")
	t.Setenv("ZMWSD_HTTP_TLS_KEY", "/etc/zmws/key.pem")
	cli := parse(t)
	if cli.HTTPTokens != "/etc/zmws/tokens.toml" || cli.HTTPTLSCert != "/etc/zmws/cert.pem" || cli.HTTPTLSKey != "/etc/zmws/key.pem" {
		t.Fatalf("%+v", cli)
	}
}

// TestRun_TokensTLSAndSIGHUP: zmwsd serves HTTPS with tokens, and SIGHUP
// reloads the tokens file and the certificate, keeping the old ones when
// the new ones do not load.
func TestRun_TokensTLSAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cert, certFile, keyFile := tlstest.Write(t, dir)
	tokensFile := filepath.Join(dir, "tokens.toml")
	admin, err := auth.AddToken(tokensFile, "admin", auth.Rights{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	cli := parse(t, "--client-bind=tcp://127.0.0.1:*", "--worker-bind=tcp://127.0.0.1:*", "--events-bind=",
		"--http-bind=127.0.0.1:0", "--http-tokens="+tokensFile, "--http-tls-cert="+certFile, "--http-tls-key="+keyFile)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	_, httpAddr, done := start(t, ctx, cli, &logs)
	base := "https://" + httpAddr

	get := func(c *http.Client, path, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	c := tlstest.Client(cert, 10*time.Second)
	if status, body := get(c, "/healthz", ""); status != 200 {
		t.Fatalf("healthz: %d %s", status, body)
	}
	if status, _ := get(c, "/SERVER-SERVICES", ""); status != 401 {
		t.Fatalf("SERVER-SERVICES without a token: %d", status)
	}
	if status, body := get(c, "/SERVER-JOBS", admin); status != 200 || body != "[]" {
		t.Fatalf("SERVER-JOBS with the admin token: %d %s", status, body)
	}

	// A token added while zmwsd runs works after SIGHUP, as does a renewed
	// certificate.
	ci, err := auth.AddToken(tokensFile, "ci", auth.Rights{Services: []string{"STR-*"}})
	if err != nil {
		t.Fatal(err)
	}
	renewed, _, _ := tlstest.Write(t, dir)
	hup(t, &logs, 1)
	if resp, err := c.Get(base + "/healthz"); err == nil { // c trusts only the old certificate
		resp.Body.Close()
		t.Fatal("the old certificate still served after SIGHUP")
	}
	c = tlstest.Client(renewed, 10*time.Second)
	if status, body := get(c, "/SERVER-SERVICES", ci); status != 200 {
		t.Fatalf("new token after SIGHUP: %d %s", status, body)
	}
	if status, _ := get(c, "/SERVER-JOBS", ci); status != 403 {
		t.Fatalf("submit-only token on SERVER-JOBS: %d", status)
	}

	// Files that do not load keep the tokens and certificate in use.
	if err := os.WriteFile(tokensFile, []byte("[[token]]\nnam = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup(t, &logs, 2)
	if status, body := get(c, "/SERVER-SERVICES", ci); status != 200 {
		t.Fatalf("after a failed reload: %d %s", status, body)
	}
	for _, want := range []string{`"message":"http tokens reloaded"`, `"message":"http tls certificate reloaded"`,
		`"message":"reload failed; keeping the old"`, "unknown key token.nam", keyFile} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for _, tok := range []string{admin, ci} {
		if strings.Contains(logs.String(), tok) {
			t.Fatal("the log holds a token")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// hup sends SIGHUP to this process (run catches it) and waits until the
// log shows the n-th one handled.
func hup(t *testing.T, logs *syncBuffer, n int) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	zmqtest.Eventually(t, fmt.Sprintf("SIGHUP %d handled", n), 10*time.Second, func() bool {
		return strings.Count(logs.String(), `"message":"sighup handled"`) >= n
	})
}
