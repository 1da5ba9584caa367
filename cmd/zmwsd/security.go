package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/server"
)

// security is what the security flags set up.
type security struct {
	curve *server.Curve // nil: no CURVE
	// reloaders read the reloadable parts again: the keys, the HTTP tokens
	// and certificate. SIGHUP runs them (reloadOnHUP), as does an admin's
	// SERVER-RELOAD (reload).
	reloaders []func() error
}

// reload runs every reloader; it fails if one does (each that fails keeps
// what it had).
func (sec *security) reload() error {
	var errs []error
	for _, r := range sec.reloaders {
		errs = append(errs, r())
	}
	return errors.Join(errs...)
}

// loadSecurity checks the security flags and loads the keys. It fails
// closed: a key file that is missing, garbled or readable by others, keys
// without --curve-key, or an endpoint beyond loopback without CURVE (unless
// --insecure) is an error naming the flag and file.
func loadSecurity(cli CLI, log zerolog.Logger) (security, error) {
	var sec security
	src := auth.KeySource{File: cli.Keys, ClientDir: cli.ClientKeys, WorkerDir: cli.WorkerKeys}
	switch {
	case cli.CurveKey == "" && !src.Empty():
		return sec, errors.New("--keys, --client-keys and --worker-keys need --curve-key (the broker's secret key file; make one with zmws keygen)")
	case cli.CurveKey != "":
		kp, err := curve.LoadSecret(cli.CurveKey)
		if err != nil {
			return sec, fmt.Errorf("--curve-key: %w", err)
		}
		keys, err := auth.NewKeys(src)
		if err != nil {
			return sec, err
		}
		sec.curve = &server.Curve{Key: kp, Keys: keys}
		sec.reloaders = append(sec.reloaders, func() error {
			if err := keys.Reload(); err != nil {
				return fmt.Errorf("keys (the keys in force stay): %w", err)
			}
			log.Info().Int("keys", keys.Current().Len()).Msg("authorized keys reloaded")
			return nil
		})
		log.Info().Str("curve_key", cli.CurveKey).Str("public_key", kp.Public).Int("keys", keys.Current().Len()).
			Msg("CURVE on: only authorized keys connect")
	}
	if host, _, err := net.SplitHostPort(cli.HTTPBind); cli.HTTPBind != "" && cli.HTTPTokens != "" && cli.HTTPTLSCert == "" && err == nil && !loopbackHost(host) {
		log.Warn().Str("address", cli.HTTPBind).Msg("HTTP tokens travel in the clear beyond loopback: give --http-tls-cert and --http-tls-key")
	}
	if cli.HTTPBind != "" && cli.HTTPTokens == "" && sec.curve != nil && !cli.Insecure {
		// The gateway reaches the broker in-process, past every key: with
		// CURVE on, an open gateway would let any local user do all that
		// the keys forbid.
		return sec, fmt.Errorf("--curve-key guards the ZeroMQ sockets, but the HTTP gateway on --http-bind %s would let anyone who reaches it past every key: give --http-tokens (zmws token add; docs/HTTP.md), or --http-bind '' to turn HTTP off, or --insecure to accept that", cli.HTTPBind)
	}
	if cli.HTTPBind != "" && cli.HTTPTokens == "" {
		// An address that does not parse fails at listen, with its own message.
		if host, _, err := net.SplitHostPort(cli.HTTPBind); err == nil && !loopbackHost(host) {
			if !cli.Insecure {
				return sec, fmt.Errorf("--http-bind %s is reachable beyond this machine without --http-tokens: anyone who reaches it could run every registered command and read, cancel and retry any job; give --http-tokens (zmws token add; docs/HTTP.md), or --insecure to accept that", cli.HTTPBind)
			}
			log.Warn().Str("address", cli.HTTPBind).Msg("INSECURE: HTTP gateway open beyond loopback without tokens (--insecure): anyone who reaches it is trusted")
		}
	}
	if sec.curve == nil {
		for _, ep := range []struct{ flag, endpoint string }{
			{"--client-bind", cli.ClientBind}, {"--worker-bind", cli.WorkerBind}, {"--events-bind", cli.EventsBind},
		} {
			if ep.endpoint == "" || localEndpoint(ep.endpoint) {
				continue
			}
			if !cli.Insecure {
				return sec, fmt.Errorf("%s %s is reachable beyond this machine without CURVE: anyone who reaches it could %s; give --curve-key with --keys, --client-keys or --worker-keys (docs/SECURITY.md), or --insecure to accept that",
					ep.flag, ep.endpoint, exposure(ep.flag))
			}
			log.Warn().Str("endpoint", ep.endpoint).Str("flag", ep.flag).
				Msg("INSECURE: endpoint open beyond loopback without CURVE (--insecure): anyone who reaches it is trusted")
		}
	}
	return sec, nil
}

// exposure says what an open endpoint gives away.
func exposure(flag string) string {
	switch flag {
	case "--worker-bind":
		return "register as a worker and receive other people's jobs and parameters"
	case "--events-bind":
		return "follow every job's events"
	}
	return "run every registered command and read, cancel and retry any job"
}

// localEndpoint reports whether a ZeroMQ endpoint is reachable only from
// this machine: tcp on a loopback address or localhost, ipc (a file) or
// inproc. A wildcard, an interface name or any other host is not.
func localEndpoint(ep string) bool {
	transport, addr, ok := strings.Cut(ep, "://")
	if !ok {
		return false
	}
	switch transport {
	case "inproc", "ipc":
		return true
	case "tcp":
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return false
		}
		return loopbackHost(host)
	}
	return false
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
