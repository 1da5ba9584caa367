package main

import (
	"errors"
	"fmt"

	"github.com/alecthomas/kong"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/config"
)

// BeforeResolve reads the installation file before kong resolves the
// flags, and lets its [broker] table set those the command line and the
// environment leave unset.
func (c *CLI) BeforeResolve(kctx *kong.Context) error {
	f, err := brokerConfig(kctx)
	c.file = f
	return err
}

// BeforeResolve gives the journal commands --data-dir from the file.
func (c *journalCmd) BeforeResolve(kctx *kong.Context) error {
	_, err := brokerConfig(kctx)
	return err
}

func brokerConfig(kctx *kong.Context) (*config.File, error) {
	f, err := config.LoadFlag(kctx, "config")
	if err != nil || f == nil {
		return nil, err
	}
	kctx.AddResolver(f.BrokerResolver())
	return f, nil
}

// fatalIfParseErrorf ends zmwsd on a command line error: the usage, then
// the error; an error in the installation file without the usage, which
// would only hide it.
func fatalIfParseErrorf(k *kong.Kong, err error) {
	var ce *config.Error
	if errors.As(err, &ce) {
		k.Fatalf("%v", err)
	}
	k.FatalIfErrorf(err)
}

// schedules returns the schedules of --schedule, then those of the file's
// [[broker.schedule]] tables, checked together: a bad one is an error
// naming the schedule and its spec, as is a name given twice.
func schedules(cli CLI) ([]broker.Schedule, error) {
	var out []broker.Schedule
	for _, v := range cli.Schedule {
		s, err := broker.ParseSchedule(v)
		if err != nil {
			return nil, fmt.Errorf("--schedule: %w", err)
		}
		out = append(out, s)
	}
	if cli.file != nil {
		out = append(out, cli.file.Schedules()...)
	}
	if err := broker.CheckSchedules(out); err != nil {
		return nil, fmt.Errorf("--schedule and [[broker.schedule]]: %w", err)
	}
	return out, nil
}
