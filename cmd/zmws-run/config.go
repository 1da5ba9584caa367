package main

import (
	"errors"
	"fmt"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/config"
	"github.com/zmws/zmws/runner"
)

// BeforeResolve reads the installation file before kong resolves the
// flags, picks its [[worker]] entry (--worker, or the only one), and lets
// the entry set the flags the command line and the environment leave unset.
func (c *CLI) BeforeResolve(kctx *kong.Context) error {
	f, err := config.LoadFlag(kctx, "config")
	if err != nil {
		return err
	}
	name, _ := config.FlagValue(kctx, "worker")
	if f == nil {
		if name != "" {
			return fmt.Errorf("--worker %s: no installation file to find it in: give --config FILE", name)
		}
		return nil
	}
	w, err := f.Worker(name)
	if err != nil {
		if name != "" {
			return err
		}
		if _, named := config.FlagValue(kctx, "config"); !named {
			return fmt.Errorf("%w with --worker NAME, or read no file with --config=", err)
		}
		return fmt.Errorf("%w with --worker NAME", err)
	}
	c.file, c.entry = f, w
	kctx.AddResolver(f.WorkerResolver(w))
	return nil
}

// command returns the --service's command: the words after --, or else
// the command of the file's entry (then fromFile).
func command(cli CLI) (c runner.Command, fromFile bool) {
	if len(cli.Command) > 0 || cli.entry == nil {
		return runner.Command{Args: cli.Command}, false
	}
	line, args := cli.entry.Command()
	if line == "" && args == nil {
		return runner.Command{}, false
	}
	return runner.Command{Line: line, Args: args}, true
}

// fatalIfParseErrorf ends zmws-run on a command line error: the usage,
// then the error; an error in the installation file without the usage,
// which would only hide it.
func fatalIfParseErrorf(k *kong.Kong, err error) {
	var ce *config.Error
	if errors.As(err, &ce) {
		k.Fatalf("%v", err)
	}
	k.FatalIfErrorf(err)
}
