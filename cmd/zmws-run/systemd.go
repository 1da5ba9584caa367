package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// What zmws-run tells systemd (sd_notify(3); examples/systemd/zmws-run@.service
// is Type=notify): READY=1 once every slot of every service has sent its
// READY to the broker (worker.Config.Ready; not once a broker has answered,
// so a worker starts while its broker is away), STOPPING=1 when it begins to
// stop, and a STATUS= line with each. Outside systemd (no NOTIFY_SOCKET)
// nothing is sent. There is no watchdog: the broker already drops a slot
// that stops heartbeating and gives its job to another worker.

// notify sends states, one per line, to systemd; a failure is logged.
func notify(log zerolog.Logger, states ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil {
		log.Warn().Err(err).Str("socket", os.Getenv("NOTIFY_SOCKET")).Msg("sd_notify")
	}
}

// servingStatus is the STATUS= line once zmws-run is ready.
func servingStatus(services []string, slots int, brokers []string) string {
	names := strings.Join(services, ", ")
	if len(services) > 5 {
		names = strings.Join(services[:5], ", ") + fmt.Sprintf(" and %d more", len(services)-5)
	}
	plural := "s"
	if slots == 1 {
		plural = ""
	}
	return fmt.Sprintf("STATUS=serving %s (%d slot%s) for %s", names, slots, plural, strings.Join(brokers, ", "))
}
