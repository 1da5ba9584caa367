package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
)

// Certs holds the gateway's TLS certificate and key, read from PEM files,
// and swaps in a new pair on Reload (a renewed certificate is picked up
// without a restart). Handshakes and reloads may run concurrently: each
// handshake uses the pair in place when it starts.
type Certs struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCerts reads a PEM certificate (chain) and its private key.
func LoadCerts(certFile, keyFile string) (*Certs, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("gateway: TLS needs both a certificate and a key file")
	}
	c := &Certs{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again. On an error the pair in use stays.
func (c *Certs) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("gateway: TLS certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// Certificate returns the pair in use; its Leaf is the parsed certificate.
func (c *Certs) Certificate() *tls.Certificate { return c.cur.Load() }

// GetCertificate is a tls.Config.GetCertificate that answers with the pair
// in use.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// tlsConfig is the server side of the gateway's TLS: 1.2 or later, HTTP/1.1
// (the streaming, trailers and per-chunk deadlines are what the tests run
// over it).
func (c *Certs) tlsConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: c.GetCertificate,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
	}
}
