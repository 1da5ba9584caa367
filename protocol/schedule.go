package protocol

import "time"

// ServerSchedules lists the recurring schedules (admin): a JSON array of
// ScheduleInfo.
const ServerSchedules = "SERVER-SCHEDULES"

// Values of ScheduleInfo.CatchUp: what a schedule does with the ticks that
// fell while the broker was down, or that came due together (docs/SCHEDULES.md).
// Wire-visible, never changed.
const (
	CatchUpOne  = "one"  // one job for the newest of them, then on schedule
	CatchUpNone = "none" // no job for ticks missed while down; on schedule from the start
	CatchUpAll  = "all"  // a job for each, up to the newest MaxCatchUp
)

// MaxCatchUp bounds the jobs a schedule with CatchUpAll makes for ticks
// due together: the newest ones; older ones are counted missed.
const MaxCatchUp = 100

// ScheduleInfo is one entry of SERVER-SCHEDULES: a recurring schedule the
// operator declared (zmwsd --schedule, [[broker.schedule]]), sorted by name.
type ScheduleInfo struct {
	Name    string `json:"name"`
	Spec    string `json:"spec"` // the cron spec as declared
	Service string `json:"service"`
	CatchUp string `json:"catch_up"`
	// Next is the next tick; LastTick the last one fired (or skipped),
	// kept in the journal across restarts; LastJob the ID of the job made
	// for the last tick that made one.
	Next     time.Time `json:"next,omitzero"`
	LastTick time.Time `json:"last_tick,omitzero"`
	LastJob  string    `json:"last_job,omitempty"`
	// Fired counts the jobs made, Skipped the ticks that made none (an
	// unknown service, a full queue), Missed the ticks passed over by the
	// catch-up rule, since the broker started.
	Fired   uint64 `json:"fired"`
	Skipped uint64 `json:"skipped"`
	Missed  uint64 `json:"missed"`
}
