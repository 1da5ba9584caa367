// Package runner is zmws' exec adapter: a worker.Handler that runs a
// configured command line for each job, safely, and reports how it ended.
// cmd/zmws-run wires it to the worker library; docs/RUNNER.md is the user's
// reference.
//
// A service is defined by a Spec: a NAME.toml template (LoadFile, LoadDir)
// or, for zmws-run --service NAME -- CMD ARGS..., a Spec built from the
// command line. New checks it and returns a Template; NewHandler serves it.
//
//	t, err := runner.LoadFile("jobs.d/SLEEP.toml", runner.Defaults{})
//	if err != nil { ... }
//	h := runner.NewHandler(t, runner.Config{Logger: log})
//	w, err := worker.New(worker.Config{Brokers: eps, Service: t.Service(),
//		Handler: h, Concurrency: t.Concurrency()})
//	err = w.Run(ctx)
//	h.Shutdown(graceCtx) // after Run: no child outlives the process
//
// # Command lines and parameters
//
// A command line is split with shell quoting rules (go-shellwords, with
// environment expansion, command substitution and comments off) when the
// template is loaded. There is no shell: an unquoted ; & | < or > is an
// error at load time, and a command that wants a shell says sh -c '...'.
// {{name}} and {{name:default}} inside a word are placeholders; they are
// substituted into the words after splitting, so a value can never add a
// word, end one, or start a command. A job's value that would begin a word
// with "-" is refused unless the parameter has allow_dash; the program
// itself cannot be a placeholder. Bad or missing parameters fail the job,
// naming the parameter (*ParamError), before anything is started.
//
// # Stdin
//
// The command reads the template's stdin text if it has one (with
// placeholders); otherwise the job's raw input when there is any; otherwise
// the values of the job's parameters in name order, each ending with a
// newline. So an inline "zmws-run --service STR-REV -- rev" turns
// ?str=Hello,+world into "dlrow ,olleH". Stdin is written while stdout and
// stderr are read, so large input and output cannot deadlock.
//
// # Environment
//
// A command sees only the variables of zmws-run's environment that the
// template's inherit_env (default DefaultInheritEnv) lets through, then the
// template's env, then ZMWS_JOB_ID, ZMWS_SERVICE, ZMWS_ATTEMPT and one
// ZMWS_PARAM_<NAME> per parameter (ParamEnvName).
//
// # Output and outcome
//
// Stdout is streamed to the job as partial replies (complete lines
// LineLinger after the first of them, FlushBytes at once, anything
// FlushDelay after the oldest unsent byte) up to the template's max_output;
// the rest is read and dropped and a note at the end of the output says so.
// What is unsent when the command exits is the handler's result, so a quick
// filter's job is one final reply. Exit 0 completes the job. Otherwise it fails with a
// *worker.ExitError carrying the exit code and the last StderrTail bytes of
// stderr: the process's exit status; 128+N for death by signal N; 124 for a
// timeout; 127 or 126 when the program cannot be found or started. A job
// whose ctx is cancelled (the worker's shutdown grace is over, or its broker
// connection is lost) returns an error wrapping context.Canceled, so the
// worker sends no result and the broker requeues the job. Each stderr line
// is logged too.
//
// # Prestart
//
// A template with prestart = true (command and env without placeholders)
// has its handler keep one process per slot started ahead of its job,
// with its pipes, waiting on its stdin: a job takes one, writes its stdin
// and waits for it, and the next is started in the background. Only for
// commands that read their input first. Their environment has
// ZMWS_SERVICE but not the job's variables. A process found exited when
// its job arrives is not used (the job starts the command afresh).
// Shutdown kills the waiting processes with SIGKILL and waits for them.
//
// # Idle command
//
// An Idle (NewIdle) runs a command outside any job, zmws-run's
// --idle-command, under the same rules: split without a shell, the
// allow-listed environment (without a job's ZMWS_* variables), its own
// process group or PID namespace, the template's user, a timeout (required)
// and the grace. Idle.Run runs it once; ending its ctx (a job started: see
// worker.Idler) stops it. Its stdout and stderr go to the log, bounded.
//
// # Process groups
//
// Each command runs in a process group of its own. On timeout or
// cancellation the group gets SIGTERM, and the command gets SIGKILL after the
// template's grace; as soon as the command has exited, whatever is left of
// its group is killed with SIGKILL. Shutdown kills what is still running
// when its ctx ends.
//
// # Containment and users
//
// With Config.Contain (Linux, root; CheckContain tells), each command runs
// in a PID namespace of its own under an init that is the running program
// re-executed: its main must call Init when IsInit. The init forwards
// signals to the whole job and reaps orphans; when it dies, zmws-run's
// death included, the kernel kills the rest of the job. A template's user
// runs the command as that user (root only; checked at load).
package runner
