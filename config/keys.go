package config

import "slices"

// Kind is what a key's value must be, and what Section.Values holds for it.
type Kind int

const (
	KindString   Kind = iota // a string
	KindEnum                 // a string, one of Key.Enum
	KindPath                 // a string; relative to the file's folder
	KindInt                  // an integer (int64)
	KindDuration             // a string such as "2500ms" or "1h30m" (time.Duration)
	KindBool                 // true or false
	KindList                 // an array of strings, or one string ([]string)
	KindCommand              // a command line (string) or its words (array of strings)
)

// Key is a key a table of the file may hold.
type Key struct {
	Name string   // as written in the file: the flag's long name with _ for -
	Flag string   // the long flag it sets; "" for keys of the file only (name, command)
	Kind Kind     //
	Enum []string // the values a KindEnum key may take
}

var logLevels = []string{"trace", "debug", "info", "warn", "error"}
var logFormats = []string{"json", "console"}

// brokerKeys are the keys of [broker]: zmwsd's serve flags, in --help order.
func brokerKeys() []Key {
	return []Key{
		{Name: "client_bind", Kind: KindString},
		{Name: "worker_bind", Kind: KindString},
		{Name: "events_bind", Kind: KindString},
		{Name: "heartbeat", Kind: KindDuration},
		{Name: "liveness", Kind: KindInt},
		{Name: "history", Kind: KindInt},
		{Name: "max_queue", Kind: KindInt},
		{Name: "rate", Kind: KindList},
		{Name: "client_rate", Kind: KindString},
		{Name: "client_concurrency", Kind: KindInt},
		{Name: "schedule", Kind: KindList},
		{Name: "max_attempts", Kind: KindInt},
		{Name: "max_msg_size", Kind: KindInt},
		{Name: "max_output", Kind: KindInt},
		{Name: "max_stream", Kind: KindInt},
		{Name: "max_services", Kind: KindInt},
		{Name: "forget_after", Kind: KindDuration},
		{Name: "keep_gone", Kind: KindInt},
		{Name: "max_msg_frames", Kind: KindInt},
		{Name: "max_msg_bytes", Kind: KindInt},
		{Name: "mem_trim", Kind: KindDuration},
		{Name: "metrics_bind", Kind: KindString},
		{Name: "metrics_services", Kind: KindInt},
		{Name: "http_bind", Kind: KindString},
		{Name: "http_max_body", Kind: KindInt},
		{Name: "http_cors", Kind: KindList},
		{Name: "http_max_sync", Kind: KindInt},
		{Name: "http_rate", Kind: KindInt},
		{Name: "http_burst", Kind: KindInt},
		{Name: "http_concurrency", Kind: KindInt},
		{Name: "http_host", Kind: KindList},
		{Name: "http_tokens", Kind: KindPath},
		{Name: "http_tls_cert", Kind: KindPath},
		{Name: "http_tls_key", Kind: KindPath},
		{Name: "ttr", Kind: KindDuration},
		{Name: "retry_backoff", Kind: KindDuration},
		{Name: "retry_backoff_max", Kind: KindDuration},
		{Name: "dedupe_window", Kind: KindDuration},
		{Name: "data_dir", Kind: KindPath},
		{Name: "retain", Kind: KindDuration},
		{Name: "retain_count", Kind: KindInt},
		{Name: "retain_bytes", Kind: KindInt},
		{Name: "compact_free", Kind: KindInt},
		{Name: "commit_delay", Kind: KindDuration},
		{Name: "curve_key", Kind: KindPath},
		{Name: "keys", Kind: KindPath},
		{Name: "client_keys", Kind: KindPath},
		{Name: "worker_keys", Kind: KindPath},
		{Name: "insecure", Kind: KindBool},
		{Name: "log_level", Kind: KindEnum, Enum: logLevels},
		{Name: "log_format", Kind: KindEnum, Enum: logFormats},
	}
}

// workerKeys are the keys of a [[worker]] entry: name and command, then
// zmws-run's flags in --help order.
func workerKeys() []Key {
	return []Key{
		{Name: "name", Flag: "-", Kind: KindString},
		{Name: "service", Kind: KindString},
		{Name: "command", Flag: "-", Kind: KindCommand},
		{Name: "jobs_dir", Kind: KindPath},
		{Name: "only", Kind: KindList},
		{Name: "brokers", Flag: "broker", Kind: KindList},
		{Name: "broker_key", Kind: KindPath},
		{Name: "curve_key", Kind: KindPath},
		{Name: "concurrency", Kind: KindInt},
		{Name: "timeout", Kind: KindDuration},
		{Name: "kill_grace", Kind: KindDuration},
		{Name: "max_output", Kind: KindInt},
		{Name: "workdir", Kind: KindPath},
		{Name: "env", Kind: KindList},
		{Name: "pass_env", Kind: KindList},
		{Name: "inherit_env", Kind: KindBool},
		{Name: "user", Kind: KindString},
		{Name: "contain", Kind: KindEnum, Enum: []string{"auto", "pid-namespace", "process-group"}},
		{Name: "prestart", Kind: KindBool},
		{Name: "idle_command", Kind: KindString},
		{Name: "idle_after", Kind: KindDuration},
		{Name: "idle_timeout", Kind: KindDuration},
		{Name: "prefetch", Kind: KindInt},
		{Name: "protocol", Kind: KindEnum, Enum: []string{"auto", "zmws", "mdp1", "mdp2"}},
		{Name: "grace", Kind: KindDuration},
		{Name: "heartbeat", Kind: KindDuration},
		{Name: "metrics_bind", Kind: KindString},
		{Name: "log_level", Kind: KindEnum, Enum: logLevels},
		{Name: "log_format", Kind: KindEnum, Enum: logFormats},
	}
}

// BrokerKeys returns the keys [broker] may hold, each with the zmwsd flag
// it sets.
func BrokerKeys() []Key { return withFlags(brokerKeys()) }

// WorkerKeys returns the keys a [[worker]] entry may hold, each with the
// zmws-run flag it sets (none for name and command).
func WorkerKeys() []Key { return withFlags(workerKeys()) }

// withFlags fills in the flag names the tables leave implicit: the key's
// name with - for _; "-" marks a key that sets no flag.
func withFlags(ks []Key) []Key {
	for i, k := range ks {
		switch k.Flag {
		case "":
			ks[i].Flag = dashes(k.Name)
		case "-":
			ks[i].Flag = ""
		}
	}
	return ks
}

func dashes(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '_' {
			b[i] = '-'
		}
	}
	return string(b)
}

// lookup finds the key named name in ks.
func lookup(ks []Key, name string) (Key, bool) {
	i := slices.IndexFunc(ks, func(k Key) bool { return k.Name == name })
	if i < 0 {
		return Key{}, false
	}
	return ks[i], true
}
