// Package config reads the installation file, zmws.toml: one [broker] table
// whose keys are zmwsd's flags, and [[worker]] entries, each one zmws-run.
// zmwsd and zmws-run read their part with --config FILE (or the first of
// SearchPath that exists) and feed it to kong as a Resolver, so that a flag
// beats its environment variable, which beats the file, which beats the
// default. A supervisor (zmws start) reads the same File to know what to
// run. docs/CONFIG.md is the user's reference.
//
//	[broker]
//	http_bind = "127.0.0.1:5580"
//	heartbeat = "2500ms"
//
//	[[worker]]
//	service = "STR-REV"
//	command = "rev"
//	concurrency = 4
//
// [[broker.schedule]] tables are zmwsd's recurring jobs (File.Schedules),
// checked as zmwsd checks them: a bad cron spec is an error at its line.
//
// Load checks everything it can without starting anything: every key is
// known and has a value of its kind, every [[worker]] serves something and
// has a unique name. Each problem is an *Error naming the file and line.
// Keys are the flags' long names with _ for -; a relative path in the file
// is taken from the file's folder.
//
//	f, err := config.Load("/etc/zmws/zmws.toml")
//	if err != nil { ... } // "/etc/zmws/zmws.toml:7: unknown key "heartbeet" in [broker]"
//	w, err := f.Worker("str-rev")
//	k := kong.Must(&cli, kong.Resolvers(f.WorkerResolver(w)))
//
// The commands load the file in a BeforeResolve hook (LoadFlag), where the
// command line is known but not yet applied.
package config
