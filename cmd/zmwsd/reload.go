package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/gateway"
)

// httpSecurity loads --http-tokens and --http-tls-cert/--http-tls-key for
// the gateway and returns what reloads them. tokens is nil (the interface)
// without --http-tokens and certs is nil without TLS. An error names the
// flag and the file; zmwsd then does not start.
func httpSecurity(cli CLI, log zerolog.Logger) (tokens gateway.Tokens, certs *gateway.Certs, reloaders []func() error, err error) {
	if cli.HTTPBind == "" {
		if cli.HTTPTokens != "" || cli.HTTPTLSCert != "" || cli.HTTPTLSKey != "" {
			log.Warn().Msg("--http-tokens, --http-tls-cert and --http-tls-key are ignored: --http-bind is empty")
		}
		return nil, nil, nil, nil
	}
	if cli.HTTPTokens != "" {
		ts, err := auth.NewTokenSet(cli.HTTPTokens)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--http-tokens: %w", err)
		}
		log.Info().Str("file", ts.Path()).Int("tokens", ts.Tokens().Len()).Msg("http tokens loaded")
		tokens = ts
		reloaders = append(reloaders, func() error {
			if err := ts.Reload(); err != nil {
				return fmt.Errorf("--http-tokens: %w", err)
			}
			log.Info().Str("file", ts.Path()).Int("tokens", ts.Tokens().Len()).Msg("http tokens reloaded")
			return nil
		})
	}
	switch {
	case cli.HTTPTLSCert != "" && cli.HTTPTLSKey == "":
		return nil, nil, nil, errors.New("--http-tls-cert needs --http-tls-key (the certificate's private key)")
	case cli.HTTPTLSCert == "" && cli.HTTPTLSKey != "":
		return nil, nil, nil, errors.New("--http-tls-key needs --http-tls-cert (the certificate for the key)")
	case cli.HTTPTLSCert != "":
		if certs, err = gateway.LoadCerts(cli.HTTPTLSCert, cli.HTTPTLSKey); err != nil {
			return nil, nil, nil, fmt.Errorf("--http-tls-cert/--http-tls-key: %w", err)
		}
		logCert(log, certs, "http tls certificate loaded")
		reloaders = append(reloaders, func() error {
			if err := certs.Reload(); err != nil {
				return fmt.Errorf("--http-tls-cert/--http-tls-key: %w", err)
			}
			logCert(log, certs, "http tls certificate reloaded")
			return nil
		})
	}
	return tokens, certs, reloaders, nil
}

// logCert logs what certificate the gateway now serves, warning when it is
// not valid now.
func logCert(log zerolog.Logger, certs *gateway.Certs, msg string) {
	leaf := certs.Certificate().Leaf
	if leaf == nil {
		log.Info().Msg(msg)
		return
	}
	ev := log.Info()
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		ev = log.Warn().Bool("valid_now", false)
	}
	ev.Str("subject", leaf.Subject.String()).Time("not_after", leaf.NotAfter).Msg(msg)
}

// reloadOnHUP runs the reloaders, one after another, each time zmwsd gets
// SIGHUP, until ctx ends or stop is called (stop waits for a reload under
// way). A reloader that fails keeps what it reloads as it was and returns
// why; that is logged, and the other reloaders still run. SIGHUP is caught
// from the call on, so it never stops zmwsd, even with no reloaders.
func reloadOnHUP(ctx context.Context, log zerolog.Logger, reloaders ...func() error) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			failed := 0
			for _, reload := range reloaders {
				if err := reload(); err != nil {
					failed++
					log.Error().Err(err).Msg("reload failed; keeping the old")
				}
			}
			log.Info().Int("reloaded", len(reloaders)-failed).Int("failed", failed).Msg("sighup handled")
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
