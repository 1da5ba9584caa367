package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/server"
)

// security is what the security flags set up.
type security struct {
	curve *server.Curve // nil: no CURVE
	// reload reads the reloadable parts again (keys); nil when there are
	// none. SIGHUP and SERVER-RELOAD call it.
	reload func() error
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
		sec.reload = func() error {
			if err := keys.Reload(); err != nil {
				return err
			}
			log.Info().Int("keys", keys.Current().Len()).Msg("authorized keys reloaded")
			return nil
		}
		log.Info().Str("curve_key", cli.CurveKey).Str("public_key", kp.Public).Int("keys", keys.Current().Len()).
			Msg("CURVE on: only authorized keys connect")
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

// reloadOnHUP runs reload on each SIGHUP until ctx ends. A failed reload
// keeps what was in force and is logged. Without anything to reload,
// SIGHUP is logged and ignored (never the default: end the process).
func reloadOnHUP(ctx context.Context, log zerolog.Logger, reload func() error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if reload == nil {
				log.Info().Msg("SIGHUP: nothing to reload (no --curve-key)")
				continue
			}
			if err := reload(); err != nil {
				log.Error().Err(err).Msg("reload on SIGHUP failed: what was in force stays")
			}
		}
	}
}
