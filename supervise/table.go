package supervise

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteTable prints rows as a table: NAME, PID, STATE, UPTIME and WHERE
// (the broker's endpoints, a worker's services and its broker), then each
// row's note.
//
//	NAME              PID    STATE    UPTIME  WHERE
//	zmwsd             41230  started  1s      clients tcp://127.0.0.1:5555, workers tcp://127.0.0.1:5556, http 127.0.0.1:5580
//	zmws-run upper    41251  started  0s      UPPER → tcp://127.0.0.1:5556
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tSTATE\tUPTIME\tWHERE")
	for _, r := range rows {
		name := r.Name
		if r.Worker {
			name = "zmws-run " + r.Name
		}
		pid, up := "-", "-"
		if r.PID != 0 {
			pid = strconv.Itoa(r.PID)
		}
		if r.Uptime > 0 && (r.State == "running" || r.State == "started") {
			up = fmtUptime(r.Uptime)
		}
		where := r.Where
		if r.Note != "" {
			if where != "" {
				where += "  "
			}
			where += "(" + r.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, pid, r.State, up, where)
	}
	return tw.Flush()
}

// fmtUptime rounds d for a person: 42s, 5m3s, 3h4m, 2d3h.
func fmtUptime(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()[:len(d.Round(time.Minute).String())-2]
	}
	days := int(d / (24 * time.Hour))
	return fmt.Sprintf("%dd%dh", days, int((d-time.Duration(days)*24*time.Hour)/time.Hour))
}
