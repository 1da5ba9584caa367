package main

import (
	"context"
	"fmt"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// PauseCmd pauses a service.
type PauseCmd struct {
	Service string `arg:"" help:"Service name."`
}

func (c *PauseCmd) Run(e *env) error {
	return serviceChange(e, "pause", c.Service, (*client.Client).Pause, func(s protocol.ServiceInfo) string {
		return fmt.Sprintf("service %s paused: %d jobs queued, none dispatched until zmws resume %s", s.Name, s.Queued, s.Name)
	})
}

// ResumeCmd ends a service's pause or drain.
type ResumeCmd struct {
	Service string `arg:"" help:"Service name."`
}

func (c *ResumeCmd) Run(e *env) error {
	return serviceChange(e, "resume", c.Service, (*client.Client).Resume, func(s protocol.ServiceInfo) string {
		return fmt.Sprintf("service %s resumed: its queue is dispatched again (%d jobs still queued)", s.Name, s.Queued)
	})
}

// serviceChange runs op on service and prints the service as it is then:
// its JSON (-o json), or what says on stderr.
func serviceChange(e *env, verb, service string, op func(*client.Client, context.Context, string) (protocol.ServiceInfo, error),
	says func(protocol.ServiceInfo) string) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	s, err := op(cl, e.ctx, service)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, service, err)
	}
	if e.cli.Output == "json" {
		return writeJSON(e.stdout, s)
	}
	fmt.Fprintln(e.stderr, says(s))
	return nil
}

// DrainCmd drains a service or workers.
type DrainCmd struct {
	Target string `arg:"" name:"worker|service" help:"A service name, a worker's identity (zmws workers), or HOST:PID for every slot of one zmws-run."`
}

func (c *DrainCmd) Run(e *env) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	// One request: the broker takes a service's name first, then a
	// worker's identity or HOST:PID, and answers with what it drained.
	frames, err := cl.Query(e.ctx, protocol.ServerDrain, []byte(c.Target))
	if err != nil {
		return fmt.Errorf("drain %s: %w", c.Target, err)
	}
	if len(frames) != 1 {
		return fmt.Errorf("drain %s: the broker answered %d frames, want one JSON frame", c.Target, len(frames))
	}
	if e.cli.Output == "json" {
		_, err := e.stdout.Write(append(frames[0], '\n'))
		return err
	}
	if len(frames[0]) > 0 && frames[0][0] == '[' {
		fmt.Fprintf(e.stderr, "%s draining: no new jobs; each worker is told to stop once its jobs end (zmws workers --all shows them go)\n", c.Target)
		return nil
	}
	fmt.Fprintf(e.stderr, "service %s draining: jobs queue, none dispatched; its workers stop once their jobs end; zmws resume %s ends it\n", c.Target, c.Target)
	return nil
}
