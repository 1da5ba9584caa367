// Package logging builds the root zerolog logger the commands share, so each
// binary offers the same --log-level and --log-format flags.
package logging

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Field keys used by every component. Values are stable: log pipelines key on them.
const (
	KeyService  = "service"
	KeyWorker   = "worker"
	KeyClient   = "client"
	KeyJob      = "job"
	KeyEndpoint = "endpoint"
	KeyElapsed  = "elapsed"
	KeyExitCode = "exit_code"
	// KeyToken is the name of an HTTP token (never the token itself).
	KeyToken = "token_name"
)

// New returns a logger writing to w at level ("trace", "debug", "info",
// "warn", "error") in format "json" (one object per line) or "console"
// (human-readable; coloured only when w is a terminal, so a console log
// redirected to a file or a pipe holds no escape codes).
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("log level %q: want trace, debug, info, warn or error", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !terminal(w)}
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want json or console", format)
	}
	formats.Do(func() {
		zerolog.TimeFieldFormat = time.RFC3339Nano
		zerolog.DurationFieldUnit = time.Millisecond
		zerolog.DurationFieldInteger = false
	})
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// terminal reports whether w is a terminal (a file whose descriptor is one).
func terminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// formats sets zerolog's process-wide formats once: loggers made later, on
// other goroutines (tests run commands in-process), must not race with
// loggers in use.
var formats sync.Once
