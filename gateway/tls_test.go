package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zmws/zmws/internal/tlstest"
)

func TestGateway_TLS(t *testing.T) {
	dir := t.TempDir()
	cert, certFile, keyFile := tlstest.Write(t, dir)
	certs, err := LoadCerts(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts, toks := testTokens(t)
	g := newGateway(t, authBackend(), Config{Tokens: ts, TLS: certs})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	base := "https://" + ln.Addr().String()

	get := func(c *http.Client, path, token string) (*http.Response, string, error) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, strings.TrimSpace(string(b)), err
	}

	c := tlstest.Client(cert, waitLong)
	resp, body, err := get(c, "/healthz", "")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != `{"status":"ok"}` || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("healthz over TLS: %d %s %+v", resp.StatusCode, body, resp.TLS)
	}
	if resp, _, err := get(c, "/SERVER-SERVICES", ""); err != nil || resp.StatusCode != 401 {
		t.Fatalf("SERVER-SERVICES without a token: %v %v", resp, err)
	}
	if resp, body, err := get(c, "/SYNC-STR-REV", toks["str"]); err != nil || resp.StatusCode != 200 || body != "done" {
		t.Fatalf("SYNC-STR-REV with a token: %v %q %v", resp, body, err)
	}

	// A client that does not trust the certificate refuses it.
	plain := &http.Client{Timeout: waitLong, Transport: &http.Transport{}}
	var uae x509.UnknownAuthorityError
	if _, _, err := get(plain, "/healthz", ""); !errors.As(err, &uae) {
		t.Errorf("client with the system roots: %v, want an unknown authority", err)
	}
	// TLS 1.1 is refused.
	old := tlstest.Client(cert, waitLong)
	old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	if _, _, err := get(old, "/healthz", ""); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	// Plain HTTP on the TLS port gets net/http's 400.
	if resp, err := plain.Get("http://" + ln.Addr().String() + "/healthz"); err != nil {
		t.Errorf("plain HTTP on the TLS port: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port: %d", resp.StatusCode)
		}
	}

	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl is not on PATH: the check with curl --cacert is skipped")
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "*", "--cacert", certFile,
			"-H", "Authorization: Bearer "+toks["all"], base+"/SERVER-SERVICES").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "[]" {
			t.Errorf("curl --cacert: %v: %s", err, out)
		}
		// Without the certificate, curl refuses the server.
		if out, err := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "*", base+"/healthz").CombinedOutput(); err == nil {
			t.Errorf("curl without --cacert was served: %s", out)
		}
	})

	// Reload: a renewed certificate serves new connections; a broken one
	// leaves the old in place.
	renewed, _, _ := tlstest.Write(t, dir)
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	resp, _, err = get(tlstest.Client(renewed, waitLong), "/healthz", "")
	if err != nil || !resp.TLS.PeerCertificates[0].Equal(renewed) {
		t.Fatalf("after Reload: %v %v", resp, err)
	}
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := certs.Reload(); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("Reload of a broken key: %v", err)
	}
	if _, _, err := get(tlstest.Client(renewed, waitLong), "/healthz", ""); err != nil {
		t.Errorf("after a failed Reload: %v", err)
	}
}

func TestLoadCerts_Errors(t *testing.T) {
	dir := t.TempDir()
	_, certFile, keyFile := tlstest.Write(t, dir)
	if _, err := LoadCerts(certFile, ""); err == nil {
		t.Error("a certificate without a key loaded")
	}
	if _, err := LoadCerts(keyFile, certFile); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("swapped files: %v", err)
	}
	missing := filepath.Join(dir, "nope.pem")
	if _, err := LoadCerts(missing, keyFile); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing certificate: %v", err)
	}
}
