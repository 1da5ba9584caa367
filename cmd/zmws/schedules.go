package main

import (
	"fmt"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// SchedsCmd lists the broker's recurring schedules.
type SchedsCmd struct{}

func (c *SchedsCmd) Run(e *env) error {
	return list(e, (*client.Client).Schedules, []string{"NAME", "SPEC", "SERVICE", "NEXT", "LAST TICK", "LAST JOB", "FIRED", "SKIPPED", "MISSED"},
		func(s protocol.ScheduleInfo) []string {
			return []string{s.Name, s.Spec, s.Service, stamp(&s.Next), stamp(&s.LastTick), s.LastJob,
				fmt.Sprint(s.Fired), fmt.Sprint(s.Skipped), fmt.Sprint(s.Missed)}
		})
}
