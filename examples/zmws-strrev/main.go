// Command zmws-strrev is an example zmws worker for the STR-REV service: it
// reverses the job's "str" parameter, or without one its input, like rev(1).
//
//	go run ./examples/zmws-strrev --broker tcp://127.0.0.1:5556
//	curl 'localhost:5580/SYNC-STR-REV?str=Hello,+world'   # dlrow ,olleH
package main

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"syscall"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/examples/internal/workercmd"
	"github.com/zmws/zmws/worker"
)

// CLI is the command line.
type CLI struct {
	workercmd.Flags `embed:""`
	Service         string `help:"Service name to offer." default:"STR-REV" env:"ZMWS_WORKER_SERVICE"`
}

func main() {
	var cli CLI
	kctx := kong.Parse(&cli, kong.Name("zmws-strrev"),
		kong.Description("Example zmws worker: reverses the str parameter or the input, like rev."), kong.UsageOnError())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.FatalIfErrorf(workercmd.Run(ctx, cli.Flags, cli.Service, "zmws-example-strrev", worker.HandlerFunc(serve), os.Stderr))
}

// serve reverses the "str" parameter if the job has one, else its input
// frames joined.
func serve(ctx context.Context, j *worker.Job) ([]byte, error) {
	if s, ok := j.Params["str"]; ok {
		return rev([]byte(s)), nil
	}
	return rev(bytes.Join(j.Input, nil)), nil
}

// rev reverses each line of b rune by rune, as rev(1) does: newlines stay
// where they are, so a trailing newline stays at the end and none is added.
// Bytes that are not valid UTF-8 are kept, each as a unit of its own.
func rev(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		line := b
		nl := bytes.IndexByte(b, '\n')
		if nl >= 0 {
			line, b = b[:nl], b[nl+1:]
		} else {
			b = nil
		}
		out = appendReversed(out, line)
		if nl >= 0 {
			out = append(out, '\n')
		}
	}
	return out
}

// appendReversed appends the runes of line to out in reverse order.
func appendReversed(out, line []byte) []byte {
	for len(line) > 0 {
		_, size := utf8.DecodeLastRune(line)
		out = append(out, line[len(line)-size:]...)
		line = line[:len(line)-size]
	}
	return out
}
