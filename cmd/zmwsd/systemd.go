package main

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/store"
)

// What zmwsd tells systemd (sd_notify(3), examples/systemd/zmwsd.service is
// Type=notify): STATUS= lines while it starts, READY=1 once its sockets are
// bound (after the CURVE probe) and the journal loaded, STOPPING=1 when it
// begins to stop, and WATCHDOG=1 from the broker's loop when the unit sets
// WatchdogSec=. Outside systemd (no NOTIFY_SOCKET) all of it is a no-op.

// notify sends states, one per line, to systemd. A failure is logged, never
// fatal: zmwsd serves whether or not systemd hears it.
func notify(log zerolog.Logger, states ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil {
		log.Warn().Err(err).Str("socket", os.Getenv("NOTIFY_SOCKET")).Msg("sd_notify")
	}
}

// watchdog returns what server.Config.Alive and AliveEvery should be when
// systemd asks for keep-alives (WatchdogSec=, so WATCHDOG_USEC for this
// process): WATCHDOG=1, three times per interval. Without a watchdog, nil.
func watchdog(log zerolog.Logger) (alive func(), every time.Duration) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn().Err(err).Msg("systemd watchdog: ignoring WATCHDOG_USEC")
		return nil, 0
	}
	if interval <= 0 {
		return nil, 0
	}
	log.Info().Dur("interval", interval).Msg("systemd watchdog on: the broker loop sends keep-alives")
	return func() { notify(log, daemon.SdNotifyWatchdog) }, interval / 3
}

// backupDir is the folder of the data dir that SIGUSR1 writes the journal's
// backup into (backupDir/zmws.db): zmwsd may write nowhere else under
// ProtectSystem=strict.
const backupDir = "backup"

// backupOnUSR1 writes a consistent copy of the journal to the file to each
// time zmwsd gets SIGUSR1 (store.Bolt.Backup: the new copy replaces the old
// once it is whole and checked), until ctx ends or stop is called (stop
// waits for a backup under way). Signals that come during a backup make one
// more after it. journal nil (no --data-dir) logs that there is nothing to
// back up. SIGUSR1 is caught from the call on, so it never ends zmwsd (its
// default action).
func backupOnUSR1(ctx context.Context, log zerolog.Logger, journal *store.Bolt, to string) (stop func()) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(usr1)
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
			}
			if journal == nil {
				log.Warn().Msg("sigusr1: no journal to back up (--data-dir is empty)")
				continue
			}
			log.Info().Str("journal", journal.Path()).Str("to", to).Msg("journal backup started")
			rep, err := journal.Backup(to)
			if err != nil {
				log.Error().Err(err).Msg("journal backup failed")
				continue
			}
			log.Info().Str("to", rep.Path).Int64("size", rep.Size).Int("jobs", rep.Jobs).
				Dur("elapsed", rep.Elapsed).Msg("journal backup written")
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
