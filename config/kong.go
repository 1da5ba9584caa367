package config

import (
	"fmt"
	"os"
	"time"

	"github.com/alecthomas/kong"
)

// Kong applies resolvers after the environment: Context.Reset sets each
// flag from its env variable (or default), then Context.Resolve lets a
// resolver replace anything the command line did not set. So a resolver
// that answered for every flag would put the file above the environment.
// These answer only for flags whose env variables are all unset, which
// makes the order flag > env > file > default.

// BrokerResolver returns a kong.Resolver that sets zmwsd's flags from
// [broker]: each flag from the key named like it with _ for -, unless the
// command line or the flag's environment variable sets it.
func (f *File) BrokerResolver() kong.Resolver {
	return resolver{keys: byFlag(BrokerKeys()), value: func(key string) (any, error) {
		v, ok := f.Broker.Values[key]
		if !ok {
			return nil, nil
		}
		return v, nil
	}}
}

// WorkerResolver returns a kong.Resolver that sets zmws-run's flags from
// the entry w (which may be nil) the way BrokerResolver does from [broker].
// Where the entry is silent, --broker comes from the [broker]'s worker
// endpoint and --heartbeat from its heartbeat, when [broker] sets them.
func (f *File) WorkerResolver(w *Worker) kong.Resolver {
	return resolver{keys: byFlag(WorkerKeys()), value: func(key string) (any, error) {
		if w != nil {
			if v, ok := w.Values[key]; ok {
				return v, nil
			}
		}
		switch key {
		case "brokers":
			if w != nil {
				return w.Brokers(), nil
			}
			if _, ok := f.Broker.Values["worker_bind"]; ok {
				ep, err := f.WorkerEndpoint()
				if err != nil {
					return nil, &Error{Path: f.Path, Line: f.Broker.Lines["worker_bind"], Err: err}
				}
				return []string{ep}, nil
			}
		case "heartbeat":
			if v, ok := f.Broker.Values["heartbeat"]; ok {
				return v, nil
			}
		}
		return nil, nil
	}}
}

func byFlag(keys []Key) map[string]Key {
	m := map[string]Key{}
	for _, k := range keys {
		if k.Flag != "" {
			m[k.Flag] = k
		}
	}
	return m
}

// resolver answers kong for the flags of keys, with value's answer for the
// key (nil: none).
type resolver struct {
	keys  map[string]Key // by flag name
	value func(key string) (any, error)
}

// Validate has nothing to do: Load checked every key and value.
func (resolver) Validate(*kong.Application) error { return nil }

func (r resolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	k, ok := r.keys[flag.Name]
	if !ok {
		return nil, nil
	}
	for _, env := range flag.Tag.Envs {
		if _, set := os.LookupEnv(env); set {
			return nil, nil // the environment wins over the file
		}
	}
	v, err := r.value(k.Name)
	if v == nil || err != nil {
		return nil, err
	}
	// What kong's mappers take: a duration as text (a number would be
	// nanoseconds), a list as []any.
	switch v := v.(type) {
	case time.Duration:
		return v.String(), nil
	case []string:
		a := make([]any, len(v))
		for i, s := range v {
			a[i] = s
		}
		return a, nil
	}
	return v, nil
}

// FlagValue returns the value of the flag named name as the command line
// or, failing that, the flag's environment variable gives it, and whether
// either did. It is for BeforeResolve hooks, which run before kong has set
// the flags from the command line.
func FlagValue(kctx *kong.Context, name string) (value string, set bool) {
	for _, fl := range kctx.Flags() {
		if fl.Name != name {
			continue
		}
		for _, p := range kctx.Path {
			if p.Flag == fl {
				return fmt.Sprint(kctx.FlagValue(fl)), true
			}
		}
		for _, env := range fl.Tag.Envs {
			if v, ok := os.LookupEnv(env); ok {
				return v, true
			}
		}
		return "", false
	}
	return "", false
}

// LoadFlag loads the file the flag named name (such as "config") names, on
// the command line or in its environment variable; "" there means none. When
// neither sets it, it loads the first file of SearchPath, or returns nil
// when there is none. A file named but missing is an error.
func LoadFlag(kctx *kong.Context, name string) (*File, error) {
	path, set := FlagValue(kctx, name)
	if !set {
		p, err := Find()
		if err != nil || p == "" {
			return nil, err
		}
		path = p
	}
	if path == "" {
		return nil, nil
	}
	return Load(path)
}
