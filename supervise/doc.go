// Package supervise runs an installation: the broker (zmwsd) and the
// workers (zmws-run) its zmws.toml describes, as zmws start, stop and
// status do.
//
// Start checks everything first (config.Load was done by the caller; then
// zmwsd --check and zmws-run --worker NAME --check each, in the
// environment they will run in), then starts each process detached (its
// own session, stdin /dev/null, output appended to RUN/NAME.log) and
// writes RUN/NAME.pid: the PID, the process's start time and its program,
// so a PID file whose process is gone, or whose PID another program has
// since, is known as stale. It waits until each is ready: the broker
// answers SERVER-HEALTH on its client endpoint, each of a worker's
// services has a live worker with its PID in SERVER-WORKERS. A process
// that runs already is left alone, so starting twice starts nothing. A
// flock on RUN/.lock keeps two zmws start or stop from acting at once.
//
// Stop sends SIGTERM to the workers first, so their running jobs finish
// or are given back, waits their grace and a margin, then SIGKILL; then
// the broker. Foreground keeps the processes as children instead,
// restarting one that dies with a backoff, until its context ends.
//
//	s, err := supervise.New(supervise.Config{File: f, Zmwsd: zmwsd, ZmwsRun: zmwsRun})
//	rows, err := s.Start(ctx, supervise.Which{})
//	supervise.WriteTable(os.Stdout, rows)
//	rows, err = s.Stop(ctx, supervise.Which{Workers: true})
//
// RUN is run/ in the broker's data directory unless Config.RunDir says
// otherwise. docs/SUPERVISE.md is the user's reference.
package supervise
