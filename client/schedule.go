package client

import (
	"context"

	"github.com/zmws/zmws/protocol"
)

// Schedules lists the broker's recurring schedules, by name, with their
// next and last ticks (SERVER-SCHEDULES; an admin query under CURVE).
func (c *Client) Schedules(ctx context.Context) ([]protocol.ScheduleInfo, error) {
	return queryJSON[[]protocol.ScheduleInfo](ctx, c, protocol.ServerSchedules)
}
